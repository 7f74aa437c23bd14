package cluster

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// stableFaultCluster starts three in-memory servers whose stable stores
// fail while sick names them.
func stableFaultCluster(t *testing.T, sick *atomic.Value) []*tnode {
	t.Helper()
	sick.Store("")
	nodes := startInmemCluster(t, NewInmemNetwork(), 3, func(cfg *Config) {
		name := cfg.NodeName
		cfg.DiskProbeInterval = 200 * time.Millisecond
		cfg.stableFault = func() error {
			if sick.Load() == name {
				return errNoSpace
			}
			return nil
		}
	})
	// A server left waiting for its disk must be able to finish.
	t.Cleanup(func() { sick.Store("") })
	return nodes
}

// TestStableStoreFailureStallsInsteadOfPanicking: hashicorp/raft panics when
// it cannot persist a new term. A follower whose stable store fails when an
// election starts a new term must not crash: it waits for its disk, the
// other two elect a leader and take writes, members show the failing disk,
// and when the disk recovers the server persists the term, catches up and
// takes part again.
func TestStableStoreFailureStallsInsteadOfPanicking(t *testing.T) {
	var sick atomic.Value
	nodes := stableFaultCluster(t, &sick)
	leader := checkOneCluster(t, nodes)
	set(t, nodes, "before", "1")
	rest := without(nodes, leader)
	stuck, target := rest[0], rest[1]
	waitHas(t, nodes, "before", "1")
	term := leader.node.Term()

	// A new term: the leader hands over to target, which asks stuck for
	// its vote in term+1 (stuck must persist term+1 first).
	sick.Store(stuck.cfg.NodeName)
	if err := leader.node.TransferLeadership(ctxTimeout(t, 30*time.Second), target.cfg.NodeName); err != nil {
		t.Fatalf("transfer leadership to %s: %v", target.cfg.NodeName, err)
	}
	healthy := without(nodes, stuck)
	newLeader := waitLeader(t, healthy, 30*time.Second)
	if got := newLeader.node.Term(); got <= term {
		t.Fatalf("term %d after the election, want more than %d", got, term)
	}
	set(t, healthy, "during", "2")
	waitFor(t, 15*time.Second, "the stalled server to say its disk fails", func() error {
		if e := stuck.node.DiskError(); !strings.Contains(e, "no space left on device") {
			return fmt.Errorf("DiskError() = %q", e)
		}
		return nil
	})
	waitFor(t, 15*time.Second, "members to report the failing disk", func() error {
		for _, m := range newLeader.node.Members() {
			if m.Name == stuck.cfg.NodeName && strings.Contains(m.DiskError, "no space left on device") {
				return nil
			}
		}
		return errors.New("not reported yet")
	})
	// Several election timeouts: the stalled server neither leads nor
	// holds an unpersisted term.
	for range 6 {
		time.Sleep(500 * time.Millisecond)
		if stuck.node.IsLeader() {
			t.Fatal("the server whose stable store fails became leader")
		}
		if got := stuck.node.Term(); got > term {
			t.Fatalf("the server whose stable store fails uses term %d, which it could not persist (last persisted %d)", got, term)
		}
	}
	if _, ok := stuck.fsm.get("during"); ok {
		t.Fatal("the stalled server applied a write of the term it could not persist")
	}

	sick.Store("")
	waitHas(t, nodes, "during", "2")
	waitFor(t, 15*time.Second, "the disk to be healthy again", func() error {
		if e := stuck.node.DiskError(); e != "" {
			return errors.New(e)
		}
		return nil
	})
	set(t, nodes, "after", "3")
	waitHas(t, nodes, "after", "3")
	if got, want := stuck.node.Term(), newLeader.node.Term(); got != want {
		t.Fatalf("the recovered server is at term %d, the leader at %d", got, want)
	}
}

// TestStableStoreStalledServerCloses: a server whose Raft waits for its
// disk to persist a term still closes (without waiting for Raft's goroutine
// beyond a bound), reporting why, instead of hanging or panicking.
func TestStableStoreStalledServerCloses(t *testing.T) {
	var sick atomic.Value
	nodes := stableFaultCluster(t, &sick)
	leader := checkOneCluster(t, nodes)
	rest := without(nodes, leader)
	stuck, target := rest[0], rest[1]
	sick.Store(stuck.cfg.NodeName)
	if err := leader.node.TransferLeadership(ctxTimeout(t, 30*time.Second), target.cfg.NodeName); err != nil {
		t.Fatalf("transfer leadership to %s: %v", target.cfg.NodeName, err)
	}
	waitLeader(t, without(nodes, stuck), 30*time.Second)
	waitFor(t, 15*time.Second, "the term write to stall", func() error {
		if !stuck.node.stableGuard.stalled() {
			return errors.New("not stalled")
		}
		return nil
	})
	closed := make(chan error, 1)
	go func() { closed <- stuck.node.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, errRaftStalled) {
			t.Fatalf("Close of a stalled server: %v, want %v", err, errRaftStalled)
		}
	case <-time.After(stalledShutdownWait + 30*time.Second):
		t.Fatal("Close of a server stalled on its disk did not return")
	}
}
