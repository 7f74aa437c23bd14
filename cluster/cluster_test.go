package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// startCluster starts n on-disk servers on loopback with kernel-assigned
// ports and BootstrapExpect n; each joins s0 through gossip.
func startCluster(t *testing.T, n int, mutate func(*Config)) []*tnode {
	t.Helper()
	var nodes []*tnode
	for i := range n {
		cfg := tcpConfig(t, fmt.Sprintf("s%d", i), n)
		if i > 0 {
			cfg.Join = []string{nodes[0].node.GossipAddr()}
		}
		if mutate != nil {
			mutate(&cfg)
		}
		nodes = append(nodes, start(t, cfg))
	}
	return nodes
}

// startInmemCluster is startCluster with in-memory servers on network.
func startInmemCluster(t *testing.T, network *InmemNetwork, n int, mutate func(*Config)) []*tnode {
	t.Helper()
	var nodes []*tnode
	for i := range n {
		cfg := inmemConfig(t, fmt.Sprintf("s%d", i), network, n)
		if i > 0 {
			cfg.Join = []string{nodes[0].node.GossipAddr()}
		}
		if mutate != nil {
			mutate(&cfg)
		}
		nodes = append(nodes, start(t, cfg))
	}
	return nodes
}

func names(nodes []*tnode) []string {
	var out []string
	for _, tn := range nodes {
		out = append(out, tn.cfg.NodeName)
	}
	slices.Sort(out)
	return out
}

func without(nodes []*tnode, drop ...*tnode) []*tnode {
	var out []*tnode
	for _, tn := range nodes {
		if !slices.Contains(drop, tn) {
			out = append(out, tn)
		}
	}
	return out
}

func follower(nodes []*tnode, leader *tnode) *tnode {
	for _, tn := range nodes {
		if tn != leader {
			return tn
		}
	}
	return nil
}

// checkOneCluster verifies that every server has the same configuration
// with all servers as voters and agrees on one leader.
func checkOneCluster(t *testing.T, nodes []*tnode) *tnode {
	t.Helper()
	leader := waitLeader(t, nodes, 30*time.Second)
	for _, tn := range nodes {
		waitVoters(t, tn.node, names(nodes)...)
	}
	return leader
}

func TestThreeNodeBootstrapFailoverRestart(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leader := checkOneCluster(t, nodes)

	// Writes go through the leader; a follower refuses them and points at
	// the leader's API address.
	for i := range 20 {
		set(t, nodes, fmt.Sprintf("k%d", i), "before")
	}
	waitHas(t, nodes, "k19", "before")
	f := follower(nodes, leader)
	if _, _, err := f.node.Apply(ctxTimeout(t, 5*time.Second), []byte("set x y")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Apply on follower: %v, want ErrNotLeader", err)
	}
	waitFor(t, 10*time.Second, "follower knows the leader's API address", func() error {
		if got := f.node.LeaderAPIAddr(); got != leader.cfg.APIAddr {
			return fmt.Errorf("follower says leader API is %q, want %q", got, leader.cfg.APIAddr)
		}
		return nil
	})
	waitFor(t, 10*time.Second, "all members alive with metadata", func() error {
		ms := f.node.Members()
		if len(ms) != 3 {
			return fmt.Errorf("members %+v", ms)
		}
		for _, m := range ms {
			if m.Status != StatusAlive || !m.Voter || m.APIAddr == "" || m.RaftAddr == "" || m.GossipAddr == "" || m.Version != "test" {
				return fmt.Errorf("member %+v", m)
			}
			if m.Leader != (m.Name == leader.cfg.NodeName) {
				return fmt.Errorf("member %s leader=%v", m.Name, m.Leader)
			}
		}
		return nil
	})
	// Snapshots can be saved from a follower.
	if _, err := f.node.SaveSnapshot(ctxTimeout(t, 10*time.Second), &strings.Builder{}); err != nil {
		t.Fatalf("SaveSnapshot on follower: %v", err)
	}

	// Kill the leader: the two others elect a new one.
	killed := leader
	killedIndex := killed.node.AppliedIndex()
	killed.stop(t)
	survivors := without(nodes, killed)
	t0 := time.Now()
	newLeader := waitLeader(t, survivors, 15*time.Second)
	t.Logf("failover: %s elected %s after leader %s stopped", time.Since(t0).Round(time.Millisecond), newLeader.cfg.NodeName, killed.cfg.NodeName)
	for i := range 20 {
		set(t, survivors, fmt.Sprintf("k%d", i), "after")
	}
	set(t, survivors, "new", "key")

	// The killed server comes back on its data dir as a follower and
	// catches up; what it had before is intact.
	back := killed.restart(t)
	if got := back.node.raft.LastIndex(); got < killedIndex {
		t.Fatalf("restarted server's log ends at %d, it had applied %d before", got, killedIndex)
	}
	all := append(survivors, back)
	waitHas(t, all, "new", "key")
	for i := range 20 {
		waitHas(t, all, fmt.Sprintf("k%d", i), "after")
	}
	l := checkOneCluster(t, all)
	if l == back {
		// Allowed by Raft, but with pre-vote a returning server should not
		// disrupt a healthy leader.
		t.Logf("note: the restarted server became leader")
	}
	if back.node.IsLeader() && l != back {
		t.Fatal("inconsistent leadership")
	}
}

