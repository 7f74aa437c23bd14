package cluster

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// monitorLeadership turns raft's leadership notifications into broker
// events. raft sends on NotifyCh synchronously, so this loop only forwards.
func (n *Node) monitorLeadership(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-n.notifyCh:
			term := n.raft.CurrentTerm()
			if n.lead.publish(leader, term) {
				if leader {
					n.log.Info("gained raft leadership", "term", term)
				} else {
					n.log.Info("lost raft leadership", "term", term)
				}
			}
		}
	}
}

// leaderLoop runs the reconciler while this server is leader.
func (n *Node) leaderLoop(ctx context.Context) {
	w := n.lead.subscribe()
	defer w.Close()
	var run taskRunner
	defer run.stop()
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			return
		}
		run.stop()
		if ev.Leader {
			run.start(ctx, n.reconcileLoop)
		}
	}
}

// taskRunner runs at most one task at a time; stop cancels it and waits.
type taskRunner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (t *taskRunner) start(parent context.Context, f func(ctx context.Context)) {
	t.stop()
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	t.cancel, t.done = cancel, done
	go func() {
		defer close(done)
		f(ctx)
	}()
}

func (t *taskRunner) stop() {
	if t.cancel != nil {
		t.cancel()
		<-t.done
		t.cancel, t.done = nil, nil
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// membershipLoop forwards gossip changes to the reconciler and the
// bootstrap loop, keeps this server's gossip metadata current, and forgets
// long-gone members.
func (n *Node) membershipLoop(ctx context.Context) {
	metaTick := time.NewTicker(250 * time.Millisecond)
	defer metaTick.Stop()
	reapTick := time.NewTicker(time.Minute)
	defer reapTick.Stop()
	var lastAppliedUpdate time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.members.changed:
			poke(n.reconcileCh)
			poke(n.bootstrapCh)
		case <-metaTick.C:
			if n.refreshMeta(&lastAppliedUpdate) {
				n.gossipUpdateMu.Lock()
				if !n.leaving.Load() {
					if err := n.gossip.UpdateNode(time.Second); err != nil {
						n.log.Debug("gossip metadata update", "err", err)
					}
				}
				n.gossipUpdateMu.Unlock()
			}
		case <-reapTick.C:
			n.members.reap(n.cfg.ReapTimeout, n.cfg.NodeName)
		}
	}
}

// refreshMeta updates the locally gossiped Raft facts and reports whether
// they changed: whether this server has Raft state, while it is not a
// voter how far it has applied the log (at most once a second), and
// whether its Raft disk is failing.
func (n *Node) refreshMeta(lastAppliedUpdate *time.Time) bool {
	changed := false
	if !n.hasState.Load() && n.raft.LastIndex() > 0 {
		n.hasState.Store(true)
		changed = true
		n.log.Info("raft state present; this server is part of a cluster")
	}
	var applied uint64
	if n.hasState.Load() && !n.isLocalVoter() {
		applied = n.raft.AppliedIndex()
	}
	old := n.gossipApplied.Load()
	if applied != old && (applied == 0 || old == 0 || time.Since(*lastAppliedUpdate) >= time.Second) {
		n.gossipApplied.Store(applied)
		*lastAppliedUpdate = time.Now()
		changed = true
	}
	if disk := n.DiskError(); disk != n.gossipedDisk {
		n.gossipedDisk = disk
		changed = true
	}
	return changed
}

