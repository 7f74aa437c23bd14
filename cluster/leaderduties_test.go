package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBarrierFailureIsRetried: the barrier at the start of a term fails
// once; leader duties are retried in the same term and the leader work runs.
func TestBarrierFailureIsRetried(t *testing.T) {
	cfg := inmemConfig(t, "solo", nil, 0)
	cfg.LeaderRetryBackoff = 10 * time.Millisecond
	cfg.FSM = newKV()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var barriers atomic.Int32
	n.barrier = func(ctx context.Context) error {
		if barriers.Add(1) == 1 {
			return errors.New("injected barrier failure")
		}
		return n.Barrier(ctx)
	}
	ctx := ctxTimeout(t, 30*time.Second)
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	running := make(chan uint64, 4)
	runDone := make(chan error, 1)
	go func() {
		runDone <- n.RunAsLeader(ctx, func(lctx context.Context, term uint64) error {
			running <- term
			<-lctx.Done()
			return nil
		})
	}()
	select {
	case term := <-running:
		if term == 0 || term != n.Term() {
			t.Fatalf("leader work runs for term %d, node is in term %d", term, n.Term())
		}
	case <-ctx.Done():
		t.Fatal("leader work never ran after a failed barrier")
	}
	if got := barriers.Load(); got != 2 {
		t.Fatalf("barriers = %d, want 2 (one failure, one retry)", got)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-runDone; !errors.Is(err, ErrShutdown) {
		t.Fatalf("RunAsLeader = %v, want ErrShutdown", err)
	}
}

// startDutyCluster starts three in-memory servers that retry leader work
// every backoff and hand leadership over after two failures.
func startDutyCluster(t *testing.T, backoff time.Duration) []*tnode {
	network := NewInmemNetwork()
	var nodes []*tnode
	for i := range 3 {
		cfg := inmemConfig(t, fmt.Sprintf("s%d", i), network, 3)
		cfg.LeaderRetryBackoff = backoff
		cfg.LeaderRetryBackoffMax = backoff
		cfg.LeaderFailuresBeforeTransfer = 2
		if i > 0 {
			cfg.Join = []string{nodes[0].node.GossipAddr()}
		}
		nodes = append(nodes, start(t, cfg))
	}
	return nodes
}

// TestFailingLeaderWorkHandsLeadershipOver: the leader's work keeps
// failing on one server; after LeaderFailuresBeforeTransfer attempts it
// hands leadership to another server, whose work then runs.
func TestFailingLeaderWorkHandsLeadershipOver(t *testing.T) {
	nodes := startDutyCluster(t, 20*time.Millisecond)
	bad := checkOneCluster(t, nodes)

	ctx, cancel := context.WithCancel(ctxTimeout(t, 60*time.Second))
	defer cancel()
	var mu sync.Mutex
	var failedTerms []uint64
	running := make(chan string, 8)
	var wg sync.WaitGroup
	for _, tn := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = tn.node.RunAsLeader(ctx, func(lctx context.Context, term uint64) error {
				if tn == bad {
					mu.Lock()
					failedTerms = append(failedTerms, term)
					mu.Unlock()
					return errors.New("injected scheduler failure")
				}
				running <- tn.cfg.NodeName
				<-lctx.Done()
				return nil
			})
		}()
	}
	select {
	case name := <-running:
		if name == bad.cfg.NodeName {
			t.Fatalf("leader work ran on the failing server")
		}
	case <-ctx.Done():
		t.Fatal("leadership never moved away from the server whose leader work keeps failing")
	}
	if bad.node.IsLeader() {
		t.Fatal("the failing server is still leader")
	}
	mu.Lock()
	n := len(failedTerms)
	mu.Unlock()
	if n < 2 {
		t.Fatalf("leader work failed %d times before the handover, want at least 2", n)
	}
	cancel()
	wg.Wait()
}

// TestNoHandoverFailureKeepsLeadership: a failure that another server
// would meet too (ErrNoHandover) is retried on the leader, past the
// handover threshold, without moving leadership.
func TestNoHandoverFailureKeepsLeadership(t *testing.T) {
	leader := checkOneCluster(t, startDutyCluster(t, 5*time.Millisecond))
	ctx := ctxTimeout(t, 30*time.Second)
	var attempts atomic.Int32
	enough := make(chan struct{})
	go func() {
		_ = leader.node.RunAsLeader(ctx, func(lctx context.Context, term uint64) error {
			if attempts.Add(1) == 10 {
				close(enough)
			}
			return fmt.Errorf("framework removed: %w", ErrNoHandover)
		})
	}()
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatalf("leader work retried %d times, want 10", attempts.Load())
	}
	if !leader.node.IsLeader() {
		t.Fatal("leadership moved for a failure that another server would meet too")
	}
}

// TestApplyAsksCheckProposalWithServerVersions: Apply hands the checker
// the version each server of the Raft configuration gossips, and a refusal
// proposes nothing.
func TestApplyAsksCheckProposalWithServerVersions(t *testing.T) {
	network := NewInmemNetwork()
	var seen atomic.Value
	check := func(cmd []byte, versions []string) error {
		seen.Store(slices.Sorted(slices.Values(versions)))
		if string(cmd) == "set new x" && slices.Contains(versions, "0.1.0") {
			return errors.New("a server is too old")
		}
		return nil
	}
	var nodes []*tnode
	for i, v := range []string{"0.1.0", "0.2.0", "0.2.0"} {
		cfg := inmemConfig(t, fmt.Sprintf("s%d", i), network, 3)
		cfg.Version = v
		cfg.CheckProposal = check
		if i > 0 {
			cfg.Join = []string{nodes[0].node.GossipAddr()}
		}
		nodes = append(nodes, start(t, cfg))
	}
	leader := checkOneCluster(t, nodes)
	ctx := ctxTimeout(t, 30*time.Second)
	waitFor(t, 15*time.Second, "every server's version in the check", func() error {
		if _, _, err := leader.node.Apply(ctx, []byte("set old x")); err != nil {
			return err
		}
		if got := fmt.Sprint(seen.Load()); got != "[0.1.0 0.2.0 0.2.0]" {
			return fmt.Errorf("versions = %s", got)
		}
		return nil
	})
	before := leader.node.AppliedIndex()
	_, _, err := leader.node.Apply(ctx, []byte("set new x"))
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("Apply of a command an old server cannot apply = %v, want ErrRefused", err)
	}
	if _, ok := leader.fsm.get("new"); ok || leader.node.AppliedIndex() != before {
		t.Fatal("a refused proposal reached the log")
	}
}