func TestFiveNodesSurviveTwoFailures(t *testing.T) {
	nodes := startCluster(t, 5, nil)
	leader := checkOneCluster(t, nodes)
	for i := range 10 {
		set(t, nodes, fmt.Sprintf("k%d", i), "v")
	}
	// Kill the leader and one follower.
	other := follower(nodes, leader)
	leader.stop(t)
	other.stop(t)
	survivors := without(nodes, leader, other)
	t0 := time.Now()
	newLeader := waitLeader(t, survivors, 20*time.Second)
	t.Logf("5 servers, 2 killed: %s elected after %s", newLeader.cfg.NodeName, time.Since(t0).Round(time.Millisecond))
	set(t, survivors, "after", "two failures")
	waitHas(t, survivors, "after", "two failures")
	for i := range 10 {
		waitHas(t, survivors, fmt.Sprintf("k%d", i), "v")
	}
	// The configuration still has all five (within DeadServerCleanup).
	waitVoters(t, newLeader.node, names(nodes)...)
}

func TestGracefulLeaveRemovesPeer(t *testing.T) {
	nodes := startCluster(t, 3, func(c *Config) { c.DeadServerCleanup, c.MinQuorum = -1, 1 })
	leader := checkOneCluster(t, nodes)
	set(t, nodes, "k", "v")

	// A follower leaves: the leader removes it from the configuration.
	f := follower(nodes, leader)
	if err := f.node.Leave(ctxTimeout(t, 20*time.Second)); err != nil {
		t.Fatalf("follower Leave: %v", err)
	}
	f.stop(t)
	rest := without(nodes, f)
	waitVoters(t, leader.node, names(rest)...)
	waitFor(t, 10*time.Second, "left status", func() error {
		for _, m := range leader.node.Members() {
			if m.Name == f.cfg.NodeName && m.Status != StatusLeft {
				return fmt.Errorf("member %s is %s", m.Name, m.Status)
			}
		}
		return nil
	})

	// The leader leaves: it hands leadership over first, then is removed.
	if err := leader.node.Leave(ctxTimeout(t, 20*time.Second)); err != nil {
		t.Fatalf("leader Leave: %v", err)
	}
	leader.stop(t)
	last := without(rest, leader)
	waitLeader(t, last, 15*time.Second)
	waitVoters(t, last[0].node, names(last)...)
	set(t, last, "still", "works")
}

