package e2e

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// raftNet partitions servers' Raft traffic without root: each server's
// Raft address is advertised as a proxy's, and every connection through a
// proxy is tagged with the server that opened it, read from the first
// bytes it sends (every hashicorp/raft RPC is a msgpack map whose first
// key, Addr, is the sender's advertised address: its proxy's). Cutting a server closes and refuses every connection
// to or from it, both ways, as a firewall around its Raft port would;
// gossip and the API stay reachable, so the cut server is still seen alive
// and forwards API calls, but takes no part in Raft.
type raftNet struct {
	senders map[string]string // advertised Raft address → server id

	mu      sync.Mutex
	cut     map[string]bool
	conns   map[*proxyConn]struct{}
	proxies []*raftProxy
	// untagged counts connections whose sender was not recognised: a cut
	// would miss them, so the test requires none.
	untagged int
}

type raftProxy struct {
	rn     *raftNet
	owner  string // the server behind it
	target string // its real Raft address
	ln     net.Listener
}

type proxyConn struct {
	from, to   string // server ids ("" if the sender was not recognised)
	down, upst net.Conn
}

func newRaftNet() *raftNet {
	return &raftNet{senders: map[string]string{}, cut: map[string]bool{}, conns: map[*proxyConn]struct{}{}}
}

// proxy listens on addr, owner's advertised Raft address, and forwards to
// target, its real one. It stops when the test ends.
func (rn *raftNet) proxy(t *testing.T, owner, addr, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("raft proxy for %s on %s: %v", owner, addr, err)
	}
	p := &raftProxy{rn: rn, owner: owner, target: target, ln: ln}
	rn.mu.Lock()
	rn.proxies = append(rn.proxies, p)
	rn.senders[addr] = owner
	rn.mu.Unlock()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		rn.closeAll()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c)
			}()
		}
	}()
}

// sender reads from c until a server's advertised address shows up in
// what it sent (or 4 KB or 5 s pass) and returns the server's id (the
// earliest address found: the header's Addr) and the bytes read.
func (rn *raftNet) sender(c net.Conn) (string, []byte) {
	buf := make([]byte, 0, 4096)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	tmp := make([]byte, 4096)
	for len(buf) < 4096 {
		n, err := c.Read(tmp[:4096-len(buf)])
		buf = append(buf, tmp[:n]...)
		best, at := "", -1
		rn.mu.Lock()
		for addr, name := range rn.senders {
			if i := bytes.Index(buf, []byte(addr)); i >= 0 && (at < 0 || i < at) {
				best, at = name, i
			}
		}
		rn.mu.Unlock()
		if best != "" || err != nil {
			return best, buf
		}
	}
	return "", buf
}

func (p *raftProxy) serve(down net.Conn) {
	from, head := p.rn.sender(down)
	rn := p.rn
	rn.mu.Lock()
	if from == "" && len(head) > 0 {
		rn.untagged++
	}
	blocked := rn.cut[p.owner] || rn.cut[from]
	rn.mu.Unlock()
	if blocked {
		down.Close()
		return
	}
	upst, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		down.Close()
		return
	}
	pc := &proxyConn{from: from, to: p.owner, down: down, upst: upst}
	rn.mu.Lock()
	if rn.cut[p.owner] || rn.cut[from] {
		rn.mu.Unlock()
		down.Close()
		upst.Close()
		return
	}
	rn.conns[pc] = struct{}{}
	rn.mu.Unlock()
	defer func() {
		rn.mu.Lock()
		delete(rn.conns, pc)
		rn.mu.Unlock()
		down.Close()
		upst.Close()
	}()
	if _, err := upst.Write(head); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(upst, down); upst.Close(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(down, upst); down.Close(); done <- struct{}{} }()
	<-done
	<-done
}

// isolate cuts every Raft connection to or from the server named id.
func (rn *raftNet) isolate(id string) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.cut[id] = true
	for pc := range rn.conns {
		if pc.from == id || pc.to == id {
			pc.down.Close()
			pc.upst.Close()
		}
	}
}

// heal lets every server's Raft traffic through again.
func (rn *raftNet) heal() {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	clear(rn.cut)
}

func (rn *raftNet) closeAll() {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	for pc := range rn.conns {
		pc.down.Close()
		pc.upst.Close()
	}
}
