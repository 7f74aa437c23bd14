package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A server whose disk cannot take its Raft log (full, read-only, failing)
// must not keep winning elections: a leader that cannot append steps down
// (hashicorp/raft does that), but as a follower it would campaign again as
// soon as it missed a heartbeat, win, fail to append and step down, once an
// election timeout, for as long as the disk stays full (an election storm
// that also stalls the healthy servers). So the first failed append marks
// the disk unhealthy, and until a probe write succeeds again this server's
// heartbeat and election timeouts are raised out of reach: it stays a
// follower, the others elect a leader among themselves (or, alone, it waits
// with no leader, writes failing with a clear error), and when the disk
// recovers it takes its normal timeouts back and catches up on its own.

// diskSick are the timeouts of a server whose disk failed: long enough that
// it never campaigns while the disk is failing.
const diskSick = 24 * time.Hour

// DefaultDiskProbeInterval is how often a server whose disk failed tries a
// probe write.
const DefaultDiskProbeInterval = 2 * time.Second

// diskHealth is the state of this server's Raft disk.
type diskHealth struct {
	mu    sync.Mutex
	err   error // nil: healthy
	since time.Time
	kick  chan struct{}
}

func newDiskHealth() *diskHealth { return &diskHealth{kick: make(chan struct{}, 1)} }

// failed records a failed write; it reports whether the disk was healthy
// until now.
func (d *diskHealth) failed(err error) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return false
	}
	d.err, d.since = err, time.Now()
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return true
}

func (d *diskHealth) recovered() {
	d.mu.Lock()
	d.err = nil
	d.mu.Unlock()
}

// status returns the failure, if any, and since when.
func (d *diskHealth) status() (error, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err, d.since
}

// guardedLogStore reports failed appends to the disk health.
type guardedLogStore struct {
	raft.LogStore
	onFail func(error)
	// fault, when set (tests), fails every append with it.
	fault func() error
}

func (g *guardedLogStore) StoreLog(l *raft.Log) error { return g.StoreLogs([]*raft.Log{l}) }

func (g *guardedLogStore) StoreLogs(logs []*raft.Log) error {
	err := g.injected()
	if err == nil {
		err = g.LogStore.StoreLogs(logs)
	}
	if err != nil {
		g.onFail(err)
	}
	return err
}

func (g *guardedLogStore) injected() error {
	if g.fault == nil {
		return nil
	}
	return g.fault()
}

// onDiskFailure runs on Raft's goroutine, inside the failed append: the
// timeouts are raised before Raft turns follower and arms its heartbeat
// timer, so not even one more election starts.
func (n *Node) onDiskFailure(err error) {
	if !n.disk.failed(err) {
		return
	}
	n.log.Error("the raft log or stable store cannot be written: this server stops taking part in elections until its disk recovers", "err", err, "data_dir", n.cfg.DataDir)
	if n.raft == nil {
		return
	}
	if rerr := n.raft.ReloadConfig(raft.ReloadableConfig{
		TrailingLogs: n.cfg.TrailingLogs, SnapshotInterval: n.cfg.SnapshotInterval, SnapshotThreshold: n.cfg.SnapshotThreshold,
		HeartbeatTimeout: diskSick, ElectionTimeout: diskSick,
	}); rerr != nil {
		n.log.Error("raise the raft timeouts while the disk fails", "err", rerr)
	}
}

// diskLoop probes a failed disk until a write succeeds, then gives Raft its
// normal timeouts back.
func (n *Node) diskLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.DiskProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.disk.kick:
		case <-t.C:
		}
		failure, since := n.disk.status()
		if failure == nil {
			continue
		}
		if err := n.probeDisk(); err != nil {
			continue
		}
		if err := n.raft.ReloadConfig(raft.ReloadableConfig{
			TrailingLogs: n.cfg.TrailingLogs, SnapshotInterval: n.cfg.SnapshotInterval, SnapshotThreshold: n.cfg.SnapshotThreshold,
			HeartbeatTimeout: n.cfg.HeartbeatTimeout, ElectionTimeout: n.cfg.ElectionTimeout,
		}); err != nil {
			n.log.Error("restore the raft timeouts", "err", err)
			continue
		}
		n.disk.recovered()
		n.log.Info("the raft disk takes writes again; this server takes part in elections again", "failed_for", time.Since(since).Round(time.Second))
	}
}

// diskProbeBytes is the size of a probe write: a disk with less room than
// this is not ready for a log again.
const diskProbeBytes = 1 << 20

// probeDisk writes, syncs and removes a file in the Raft directory.
func (n *Node) probeDisk() error {
	if n.logGuard != nil {
		if err := n.logGuard.injected(); err != nil {
			return err
		}
	}
	if n.stableGuard != nil {
		if err := n.stableGuard.injected(); err != nil {
			return err
		}
	}
	if n.cfg.InMemory {
		return nil
	}
	path := filepath.Join(n.cfg.DataDir, "raft", ".disk-probe")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	_, werr := f.Write(make([]byte, diskProbeBytes))
	serr := f.Sync()
	return errors.Join(werr, serr, f.Close())
}

// DiskError describes why this server's Raft disk is failing, "" when it
// is healthy.
func (n *Node) DiskError() string {
	err, since := n.disk.status()
	if err == nil {
		return ""
	}
	return fmt.Sprintf("raft disk cannot be written since %s: %v", since.UTC().Format(time.RFC3339), err)
}

// shorten cuts s to at most n bytes, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