// TestMinQuorumKeepsVoters: with the default minimum quorum (the
// bootstrap-expect size), neither a leave nor the dead-server cleanup takes
// a 3-server cluster below 3 voters, and a leader that steps down before a
// restart stays a voter.
func TestMinQuorumKeepsVoters(t *testing.T) {
	nodes := startCluster(t, 3, func(c *Config) { c.DeadServerCleanup = 500 * time.Millisecond })
	leader := checkOneCluster(t, nodes)
	set(t, nodes, "k", "v")

	f := follower(nodes, leader)
	err := f.node.Leave(ctxTimeout(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "minimum quorum of 3") || !strings.Contains(err.Error(), "remove-peer") {
		t.Fatalf("follower Leave below the minimum quorum: %v", err)
	}
	// A failed server outlives the cleanup delay in the configuration.
	f.stop(t)
	rest := without(nodes, f)
	set(t, rest, "k2", "v2")
	time.Sleep(3 * time.Second) // several cleanup periods: the removal must not happen
	waitVoters(t, leader.node, names(nodes)...)

	// The leader steps down for a restart: another server leads, and the
	// configuration still has all three.
	if err := leader.node.StepDown(ctxTimeout(t, 20*time.Second)); err != nil {
		t.Fatalf("StepDown: %v", err)
	}
	waitFor(t, 15*time.Second, "a new leader", func() error {
		for _, n := range rest {
			if n != leader && n.node.IsLeader() {
				return nil
			}
		}
		return errors.New("no other leader yet")
	})
	waitVoters(t, leader.node, names(nodes)...)
}

func TestDeadServerCleanup(t *testing.T) {
	nodes := startCluster(t, 3, func(c *Config) { c.DeadServerCleanup, c.MinQuorum = time.Second, 1 })
	leader := checkOneCluster(t, nodes)
	set(t, nodes, "k", "v")

	dead := follower(nodes, leader)
	dead.stop(t)
	rest := without(nodes, dead)
	waitVoters(t, leader.node, names(rest)...)
	set(t, rest, "k2", "v2")

	// It comes back: the leader adds it again and it catches up.
	back := dead.restart(t)
	all := append(rest, back)
	waitVoters(t, leader.node, names(all)...)
	waitHas(t, all, "k2", "v2")
}

func TestJoinFourthServer(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	checkOneCluster(t, nodes)
	for i := range 50 {
		set(t, nodes, fmt.Sprintf("k%d", i), "v")
	}
	// A new server without Raft state joins through gossip (no bootstrap).
	cfg := tcpConfig(t, "s3", 0, nodes[1].node.GossipAddr())
	fourth := start(t, cfg)
	all := append(nodes, fourth)
	checkOneCluster(t, all)
	waitHas(t, all, "k49", "v")
	set(t, all, "after", "join")
	waitHas(t, all, "after", "join")
}

// TestInmemJoinPromotesNonvoter grows a single server to three through
// gossip joins: the second server starts as a non-voter (a single leader
// cannot keep quorum with an empty voter) and is promoted once caught up.
func TestInmemJoinPromotesNonvoter(t *testing.T) {
	network := NewInmemNetwork()
	s0 := start(t, inmemConfig(t, "s0", network, 0))
	waitLeader(t, []*tnode{s0}, 10*time.Second)
	for i := range 300 {
		set(t, []*tnode{s0}, fmt.Sprintf("k%d", i), "v")
	}
	s1 := start(t, inmemConfig(t, "s1", network, 0, s0.node.GossipAddr()))
	two := []*tnode{s0, s1}
	checkOneCluster(t, two)
	waitHas(t, two, "k299", "v")
	s2 := start(t, inmemConfig(t, "s2", network, 0, s1.node.GossipAddr()))
	three := []*tnode{s0, s1, s2}
	checkOneCluster(t, three)
	set(t, three, "grown", "to three")
	waitHas(t, three, "grown", "to three")
}

// TestBootstrapExpectWaits checks that servers do not bootstrap until the
// expected number see each other, and that a late server with the same
// settings joins the formed cluster instead of bootstrapping another.
func TestBootstrapExpectWaits(t *testing.T) {
	network := NewInmemNetwork()
	a := start(t, inmemConfig(t, "a", network, 3))
	b := start(t, inmemConfig(t, "b", network, 3, a.node.GossipAddr()))
	two := []*tnode{a, b}
	waitFor(t, 10*time.Second, "both see each other", func() error {
		if len(a.node.Members()) != 2 || len(b.node.Members()) != 2 {
			return errors.New("not yet")
		}
		return nil
	})
	// Give them ample time to (wrongly) bootstrap.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		for _, tn := range two {
			if tn.node.AppliedIndex() != 0 || tn.node.IsLeader() {
				t.Fatalf("%s bootstrapped with only 2 of 3 servers", tn.cfg.NodeName)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c := start(t, inmemConfig(t, "c", network, 3, b.node.GossipAddr()))
	three := []*tnode{a, b, c}
	checkOneCluster(t, three)
	set(t, three, "k", "v")
	d := start(t, inmemConfig(t, "d", network, 3, c.node.GossipAddr()))
	four := []*tnode{a, b, c, d}
	checkOneCluster(t, four)
	waitHas(t, four, "k", "v")
}

// TestConcurrentIdenticalBootstrapIsSafe checks the property bootstrap
// relies on: if several servers bootstrap at once with the identical
// configuration, they form one cluster.
func TestConcurrentIdenticalBootstrapIsSafe(t *testing.T) {
	network := NewInmemNetwork()
	var nodes []*tnode
	for i := range 3 {
		// BootstrapExpect 0 with Join: nobody bootstraps on its own (s0's
		// join address does not exist; the others join s0).
		join := []string{"127.0.0.1:1"}
		if i > 0 {
			join = []string{nodes[0].node.GossipAddr()}
		}
		nodes = append(nodes, start(t, inmemConfig(t, fmt.Sprintf("s%d", i), network, 0, join...)))
	}
	for _, tn := range nodes {
		if tn.node.raft.LastIndex() != 0 {
			t.Fatalf("%s bootstrapped on its own", tn.cfg.NodeName)
		}
	}
	var servers []raft.Server
	for _, tn := range nodes {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(tn.cfg.NodeName), Address: raft.ServerAddress(tn.node.RaftAddr())})
	}
	var wg sync.WaitGroup
	for _, tn := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tn.node.bootstrap(servers); err != nil {
				t.Errorf("bootstrap on %s: %v", tn.cfg.NodeName, err)
			}
		}()
	}
	wg.Wait()
	checkOneCluster(t, nodes)
	set(t, nodes, "k", "v")
	waitHas(t, nodes, "k", "v")
}