// isLocalVoter reports whether this server is a voter in its own copy of
// the Raft configuration.
func (n *Node) isLocalVoter() bool {
	c, err := n.configuration()
	if err != nil {
		return false
	}
	for _, s := range c.Servers {
		if string(s.ID) == n.cfg.NodeName {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

// aliveOthers counts alive gossip members other than this server.
func (n *Node) aliveOthers() int {
	c := 0
	for _, m := range n.members.snapshot() {
		if m.Name != n.cfg.NodeName && m.Status == StatusAlive {
			c++
		}
	}
	return c
}

// joinLoop joins the configured servers, retrying while this server sees
// no other, and periodically re-contacts failed members so that a healed
// partition or a restarted server is found again.
func (n *Node) joinLoop(ctx context.Context) {
	var lastWarn time.Time
	join := func(addrs []string, what string) {
		if len(addrs) == 0 || n.leaving.Load() {
			return
		}
		num, err := n.gossip.Join(addrs)
		switch {
		case num > 0:
			n.log.Info("joined gossip", "via", what, "contacted", num, "addrs", addrs)
		case time.Since(lastWarn) > 30*time.Second:
			lastWarn = time.Now()
			n.log.Warn("cannot join gossip yet; retrying", "via", what, "addrs", addrs, "err", err)
		default:
			n.log.Debug("cannot join gossip yet; retrying", "via", what, "addrs", addrs, "err", err)
		}
	}
	join(n.cfg.Join, "join")
	retry := time.NewTicker(n.cfg.RetryJoinInterval)
	defer retry.Stop()
	reconnect := time.NewTicker(n.cfg.ReconnectInterval)
	defer reconnect.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
			if n.aliveOthers() == 0 {
				join(n.cfg.Join, "join")
			}
		case <-reconnect.C:
			var failed []string
			for _, m := range n.members.snapshot() {
				if m.Status == StatusFailed && m.Name != n.cfg.NodeName && !slices.Contains(failed, m.GossipAddr) {
					failed = append(failed, m.GossipAddr)
				}
			}
			join(failed, "reconnect")
		}
	}
}

// bootstrapLoop waits until BootstrapExpect servers (all configured with the
// same BootstrapExpect, none with Raft state) see each other in gossip; then
// the one with the lowest name bootstraps Raft with exactly the
// BootstrapExpect lowest-named of them. Every server derives the same
// configuration from the same view, so a second bootstrapper would write
// an identical configuration. The view must stay unchanged for a settle
// period first, so that state flags and late servers propagate.
func (n *Node) bootstrapLoop(ctx context.Context) {
	expect := n.cfg.BootstrapExpect
	self := n.cfg.NodeName
	settle := 2 * n.cfg.GossipInterval
	tick := time.NewTicker(max(n.cfg.GossipInterval, 50*time.Millisecond))
	defer tick.Stop()
	var (
		lastView  []string
		viewSince time.Time
		warned    = map[string]bool{}
	)
	warnOnce := func(key, msg string, args ...any) {
		if !warned[key] {
			warned[key] = true
			n.log.Warn(msg, args...)
		}
	}
	for {
		if n.hasState.Load() || n.raft.LastIndex() > 0 {
			return
		}
		cands, reason := bootstrapCandidates(n.members.snapshot(), expect)
		switch {
		case reason != "":
			warnOnce(reason, "not bootstrapping: "+reason)
			lastView = nil
		case len(cands) < expect:
			lastView = nil
		default:
			view := make([]string, len(cands))
			for i, c := range cands {
				view[i] = c.Name + "=" + c.RaftAddr
			}
			if !slices.Equal(view, lastView) {
				lastView, viewSince = view, time.Now()
				break
			}
			if time.Since(viewSince) < settle {
				break
			}
			chosen := cands[:expect]
			if chosen[0].Name != self {
				// The lowest-named server bootstraps; the others are
				// contacted by the leader it elects.
				break
			}
			servers := make([]raft.Server, len(chosen))
			for i, c := range chosen {
				servers[i] = raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(c.Name), Address: raft.ServerAddress(c.RaftAddr)}
			}
			if len(cands) > expect {
				n.log.Warn("more servers than bootstrap-expect are waiting; bootstrapping with the lowest-named ones, the leader adds the rest", "expect", expect, "seen", len(cands))
			}
			if err := n.bootstrap(servers); err != nil {
				n.log.Error("bootstrap failed; retrying", "err", err)
				break
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-n.bootstrapCh:
		case <-tick.C:
		}
	}
}

// bootstrapCandidates returns the alive servers eligible to form a new
// cluster, sorted by name, or a reason not to bootstrap at all.
func bootstrapCandidates(members []Member, expect int) ([]Member, string) {
	var cands []Member
	for _, m := range members {
		if m.Status != StatusAlive {
			continue
		}
		if m.HasRaftState {
			return nil, "server " + m.Name + " already has raft state; waiting for its leader to add this server"
		}
		if m.BootstrapExpect == 0 {
			continue // a server that joins an existing cluster
		}
		if m.BootstrapExpect != expect {
			return nil, "server " + m.Name + " has a different bootstrap-expect; all bootstrapping servers must use the same value"
		}
		if m.RaftAddr == "" {
			continue
		}
		cands = append(cands, m)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].Name < cands[j].Name })
	return cands, ""
}
