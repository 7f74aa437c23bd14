package cluster

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/tlsutil"
)

// testPKI is a CA with a server and a client certificate on disk.
type testPKI struct {
	ca             tlsutil.PEMPair
	caFile         string
	server, client tlsutil.Files
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := tlsutil.GenerateCA(tlsutil.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{ca: ca, caFile: filepath.Join(dir, "ca.pem")}
	writeTestFile(t, p.caFile, ca.Cert)
	p.server = p.issue(t, "server", true)
	p.client = p.issue(t, "client", false)
	return p
}

func (p *testPKI) issue(t testing.TB, name string, server bool) tlsutil.Files {
	t.Helper()
	pair, err := tlsutil.GenerateCert(p.ca, tlsutil.CertOptions{Server: server})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := tlsutil.Files{CAFile: p.caFile, CertFile: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+"-key.pem")}
	writeTestFile(t, f.CertFile, pair.Cert)
	writeTestFile(t, f.KeyFile, pair.Key)
	return f
}

func writeTestFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// raftTLS builds the Raft TLS configs a server uses from its files.
func raftTLS(t testing.TB, f tlsutil.Files) *RaftTLS {
	t.Helper()
	h, err := tlsutil.NewHolder(f)
	if err != nil {
		t.Fatal(err)
	}
	id := tlsutil.ServerName(tlsutil.DefaultClusterName, tlsutil.DefaultDomain)
	return &RaftTLS{Server: h.ServerConfig(tlsutil.ServerOptions{RequireName: id}), Client: h.ClientConfig(id)}
}

// TestRaftOverTLS: servers with server certificates form a cluster and
// replicate over the TLS stream layer; a peer without a certificate, or
// with a client certificate (no server identity), cannot talk to the Raft
// port.
func TestRaftOverTLS(t *testing.T) {
	pki := newTestPKI(t)
	var nodes []*tnode
	var join []string
	for _, name := range []string{"a", "b", "c"} {
		cfg := tcpConfig(t, name, 3, join...)
		cfg.RaftTLS = raftTLS(t, pki.server)
		tn := start(t, cfg)
		nodes = append(nodes, tn)
		join = append(join, tn.node.GossipAddr())
	}
	waitLeader(t, nodes, 30*time.Second)
	set(t, nodes, "k", "v")
	waitHas(t, nodes, "k", "v")

	addr := nodes[0].node.RaftAddr()
	clientHolder, err := tlsutil.NewHolder(pki.client)
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := tlsutil.NewHolder(tlsutil.Files{CAFile: pki.caFile})
	if err != nil {
		t.Fatal(err)
	}
	id := tlsutil.ServerName(tlsutil.DefaultClusterName, tlsutil.DefaultDomain)
	for name, cfg := range map[string]*tls.Config{
		"client certificate": clientHolder.ClientConfig(id),
		"no certificate":     noCert.ClientConfig(id),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				return // refused during the handshake
			}
			defer c.Close()
			// TLS 1.3: the server checks the client's certificate after
			// the client finished; the refusal shows on the first read.
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = c.Write([]byte{0})
			if _, err := io.ReadAll(c); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("raft port accepted a connection with %s (read err %v)", name, err)
			}
		})
	}
}

// TestServerWithClientCertCannotJoinRaft: a server whose certificate lacks
// the server identity is never able to replicate the log.
func TestServerWithClientCertCannotJoinRaft(t *testing.T) {
	pki := newTestPKI(t)
	cfg := tcpConfig(t, "a", 1)
	cfg.RaftTLS = raftTLS(t, pki.server)
	a := start(t, cfg)
	waitLeader(t, []*tnode{a}, 30*time.Second)
	set(t, []*tnode{a}, "k", "v")

	rogue := tcpConfig(t, "rogue", 0, a.node.GossipAddr())
	rogue.RaftTLS = raftTLS(t, pki.client)
	r := start(t, rogue)
	// The leader sees the rogue in gossip and tries to add it; every
	// attempt to replicate to it fails. Budget: many reconcile rounds.
	for i := 0; i < 30; i++ {
		set(t, []*tnode{a}, "round", strings.Repeat("x", i+1))
		time.Sleep(100 * time.Millisecond)
	}
	if _, ok := r.fsm.get("k"); ok {
		t.Fatal("a server with a client certificate received the replicated state")
	}
	peers, err := a.node.Peers()
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 1 {
		t.Fatalf("a server with a client certificate entered the raft configuration: %+v", peers)
	}
}