// TestIsolatedLeaderStopsLeaderWork partitions the leader away: its leader
// work is cancelled (it steps down once its lease runs out), the majority
// elects a new leader, the old one refuses writes, and after the partition
// heals it follows the new leader with the new data.
func TestIsolatedLeaderStopsLeaderWork(t *testing.T) {
	network := NewInmemNetwork()
	nodes := startInmemCluster(t, network, 3, nil)
	old := checkOneCluster(t, nodes)
	set(t, nodes, "k", "before")

	ctx := ctxTimeout(t, 60*time.Second)
	running := make(chan context.Context, 4)
	runDone := make(chan error, 1)
	go func() {
		runDone <- old.node.RunAsLeader(ctx, func(lctx context.Context, _ uint64) error {
			running <- lctx
			<-lctx.Done()
			return nil
		})
	}()
	var lctx context.Context
	select {
	case lctx = <-running:
	case <-ctx.Done():
		t.Fatal("leader work never started")
	}

	network.Isolate(old.cfg.NodeName)
	select {
	case <-lctx.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("isolated leader kept running leader work")
	}
	if old.node.IsLeader() {
		t.Fatal("isolated server still claims leadership after its leader work stopped")
	}
	if _, _, err := old.node.Apply(ctx, []byte("set k stale")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Apply on the deposed leader: %v, want ErrNotLeader", err)
	}
	majority := without(nodes, old)
	waitLeader(t, majority, 20*time.Second)
	set(t, majority, "k", "after")

	network.Heal()
	waitHas(t, nodes, "k", "after")
	checkOneCluster(t, nodes)
	// The old leader's RunAsLeader is still subscribed; stopping it ends it.
	select {
	case err := <-runDone:
		t.Fatalf("RunAsLeader returned early: %v", err)
	default:
	}
}
