package cluster

import (
	"bytes"
	"errors"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// hashicorp/raft (v1.7.3) panics when it cannot persist its current term:
// setCurrentTerm (raft.go) calls panic on a StableStore.SetUint64 error, and
// it runs on Raft's main goroutine whenever the server campaigns (electSelf,
// a won pre-vote) or sees a higher term (an AppendEntries, RequestVote or
// InstallSnapshot request, a vote response). A full or failing disk under
// the stable store therefore took the whole server down.
//
// guardedStableStore makes such a write wait instead: a failed write of the
// current term is retried with backoff until it succeeds, so Raft's main
// goroutine stalls as on a very slow disk. While it stalls the server
// neither campaigns, votes nor acknowledges anything; the disk is marked
// unhealthy (onFail: the election timeouts are raised out of reach, members
// show the error), and the other servers elect a leader among themselves.
// When a write succeeds again Raft continues where it stopped and catches up.
//
// Nothing is used before it is durable: Raft sets its in-memory term only
// after SetUint64 returns, and this store returns only once the write
// succeeded. Vote writes (LastVoteTerm, LastVoteCand) are not retried: Raft
// handles their failure itself by not granting the vote (requestVote) or
// abandoning its own election (electSelf); the failure still marks the disk.
//
// Shutdown while stalled: returning the error would make Raft panic, and
// returning success would be a lie (the term was not persisted; after a
// restart the server could accept entries from a leader of an older term).
// So the write keeps waiting, and Close does not wait for Raft's goroutine
// beyond stalledShutdownWait once the store reports it stalled (teardown):
// the process exits, and the next start reads the last term that was
// persisted.
type guardedStableStore struct {
	raft.StableStore
	onFail func(error)
	// fault, when set (tests), fails every write with its result.
	fault func() error

	// stalls counts writes currently waiting for the disk.
	stalls atomic.Int32
}

// keyCurrentTerm is hashicorp/raft's stable-store key of the current term
// (raft.go, unexported there).
var keyCurrentTerm = []byte("CurrentTerm")

// stableRetryMax caps the backoff between retries of a failed term write.
const stableRetryMax = time.Second

// stalledShutdownWait is how long Close waits for Raft to stop while a term
// write is stalled on a failing disk.
const stalledShutdownWait = 5 * time.Second

func newGuardedStableStore(s raft.StableStore, onFail func(error), fault func() error) *guardedStableStore {
	return &guardedStableStore{StableStore: s, onFail: onFail, fault: fault}
}

func (g *guardedStableStore) injected() error {
	if g.fault == nil {
		return nil
	}
	return g.fault()
}

func (g *guardedStableStore) Set(key, val []byte) error {
	err := g.injected()
	if err == nil {
		err = g.StableStore.Set(key, val)
	}
	if err != nil {
		g.onFail(err)
	}
	return err
}

func (g *guardedStableStore) SetUint64(key []byte, val uint64) error {
	write := func() error {
		if err := g.injected(); err != nil {
			return err
		}
		return g.StableStore.SetUint64(key, val)
	}
	err := write()
	if err == nil {
		return nil
	}
	g.onFail(err)
	if !bytes.Equal(key, keyCurrentTerm) {
		return err
	}
	g.stalls.Add(1)
	defer g.stalls.Add(-1)
	backoff := 10 * time.Millisecond
	for {
		time.Sleep(backoff)
		if err := write(); err == nil {
			return nil
		}
		backoff = min(2*backoff, stableRetryMax)
	}
}

// stalled reports whether a term write is waiting for the disk.
func (g *guardedStableStore) stalled() bool { return g.stalls.Load() > 0 }

// errRaftStalled is Close's error when Raft did not stop because a write
// of its term waits for a failing disk.
var errRaftStalled = errors.New("stop raft: its goroutine waits for a failing disk to persist the current term; left behind (nothing unpersisted was used)")

// stopRaft shuts Raft down and waits for it, but not beyond
// stalledShutdownWait while a term write is stalled on the disk.
func (n *Node) stopRaft() error {
	done := make(chan error, 1)
	f := n.raft.Shutdown()
	go func() { done <- f.Error() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var stalledSince time.Time
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
		}
		if n.stableGuard == nil || !n.stableGuard.stalled() {
			stalledSince = time.Time{}
			continue
		}
		if stalledSince.IsZero() {
			stalledSince = time.Now()
		}
		if time.Since(stalledSince) >= stalledShutdownWait {
			n.log.Error("raft did not stop: a write of its current term waits for the failing disk; exiting without it", "data_dir", n.cfg.DataDir)
			return errRaftStalled
		}
	}
}