// TestGossipKeyRequiredToJoin: a server with another gossip key (or none)
// cannot join an encrypted cluster; one with the key can.
func TestGossipKeyRequiredToJoin(t *testing.T) {
	key := mustKey(t)
	cfg := tcpConfig(t, "a", 1)
	cfg.GossipKey = key
	a := start(t, cfg)

	for name, k := range map[string][]byte{"wrong key": mustKey(t), "no key": nil} {
		c := tcpConfig(t, "x-"+strings.ReplaceAll(name, " ", "-"), 0)
		c.GossipKey = k
		x := start(t, c)
		if _, err := x.node.gossip.Join([]string{a.node.GossipAddr()}); err == nil {
			t.Fatalf("%s: joined an encrypted cluster", name)
		}
		if slices.ContainsFunc(a.node.Members(), func(m Member) bool { return m.Name == c.NodeName }) {
			t.Fatalf("%s: the cluster lists the server as a member", name)
		}
	}
	good := tcpConfig(t, "b", 0)
	good.GossipKey = key
	b := start(t, good)
	if _, err := b.node.gossip.Join([]string{a.node.GossipAddr()}); err != nil {
		t.Fatalf("join with the right key: %v", err)
	}
}

func mustKey(t testing.TB) []byte {
	t.Helper()
	s, err := GenerateGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := DecodeGossipKey(s)
	if err != nil || len(k) != 32 {
		t.Fatalf("GenerateGossipKey: %q decodes to %d bytes, %v", s, len(k), err)
	}
	return k
}

// TestGossipKeyringRotation: install, use and remove rotate the key on a
// live pair of servers, a server knowing only the new key joins them, and
// the rotated keyring survives a restart.
func TestGossipKeyringRotation(t *testing.T) {
	oldKey, newKey := mustKey(t), mustKey(t)
	oldB64, newB64 := base64.StdEncoding.EncodeToString(oldKey), base64.StdEncoding.EncodeToString(newKey)
	var nodes []*tnode
	var join []string
	for _, name := range []string{"a", "b"} {
		cfg := tcpConfig(t, name, 2, join...)
		cfg.GossipKey = oldKey
		tn := start(t, cfg)
		nodes = append(nodes, tn)
		join = append(join, tn.node.GossipAddr())
	}
	waitLeader(t, nodes, 30*time.Second)

	for _, op := range []struct {
		op  KeyringOp
		key string
	}{{KeyringInstall, newB64}, {KeyringUse, newB64}, {KeyringRemove, oldB64}} {
		for _, tn := range nodes {
			if err := tn.node.ChangeGossipKeyring(op.op, op.key); err != nil {
				t.Fatalf("%s on %s: %v", op.op, tn.cfg.NodeName, err)
			}
		}
	}
	for _, tn := range nodes {
		keys, primary, err := tn.node.GossipKeys()
		if err != nil || primary != newB64 || !slices.Equal(keys, []string{newB64}) {
			t.Fatalf("%s keyring = %v primary %q (%v), want only the new key", tn.cfg.NodeName, keys, primary, err)
		}
	}
	if err := nodes[0].node.ChangeGossipKeyring(KeyringRemove, newB64); err == nil {
		t.Fatal("removing the primary key succeeded")
	}
	if err := nodes[0].node.ChangeGossipKeyring(KeyringUse, oldB64); err == nil {
		t.Fatal("using a removed key succeeded")
	}
	if err := nodes[0].node.ChangeGossipKeyring(KeyringInstall, "not base64!"); err == nil {
		t.Fatal("installing a malformed key succeeded")
	}

	// A newcomer with only the new key joins; one with the old is refused.
	c := tcpConfig(t, "c", 0)
	c.GossipKey = newKey
	if _, err := start(t, c).node.gossip.Join([]string{nodes[0].node.GossipAddr()}); err != nil {
		t.Fatalf("join with the rotated key: %v", err)
	}
	d := tcpConfig(t, "d", 0)
	d.GossipKey = oldKey
	if _, err := start(t, d).node.gossip.Join([]string{nodes[0].node.GossipAddr()}); err == nil {
		t.Fatal("joined with the removed key")
	}

	// Restart b (configured with the old key): the kept keyring wins.
	nodes[1].stop(t)
	b := nodes[1].restart(t)
	keys, primary, err := b.node.GossipKeys()
	if err != nil || primary != newB64 || len(keys) != 1 {
		t.Fatalf("after restart keyring = %v primary %q (%v), want the rotated key", keys, primary, err)
	}
	waitLeader(t, []*tnode{nodes[0], b}, 30*time.Second)
}

func TestGossipKeyringNotEncrypted(t *testing.T) {
	a := start(t, tcpConfig(t, "a", 1))
	if _, _, err := a.node.GossipKeys(); !errors.Is(err, ErrGossipNotEncrypted) {
		t.Fatalf("GossipKeys without encryption: %v, want ErrGossipNotEncrypted", err)
	}
}
