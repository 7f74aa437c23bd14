package cluster

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// InmemNetwork connects in-memory nodes (Config.InMemory) of one process:
// Raft through raft.InmemTransport and gossip through an in-memory
// memberlist transport. Use one per test cluster. Safe for concurrent use.
type InmemNetwork struct {
	mu       sync.Mutex
	raft     map[raft.ServerAddress]*raft.InmemTransport
	gossip   map[string]*inmemGossipTransport
	nextPort int
	// isolated node names (= in-memory raft addresses) cut off from all.
	isolated map[string]bool
}

// NewInmemNetwork returns an empty in-memory network.
func NewInmemNetwork() *InmemNetwork {
	return &InmemNetwork{
		raft:     make(map[raft.ServerAddress]*raft.InmemTransport),
		gossip:   make(map[string]*inmemGossipTransport),
		isolated: make(map[string]bool),
	}
}

// Isolate cuts the named in-memory node off from every other node, Raft
// and gossip both ways, like a network partition (the node keeps running).
func (n *InmemNetwork) Isolate(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[name] = true
	addr := raft.ServerAddress(name)
	t, ok := n.raft[addr]
	if !ok {
		return
	}
	t.DisconnectAll()
	for peerAddr, peer := range n.raft {
		if peerAddr != addr {
			peer.Disconnect(addr)
		}
	}
}

// Heal reconnects every isolated node.
func (n *InmemNetwork) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated = make(map[string]bool)
	for a, ta := range n.raft {
		for b, tb := range n.raft {
			if a != b {
				ta.Connect(b, tb)
			}
		}
	}
}

// cut reports whether traffic between the gossip transports is blocked.
func (n *InmemNetwork) cut(from, to *inmemGossipTransport) bool {
	return n.isolated[from.name] || n.isolated[to.name]
}

// addRaft creates a Raft transport for addr and connects it both ways to
// every transport already in the network.
func (n *InmemNetwork) addRaft(addr raft.ServerAddress) (*raft.InmemTransport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.raft[addr]; ok {
		return nil, fmt.Errorf("in-memory raft address %q is already in use", addr)
	}
	_, t := raft.NewInmemTransportWithTimeout(addr, 2*time.Second)
	for peerAddr, peer := range n.raft {
		if n.isolated[string(addr)] || n.isolated[string(peerAddr)] {
			continue
		}
		peer.Connect(addr, t)
		t.Connect(peerAddr, peer)
	}
	n.raft[addr] = t
	return t, nil
}

// removeRaft disconnects addr from the network and closes its transport.
func (n *InmemNetwork) removeRaft(addr raft.ServerAddress) {
	n.mu.Lock()
	t, ok := n.raft[addr]
	delete(n.raft, addr)
	peers := make([]*raft.InmemTransport, 0, len(n.raft))
	for _, p := range n.raft {
		peers = append(peers, p)
	}
	n.mu.Unlock()
	if !ok {
		return
	}
	for _, p := range peers {
		p.Disconnect(addr)
	}
	_ = t.Close()
}

// addGossip creates a gossip transport for node name with a fresh fake
// address.
func (n *InmemNetwork) addGossip(name string) *inmemGossipTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nextPort++
	t := &inmemGossipTransport{
		net:      n,
		name:     name,
		addr:     fmt.Sprintf("127.0.0.1:%d", n.nextPort),
		packetCh: make(chan *memberlist.Packet, 1024),
		streamCh: make(chan net.Conn, 64),
		shutdown: make(chan struct{}),
	}
	n.gossip[t.addr] = t
	return t
}

// lookupGossip returns the transport at addr, or nil if there is none or
// the link from `from` to it is cut.
func (n *InmemNetwork) lookupGossip(from *inmemGossipTransport, addr string) *inmemGossipTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.gossip[addr]
	if t == nil || n.cut(from, t) {
		return nil
	}
	return t
}

func (n *InmemNetwork) removeGossip(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.gossip, addr)
}

// inmemAddr is the net.Addr of an in-memory gossip endpoint.
type inmemAddr string

func (a inmemAddr) Network() string { return "inmem" }
func (a inmemAddr) String() string  { return string(a) }

// inmemGossipTransport implements memberlist.NodeAwareTransport in memory.
// Packets behave like UDP (dropped when the receiver is gone or its queue is
// full); streams are net.Pipe pairs.
type inmemGossipTransport struct {
	net      *InmemNetwork
	name     string
	addr     string
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	shutdown chan struct{}
	once     sync.Once
}

var _ memberlist.NodeAwareTransport = (*inmemGossipTransport)(nil)

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *inmemGossipTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	host, port, err := net.SplitHostPort(t.addr)
	if err != nil {
		return nil, 0, err
	}
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil {
		return nil, 0, err
	}
	return net.ParseIP(host), p, nil
}

// WriteTo implements memberlist.Transport.
func (t *inmemGossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	now := time.Now()
	dest := t.net.lookupGossip(t, addr)
	if dest == nil {
		return now, nil // like UDP: silently lost
	}
	p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: inmemAddr(t.addr), Timestamp: now}
	select {
	case <-dest.shutdown:
	case dest.packetCh <- p:
	default: // receiver overloaded: drop, like UDP
	}
	return now, nil
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *inmemGossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

// PacketCh implements memberlist.Transport.
func (t *inmemGossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout implements memberlist.Transport.
func (t *inmemGossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	dest := t.net.lookupGossip(t, addr)
	if dest == nil {
		return nil, fmt.Errorf("dial inmem %s: %w", addr, errConnRefused)
	}
	local, remote := net.Pipe()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case dest.streamCh <- remote:
		return local, nil
	case <-dest.shutdown:
	case <-t.shutdown:
	case <-timer.C:
	}
	local.Close()
	remote.Close()
	return nil, fmt.Errorf("dial inmem %s: %w", addr, errConnRefused)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *inmemGossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// StreamCh implements memberlist.Transport.
func (t *inmemGossipTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown implements memberlist.Transport.
func (t *inmemGossipTransport) Shutdown() error {
	t.once.Do(func() {
		t.net.removeGossip(t.addr)
		close(t.shutdown)
	})
	return nil
}

var errConnRefused = errors.New("connection refused")
