package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// kvFSM is a small key/value FSM for tests. Commands are "set <k> <v>" or
// "fail <msg>" (Apply returns an error value, like the real FSM does).
type kvFSM struct {
	mu   sync.Mutex
	data map[string]string
	last uint64
}

func newKV() *kvFSM { return &kvFSM{data: map[string]string{}} }

type kvResult struct {
	Index uint64
	Err   error
}

func (f *kvFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = l.Index
	parts := strings.SplitN(string(l.Data), " ", 3)
	switch {
	case len(parts) == 3 && parts[0] == "set":
		f.data[parts[1]] = parts[2]
		return kvResult{Index: l.Index}
	case len(parts) >= 2 && parts[0] == "fail":
		return kvResult{Index: l.Index, Err: errors.New(parts[1])}
	}
	// A replica that cannot apply an entry must stop, not diverge.
	panic(fmt.Sprintf("kvFSM: unknown command %q", l.Data))
}

func (f *kvFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp := make(map[string]string, len(f.data))
	for k, v := range f.data {
		cp[k] = v
	}
	return kvSnapshot(cp), nil
}

func (f *kvFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	m := map[string]string{}
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return fmt.Errorf("kvFSM restore: %w", err)
	}
	f.mu.Lock()
	f.data = m
	f.mu.Unlock()
	return nil
}

func (f *kvFSM) get(k string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.data[k]
	return v, ok
}

func (f *kvFSM) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.data)
}

type kvSnapshot map[string]string

func (s kvSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(map[string]string(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s kvSnapshot) Release() {}

// verifyKV is a Config.VerifySnapshot for kvFSM data.
func verifyKV(r io.Reader) error { return newKV().Restore(io.NopCloser(r)) }

// testLogger collects logs in memory and prints them only if the test
// fails (logging through t.Log from raft goroutines could outlive the test).
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	var mu sync.Mutex
	var buf bytes.Buffer
	level := slog.LevelInfo
	if os.Getenv("BERTH_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	h := slog.NewTextHandler(&lockedWriter{mu: &mu, w: &buf}, &slog.HandlerOptions{Level: level})
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("BERTH_TEST_LOG") != "" {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("logs:\n%s", buf.String())
		}
	})
	return slog.New(h)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// waitFor polls cond every 20ms until it returns nil or the deadline
// passes; then it fails the test with the last error.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// tnode is a test server: its node, FSM and the config to restart it with.
type tnode struct {
	cfg  Config
	node *Node
	fsm  *kvFSM
}

// fastTimings shortens gossip and reconcile periods for tests; Raft keeps
// its production defaults so the tests exercise them.
func fastTimings(c *Config) {
	c.GossipInterval = 50 * time.Millisecond
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 2
	c.ReconcileInterval = 100 * time.Millisecond
	c.RetryJoinInterval = 200 * time.Millisecond
	c.ReconnectInterval = 500 * time.Millisecond
}

// tcpConfig is a loopback, on-disk server config with kernel-assigned ports.
func tcpConfig(t testing.TB, name string, expect int, join ...string) Config {
	c := Config{
		NodeName:        name,
		DataDir:         t.TempDir(),
		RaftBind:        "127.0.0.1:0",
		GossipBind:      "127.0.0.1:0",
		APIAddr:         "api-" + name + ".test:8080", // only gossiped
		BootstrapExpect: expect,
		Join:            join,
		Logger:          testLogger(t).With("node", name),
		Version:         "test",
	}
	fastTimings(&c)
	return c
}

// start starts a node with a fresh FSM; on restart the bound addresses of
// the previous run are reused so the server keeps its identity.
func start(t testing.TB, cfg Config) *tnode {
	t.Helper()
	tn := &tnode{cfg: cfg, fsm: newKV()}
	cfg.FSM = tn.fsm
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeName, err)
	}
	if err := n.Start(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("Start(%s): %v", cfg.NodeName, err)
	}
	tn.node = n
	if !cfg.InMemory {
		tn.cfg.RaftBind = n.RaftAddr()
		tn.cfg.GossipBind = n.GossipAddr()
	}
	t.Cleanup(func() { _ = n.Close() })
	return tn
}

// restart starts the same server again on its data directory.
func (tn *tnode) restart(t testing.TB) *tnode {
	t.Helper()
	return start(t, tn.cfg)
}

func (tn *tnode) stop(t testing.TB) {
	t.Helper()
	if err := tn.node.Close(); err != nil {
		t.Fatalf("Close(%s): %v", tn.cfg.NodeName, err)
	}
}

// leaderOf returns the one server among nodes that is leader, checking
// that every other live one agrees; error if none or disagreement.
func leaderOf(nodes []*tnode) (*tnode, error) {
	var leader *tnode
	for _, tn := range nodes {
		if tn.node.IsLeader() {
			if leader != nil {
				return nil, fmt.Errorf("two leaders: %s and %s", leader.cfg.NodeName, tn.cfg.NodeName)
			}
			leader = tn
		}
	}
	if leader == nil {
		return nil, errors.New("no leader")
	}
	for _, tn := range nodes {
		if id, _, _ := tn.node.Leader(); id != leader.cfg.NodeName {
			return nil, fmt.Errorf("%s thinks the leader is %q, not %s", tn.cfg.NodeName, id, leader.cfg.NodeName)
		}
	}
	return leader, nil
}

func waitLeader(t testing.TB, nodes []*tnode, timeout time.Duration) *tnode {
	t.Helper()
	var leader *tnode
	waitFor(t, timeout, "a leader agreed by all servers", func() error {
		l, err := leaderOf(nodes)
		leader = l
		return err
	})
	return leader
}

// set applies "set k v" on the leader among nodes, retrying through an
// election; it fails the test if no leader accepts it in time.
func set(t testing.TB, nodes []*tnode, k, v string) uint64 {
	t.Helper()
	var idx uint64
	waitFor(t, 15*time.Second, "apply "+k, func() error {
		for _, tn := range nodes {
			if !tn.node.IsLeader() {
				continue
			}
			resp, i, err := tn.node.Apply(ctxTimeout(t, 5*time.Second), []byte("set "+k+" "+v))
			if err != nil {
				return err
			}
			if r := resp.(kvResult); r.Err != nil || r.Index != i {
				return fmt.Errorf("unexpected response %+v at index %d", r, i)
			}
			idx = i
			return nil
		}
		return errors.New("no leader")
	})
	return idx
}

// waitHas waits until every node's FSM has key k = v.
func waitHas(t testing.TB, nodes []*tnode, k, v string) {
	t.Helper()
	waitFor(t, 15*time.Second, "replication of "+k, func() error {
		for _, tn := range nodes {
			if got, ok := tn.fsm.get(k); !ok || got != v {
				return fmt.Errorf("%s has %s=%q (present %v), want %q", tn.cfg.NodeName, k, got, ok, v)
			}
		}
		return nil
	})
}

// voters returns the sorted voter ids in n's Raft configuration.
func voters(n *Node) ([]string, error) {
	peers, err := n.Peers()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range peers {
		if p.Voter {
			ids = append(ids, p.ID)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

func waitVoters(t testing.TB, n *Node, want ...string) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("voters %v on %s", want, n.Name()), func() error {
		got, err := voters(n)
		if err != nil {
			return err
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("voters are %v", got)
		}
		return nil
	})
}
