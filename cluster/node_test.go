package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func inmemConfig(t testing.TB, name string, network *InmemNetwork, expect int, join ...string) Config {
	c := Config{
		NodeName:        name,
		InMemory:        true,
		Network:         network,
		APIAddr:         "api-" + name + ".test:8080",
		BootstrapExpect: expect,
		Join:            join,
		Logger:          testLogger(t).With("node", name),
		Version:         "test",
	}
	fastTimings(&c)
	return c
}

func TestConfigValidation(t *testing.T) {
	good := func() Config {
		return Config{NodeName: "a", DataDir: "/tmp/x", RaftBind: "127.0.0.1:0", GossipBind: "127.0.0.1:0", FSM: newKV()}
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no name", func(c *Config) { c.NodeName = "" }, "NodeName: must be set"},
		{"bad name", func(c *Config) { c.NodeName = "a b" }, `NodeName: "a b" contains ' '`},
		{"no fsm", func(c *Config) { c.FSM = nil }, "FSM: must be set"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir: must be set"},
		{"raft bind not host:port", func(c *Config) { c.RaftBind = "localhost" }, `RaftBind: "localhost" is not host:port`},
		{"raft bind bad port", func(c *Config) { c.RaftBind = "127.0.0.1:99999" }, `RaftBind: "127.0.0.1:99999" has an invalid port`},
		{"raft advertise unspecified", func(c *Config) { c.RaftAdvertise = "0.0.0.0:7000" }, "RaftAdvertise: \"0.0.0.0:7000\": 0.0.0.0 cannot be advertised"},
		{"gossip advertise port 0", func(c *Config) { c.GossipAdvertise = "10.0.0.1:0" }, "GossipAdvertise: \"10.0.0.1:0\": port 0"},
		{"api addr", func(c *Config) { c.APIAddr = "nope" }, `APIAddr: "nope" is not host:port`},
		{"join", func(c *Config) { c.Join = []string{"10.0.0.1:7946", "10.0.0.2"} }, `Join[1]: "10.0.0.2" is not host:port`},
		{"negative expect", func(c *Config) { c.BootstrapExpect = -1 }, "BootstrapExpect: must be >= 0, got -1"},
		{"lease > heartbeat", func(c *Config) { c.HeartbeatTimeout = time.Second; c.LeaderLeaseTimeout = 2 * time.Second },
			"LeaderLeaseTimeout: 2s must not exceed HeartbeatTimeout 1s"},
		{"election < heartbeat", func(c *Config) { c.HeartbeatTimeout = time.Second; c.ElectionTimeout = 100 * time.Millisecond },
			"ElectionTimeout: 100ms must be at least HeartbeatTimeout 1s"},
		{"tiny heartbeat", func(c *Config) { c.HeartbeatTimeout = time.Millisecond; c.LeaderLeaseTimeout = time.Millisecond },
			"HeartbeatTimeout: must be at least 5ms, got 1ms"},
		{"probe timeout", func(c *Config) { c.ProbeInterval = time.Second; c.ProbeTimeout = 2 * time.Second },
			"ProbeTimeout: 2s must not exceed ProbeInterval 1s"},
		{"meta too large", func(c *Config) { c.Version = strings.Repeat("v", 600) }, "gossip metadata is"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mutate(&c)
			_, err := New(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: got error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// In-memory configs need no addresses or data dir.
	if _, err := New(Config{NodeName: "a", InMemory: true, FSM: newKV()}); err != nil {
		t.Fatalf("in-memory config rejected: %v", err)
	}
}

func TestNotStartedAndClosed(t *testing.T) {
	n, err := New(inmemConfig(t, "a", nil, 0))
	if err == nil {
		t.Fatal("New without FSM must fail")
	}
	cfg := inmemConfig(t, "a", nil, 0)
	cfg.FSM = newKV()
	n, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 5*time.Second)
	if _, _, err := n.Apply(ctx, []byte("set a b")); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Apply before Start: %v, want ErrNotStarted", err)
	}
	if n.IsLeader() {
		t.Fatal("IsLeader before Start")
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err == nil {
		t.Fatal("second Start must fail")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := n.Apply(ctx, []byte("set a b")); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Apply after Close: %v, want ErrShutdown", err)
	}
}

func TestSingleNodeInmemApply(t *testing.T) {
	tn := start(t, inmemConfig(t, "solo", nil, 0))
	n := tn.node
	ctx := ctxTimeout(t, 10*time.Second)
	if err := n.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if !n.IsLeader() {
		t.Fatal("single server is not leader")
	}
	id, raftAddr, api := n.Leader()
	if id != "solo" || raftAddr != n.RaftAddr() || api != "api-solo.test:8080" || n.LeaderAPIAddr() != api {
		t.Fatalf("Leader() = %q %q %q", id, raftAddr, api)
	}
	resp, idx, err := n.Apply(ctx, []byte("set k v"))
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.(kvResult); r.Index != idx || r.Err != nil {
		t.Fatalf("response %+v, index %d", r, idx)
	}
	if v, _ := tn.fsm.get("k"); v != "v" {
		t.Fatalf("fsm has k=%q", v)
	}
	// An FSM-level error comes back as the response, not as err.
	resp, _, err = n.Apply(ctx, []byte("fail boom"))
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.(kvResult); r.Err == nil || r.Err.Error() != "boom" {
		t.Fatalf("response %+v", r)
	}
	if err := n.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.VerifyLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Term() == 0 {
		t.Fatal("term 0")
	}
	if n.AppliedIndex() < idx {
		t.Fatalf("applied index %d < %d", n.AppliedIndex(), idx)
	}
	peers, err := n.Peers()
	if err != nil || len(peers) != 1 || peers[0].ID != "solo" || !peers[0].Voter || !peers[0].Leader {
		t.Fatalf("Peers() = %+v, %v", peers, err)
	}
	ms := n.Members()
	if len(ms) != 1 || ms[0].Name != "solo" || ms[0].Status != StatusAlive || !ms[0].Leader || !ms[0].Voter ||
		ms[0].APIAddr != "api-solo.test:8080" || ms[0].RaftAddr != n.RaftAddr() || ms[0].Version != "test" {
		t.Fatalf("Members() = %+v", ms)
	}
	st := n.Stats()
	if st["state"] != "Leader" || st["node_name"] != "solo" {
		t.Fatalf("Stats() = %v", st)
	}
	if err := n.TransferLeadership(ctx, "solo"); err == nil {
		t.Fatal("transfer to self must fail")
	}
	if err := n.RemovePeer(ctx, "ghost"); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("RemovePeer(ghost) = %v, want ErrUnknownPeer", err)
	}
	// A context that ends before the command is accepted.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := n.Apply(done, []byte("set x y")); err == nil {
		t.Fatal("Apply with a cancelled context succeeded")
	}
}

func TestLeadershipWatchAndRunAsLeader(t *testing.T) {
	cfg := inmemConfig(t, "solo", nil, 0)
	cfg.FSM = newKV()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := n.WatchLeadership() // before Start: must still see the gain
	defer w.Close()
	ctx := ctxTimeout(t, 15*time.Second)
	started := make(chan context.Context, 1)
	runDone := make(chan error, 1)
	go func() {
		runDone <- n.RunAsLeader(ctx, func(lctx context.Context, _ uint64) error {
			started <- lctx
			<-lctx.Done()
			return nil
		})
	}()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ev, err := w.Next(ctx)
	if err != nil || !ev.Leader || ev.Term == 0 {
		t.Fatalf("first event %+v, %v; want gained", ev, err)
	}
	var lctx context.Context
	select {
	case lctx = <-started:
	case <-ctx.Done():
		t.Fatal("RunAsLeader never called fn")
	}
	// A late watch starts with the current state.
	w2 := n.WatchLeadership()
	defer w2.Close()
	if ev, err := w2.Next(ctx); err != nil || !ev.Leader {
		t.Fatalf("late watch first event %+v, %v", ev, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if ev, err := w.Next(ctx); err != nil || ev.Leader {
		t.Fatalf("after Close: %+v, %v; want lost", ev, err)
	}
	if _, err := w.Next(ctx); !errors.Is(err, ErrShutdown) {
		t.Fatalf("after lost: %v, want ErrShutdown", err)
	}
	select {
	case <-lctx.Done():
	case <-ctx.Done():
		t.Fatal("leader context not cancelled on Close")
	}
	if err := <-runDone; !errors.Is(err, ErrShutdown) {
		t.Fatalf("RunAsLeader returned %v, want ErrShutdown", err)
	}
	w2.Close()
	if _, err := w2.Next(ctx); !errors.Is(err, ErrWatchClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

func TestSingleNodeRestartOnDisk(t *testing.T) {
	cfg := tcpConfig(t, "solo", 0)
	cfg.SnapshotThreshold = 50 // exercise snapshot + log replay on restart
	cfg.SnapshotInterval = 50 * time.Millisecond
	cfg.TrailingLogs = 10
	tn := start(t, cfg)
	nodes := []*tnode{tn}
	waitLeader(t, nodes, 10*time.Second)
	const writes = 300
	for i := range writes {
		set(t, nodes, fmt.Sprintf("k%03d", i), fmt.Sprint(i))
	}
	waitFor(t, 10*time.Second, "a snapshot on disk", func() error {
		entries, err := os.ReadDir(filepath.Join(cfg.DataDir, "raft", "snapshots"))
		if err != nil || len(entries) == 0 {
			return fmt.Errorf("no snapshot yet (%v)", err)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "raft", "raft.db")); err != nil {
		t.Fatal(err)
	}
	tn.stop(t)

	tn2 := tn.restart(t)
	waitLeader(t, []*tnode{tn2}, 10*time.Second)
	if err := tn2.node.Barrier(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := tn2.fsm.len(); got != writes {
		t.Fatalf("after restart the FSM has %d keys, want %d", got, writes)
	}
	for i := range writes {
		if v, ok := tn2.fsm.get(fmt.Sprintf("k%03d", i)); !ok || v != fmt.Sprint(i) {
			t.Fatalf("k%03d = %q, %v after restart", i, v, ok)
		}
	}
	set(t, []*tnode{tn2}, "after", "restart")

	// A second server on the same data dir is refused, not hung.
	other := tn2.cfg
	other.RaftBind, other.GossipBind = "127.0.0.1:0", "127.0.0.1:0"
	other.FSM = newKV()
	n, err := New(other)
	if err != nil {
		t.Fatal(err)
	}
	err = n.Start(ctxTimeout(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second server on the same data dir: %v", err)
	}
}

func TestStartErrorsNameTheSetting(t *testing.T) {
	cfg := tcpConfig(t, "a", 0)
	cfg.FSM = newKV()
	cfg.RaftBind = "0.0.0.0:0"
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctxTimeout(t, 10*time.Second)); err == nil || !strings.Contains(err.Error(), "set RaftAdvertise") {
		t.Fatalf("Start with an unadvertisable raft bind: %v", err)
	}
	// A failed Start leaves nothing behind: the data dir can be reused.
	cfg.RaftBind = "127.0.0.1:0"
	start(t, cfg)

	busy := tcpConfig(t, "b", 0)
	busy.FSM = newKV()
	other := start(t, tcpConfig(t, "c", 0))
	busy.RaftBind = other.node.RaftAddr()
	n2, err := New(busy)
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Start(ctxTimeout(t, 10*time.Second)); err == nil || !strings.Contains(err.Error(), "raft transport on "+busy.RaftBind) {
		t.Fatalf("Start on a busy raft port: %v", err)
	}
}

// TestKill9KeepsAcknowledgedWrites runs a server in a child process, kills
// it with SIGKILL while it is writing, and checks that every write it
// acknowledged is there after a restart on the same data directory.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if os.Getenv("BERTH_CLUSTER_CHILD_DIR") != "" {
		t.Skip("child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.v")
	// The child dies by SIGKILL, so the temp dirs its testing.T makes are
	// never removed by it: they go under this test's, which is.
	cmd.Env = append(os.Environ(), "BERTH_CLUSTER_CHILD_DIR="+dir, "TMPDIR="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	var acked []int
	var raftAddr, gossipAddr string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if a, ok := strings.CutPrefix(line, "ADDRS "); ok {
			raftAddr, gossipAddr, _ = strings.Cut(a, " ")
		}
		if a, ok := strings.CutPrefix(line, "ACK "); ok {
			i, err := strconv.Atoi(a)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			acked = append(acked, i)
			if len(acked) == 200 && !killed {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
	}
	_ = cmd.Wait()
	if !killed || len(acked) < 200 {
		t.Fatalf("child exited before being killed (acked %d)", len(acked))
	}
	cfg := tcpConfig(t, "child", 0)
	cfg.DataDir, cfg.RaftBind, cfg.GossipBind = dir, raftAddr, gossipAddr
	tn := start(t, cfg)
	waitLeader(t, []*tnode{tn}, 10*time.Second)
	if err := tn.node.Barrier(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, i := range acked {
		if v, ok := tn.fsm.get(fmt.Sprintf("k%d", i)); !ok || v != fmt.Sprint(i) {
			t.Fatalf("acknowledged write k%d lost after kill -9 (got %q, %v); %d acked", i, v, ok, len(acked))
		}
	}
	t.Logf("%d acknowledged writes survived kill -9", len(acked))
}

// TestKill9Child is the child process of TestKill9KeepsAcknowledgedWrites.
func TestKill9Child(t *testing.T) {
	dir := os.Getenv("BERTH_CLUSTER_CHILD_DIR")
	if dir == "" {
		t.Skip("only run as a child process")
	}
	cfg := tcpConfig(t, "child", 0)
	cfg.DataDir = dir
	cfg.SnapshotThreshold = 64
	cfg.SnapshotInterval = 50 * time.Millisecond
	cfg.TrailingLogs = 16
	tn := start(t, cfg)
	waitLeader(t, []*tnode{tn}, 10*time.Second)
	fmt.Printf("ADDRS %s %s\n", tn.node.RaftAddr(), tn.node.GossipAddr())
	ctx := context.Background()
	for i := 0; ; i++ {
		if _, _, err := tn.node.Apply(ctx, []byte(fmt.Sprintf("set k%d %d", i, i))); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		fmt.Printf("ACK %d\n", i) // stdout is unbuffered: the parent sees it at once
	}
}
