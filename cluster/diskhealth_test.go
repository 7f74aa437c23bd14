package cluster

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var errNoSpace = errors.New("write raft.db: no space left on device (injected)")

// startSickableCluster starts three servers whose Raft log appends fail
// with errNoSpace on the server named in sick ("" : none).
func startSickableCluster(t *testing.T) ([]*tnode, *atomic.Value) {
	t.Helper()
	sick := &atomic.Value{}
	sick.Store("")
	nodes := startCluster(t, 3, func(c *Config) {
		name := c.NodeName
		c.DiskProbeInterval = 200 * time.Millisecond
		c.logFault = func() error {
			if sick.Load() == name {
				return errNoSpace
			}
			return nil
		}
	})
	return nodes, sick
}

// TestDiskFailureStepsDownOnce: a leader whose log cannot be written steps
// down once and stays a follower while its disk fails; the others elect a
// leader among themselves and no election storm follows (the term stays
// put); members say why; when the disk recovers the server catches up on
// its own. (A full disk once made leadership flap about once a second.)
func TestDiskFailureStepsDownOnce(t *testing.T) {
	nodes, sick := startSickableCluster(t)
	leader := checkOneCluster(t, nodes)
	set(t, nodes, "before", "1")

	sick.Store(leader.cfg.NodeName)
	if _, _, err := leader.node.Apply(ctxTimeout(t, 10*time.Second), []byte("set lost x")); err == nil {
		t.Fatal("a write on a leader whose log cannot be written succeeded")
	}
	rest := without(nodes, leader)
	newLeader := waitLeader(t, rest, 30*time.Second)
	set(t, rest, "during", "2")
	term := newLeader.node.Term()
	// Several election timeouts (1 s by default): no server campaigns.
	for range 10 {
		time.Sleep(500 * time.Millisecond)
		if leader.node.IsLeader() {
			t.Fatal("the server whose disk fails became leader again")
		}
	}
	if now := newLeader.node.Term(); now != term {
		t.Fatalf("term went from %d to %d while one disk failed: elections kept starting", term, now)
	}
	waitFor(t, 15*time.Second, "members to report the failing disk", func() error {
		for _, m := range newLeader.node.Members() {
			if m.Name == leader.cfg.NodeName && strings.Contains(m.DiskError, "no space left on device") {
				return nil
			}
		}
		return errors.New("not reported yet")
	})

	sick.Store("")
	waitFor(t, 15*time.Second, "the disk to be healthy again", func() error {
		if e := leader.node.DiskError(); e != "" {
			return errors.New(e)
		}
		return nil
	})
	set(t, nodes, "after", "3")
	waitHas(t, nodes, "during", "2")
	waitHas(t, nodes, "after", "3")
}

// TestDiskFailureAlone: a server alone whose disk fails leaves the cluster
// without a leader (writes fail clearly) instead of re-electing itself every
// second; when the disk recovers it leads again and takes writes.
func TestDiskFailureAlone(t *testing.T) {
	var fail atomic.Bool
	nodes := startCluster(t, 1, func(c *Config) {
		c.DiskProbeInterval = 200 * time.Millisecond
		c.logFault = func() error {
			if fail.Load() {
				return errNoSpace
			}
			return nil
		}
	})
	n := waitLeader(t, nodes, 30*time.Second)
	set(t, nodes, "a", "1")
	fail.Store(true)
	if _, _, err := n.node.Apply(ctxTimeout(t, 10*time.Second), []byte("set b 2")); err == nil {
		t.Fatal("write succeeded on a failing disk")
	}
	term := n.node.Term()
	time.Sleep(3 * time.Second) // three election timeouts
	if n.node.IsLeader() || n.node.Term() != term {
		t.Fatalf("leader=%v, term %d → %d: the server kept electing itself", n.node.IsLeader(), term, n.node.Term())
	}
	fail.Store(false)
	waitLeader(t, nodes, 30*time.Second)
	set(t, nodes, "c", "3")
}

// TestFollowerCatchesUpAfterItsDiskFailed: a follower whose log cannot be
// written while the leader keeps appending gets the log again once its disk
// recovers. (With hashicorp/raft's pipelined replication the leader's
// replication to it deadlocked on the follower's first refused append and
// never resumed, while heartbeats kept flowing: hashicorp/raft#612, found by
// the nemesis suite's disk-full fault.)
func TestFollowerCatchesUpAfterItsDiskFailed(t *testing.T) {
	nodes, sick := startSickableCluster(t)
	leader := checkOneCluster(t, nodes)
	f := follower(nodes, leader)
	set(t, nodes, "before", "1")

	sick.Store(f.cfg.NodeName)
	// Concurrent writes while the follower refuses them, so that several
	// appends to it are in flight when it refuses the first.
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				_, _, _ = leader.node.Apply(ctxTimeout(t, 5*time.Second), []byte(fmt.Sprintf("set during-%d-%d 2", w, i)))
			}
		}()
	}
	wg.Wait()
	set(t, without(nodes, f), "during-last", "2")
	sick.Store("")
	waitFor(t, 15*time.Second, "the follower's disk to be healthy again", func() error {
		if e := f.node.DiskError(); e != "" {
			return errors.New(e)
		}
		return nil
	})
	set(t, without(nodes, f), "after", "3")
	waitHas(t, nodes, "during-last", "2")
	waitHas(t, nodes, "after", "3")
}
