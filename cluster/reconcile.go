package cluster

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// The leader keeps the Raft configuration in line with gossip membership,
// like Consul's serf reconciliation plus autopilot's dead-server cleanup:
//
//   - an alive server that is not a voter is added (as a voter when the
//     healthy voters alone still form a quorum of the enlarged
//     configuration, otherwise as a non-voter, promoted later);
//   - a server that left gracefully is removed;
//   - a server failed (or absent from gossip) for DeadServerCleanup is
//     removed;
//
// and no removal ever leaves the remaining voters without a healthy quorum.
// The decisions are a pure function (planReconcile) so they can be tested
// without Raft or gossip.

type actionKind int

const (
	actionAddVoter actionKind = iota + 1
	actionAddNonvoter
	actionRemove
)

func (k actionKind) String() string {
	switch k {
	case actionAddVoter:
		return "add-voter"
	case actionAddNonvoter:
		return "add-nonvoter"
	case actionRemove:
		return "remove"
	}
	return "unknown"
}

type reconcileAction struct {
	kind   actionKind
	id     string
	addr   string
	reason string
}

func (a reconcileAction) String() string {
	return fmt.Sprintf("%s %s (%s): %s", a.kind, a.id, a.addr, a.reason)
}

type reconcileInput struct {
	self    string
	servers []raft.Server
	members []Member
	// missingSince is when each configured server was first noticed absent
	// from gossip. planReconcile updates it.
	missingSince map[string]time.Time
	now          time.Time
	// deadCleanup < 0 disables removal of failed servers.
	deadCleanup time.Duration
	// minQuorum is the fewest voters a removal may leave (Config.MinQuorum).
	minQuorum int
	// leaderIndex is the leader's last applied index; a non-voter that
	// reports an applied index within promoteMaxLag of it is promoted.
	leaderIndex uint64
}

// promoteMaxLag is how far behind the leader a non-voter may be when it is
// promoted to voter: close enough to acknowledge new entries at once.
const promoteMaxLag = 256

// quorum is the majority of n voters.
func quorum(n int) int { return n/2 + 1 }

// planReconcile returns the configuration changes to make, in order.
func planReconcile(in reconcileInput) []reconcileAction {
	members := make(map[string]Member, len(in.members))
	for _, m := range in.members {
		members[m.Name] = m
	}
	// Working copy of the configuration, updated as actions are planned.
	servers := make(map[string]raft.Server, len(in.servers))
	for _, s := range in.servers {
		servers[string(s.ID)] = s
	}
	healthy := func(id string) bool {
		if id == in.self {
			return true
		}
		m, ok := members[id]
		return ok && m.Status == StatusAlive
	}
	voterCounts := func() (voters, healthyVoters int) {
		for id, s := range servers {
			if s.Suffrage == raft.Voter {
				voters++
				if healthy(id) {
					healthyVoters++
				}
			}
		}
		return
	}
	// safeToRemove: the voters left after removing id keep a healthy quorum
	// and are at least minQuorum.
	safeToRemove := func(id string) bool {
		s := servers[id]
		if s.Suffrage != raft.Voter {
			return true
		}
		voters, healthyVoters := voterCounts()
		remaining := voters - 1
		healthyRemaining := healthyVoters
		if healthy(id) {
			healthyRemaining--
		}
		return remaining >= max(1, in.minQuorum) && healthyRemaining >= quorum(remaining)
	}

	var actions []reconcileAction
	remove := func(id, reason string) {
		actions = append(actions, reconcileAction{kind: actionRemove, id: id, addr: string(servers[id].Address), reason: reason})
		delete(servers, id)
	}

	// Forget missing-since marks of servers that are back or gone.
	for id := range in.missingSince {
		_, inConfig := servers[id]
		_, inGossip := members[id]
		if !inConfig || inGossip {
			delete(in.missingSince, id)
		}
	}

	// 1. Removals, in name order for determinism.
	ids := make([]string, 0, len(servers))
	for id := range servers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if id == in.self {
			continue
		}
		m, known := members[id]
		var reason string
		switch {
		case known && m.Status == StatusLeft:
			reason = "left the cluster"
		case known && m.Status == StatusFailed && in.deadCleanup >= 0 && in.now.Sub(m.StatusSince) >= in.deadCleanup:
			reason = fmt.Sprintf("failed for %s", in.now.Sub(m.StatusSince).Round(time.Millisecond))
		case !known:
			since, ok := in.missingSince[id]
			if !ok {
				in.missingSince[id] = in.now
				since = in.now
			}
			if in.deadCleanup >= 0 && in.now.Sub(since) >= in.deadCleanup {
				reason = fmt.Sprintf("absent from gossip for %s", in.now.Sub(since).Round(time.Millisecond))
			}
		}
		if reason == "" {
			continue
		}
		if !safeToRemove(id) {
			continue
		}
		remove(id, reason)
	}

	// 2. Additions of alive servers, in name order.
	alive := make([]Member, 0, len(in.members))
	for _, m := range in.members {
		if m.Status == StatusAlive && m.Name != in.self && m.RaftAddr != "" {
			alive = append(alive, m)
		}
	}
	sort.Slice(alive, func(i, j int) bool { return alive[i].Name < alive[j].Name })
	for _, m := range alive {
		s, inConfig := servers[m.Name]
		if inConfig && s.Suffrage == raft.Voter && string(s.Address) == m.RaftAddr {
			continue
		}
		// Another configured server on the same address cannot be running
		// (the address belongs to m now): drop it first if that is safe.
		blocked := false
		for _, id := range ids {
			other, ok := servers[id]
			if !ok || id == m.Name || id == in.self || string(other.Address) != m.RaftAddr {
				continue
			}
			if healthy(id) || !safeToRemove(id) {
				blocked = true
				break
			}
			remove(id, fmt.Sprintf("its address %s is now used by %s", m.RaftAddr, m.Name))
		}
		if blocked {
			continue
		}
		voters, healthyVoters := voterCounts()
		isVoter := inConfig && s.Suffrage == raft.Voter
		caughtUp := inConfig && s.Suffrage == raft.Nonvoter && string(s.Address) == m.RaftAddr &&
			m.applied > 0 && m.applied+promoteMaxLag >= in.leaderIndex
		if isVoter || caughtUp || healthyVoters >= quorum(voters+1) {
			reason := "alive in gossip, not in the configuration"
			switch {
			case isVoter:
				reason = fmt.Sprintf("raft address changed from %s", s.Address)
			case caughtUp:
				reason = fmt.Sprintf("promoting: caught up (applied %d, leader %d)", m.applied, in.leaderIndex)
			case inConfig:
				reason = "promoting: the healthy voters keep a quorum"
			}
			actions = append(actions, reconcileAction{kind: actionAddVoter, id: m.Name, addr: m.RaftAddr, reason: reason})
			servers[m.Name] = raft.Server{ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.RaftAddr), Suffrage: raft.Voter}
			continue
		}
		if !inConfig || string(s.Address) != m.RaftAddr {
			actions = append(actions, reconcileAction{kind: actionAddNonvoter, id: m.Name, addr: m.RaftAddr,
				reason: "alive in gossip; added as non-voter until the healthy voters keep a quorum with it"})
			servers[m.Name] = raft.Server{ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.RaftAddr), Suffrage: raft.Nonvoter}
		}
	}
	return actions
}

// reconcileLoop runs while this server is leader; ctx ends with leadership.
func (n *Node) reconcileLoop(ctx context.Context) {
	// Make sure the configuration and FSM are current before acting.
	if err := n.Barrier(ctx); err != nil {
		if ctx.Err() == nil {
			n.log.Warn("reconcile: barrier failed", "err", err)
		}
		return
	}
	missing := make(map[string]time.Time)
	ticker := time.NewTicker(n.cfg.ReconcileInterval)
	defer ticker.Stop()
	for {
		n.reconcileOnce(ctx, missing)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-n.reconcileCh:
		}
	}
}

func (n *Node) reconcileOnce(ctx context.Context, missing map[string]time.Time) {
	if !n.IsLeader() {
		return
	}
	if err := n.updateOwnAddress(ctx); err != nil && ctx.Err() == nil {
		n.log.Warn("reconcile: own raft address", "err", err)
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		n.log.Warn("reconcile: read raft configuration", "err", err)
		return
	}
	actions := planReconcile(reconcileInput{
		self:         n.cfg.NodeName,
		servers:      f.Configuration().Servers,
		members:      n.members.snapshot(),
		missingSince: missing,
		now:          time.Now(),
		deadCleanup:  n.cfg.DeadServerCleanup,
		minQuorum:    n.cfg.MinQuorum,
		leaderIndex:  n.raft.AppliedIndex(),
	})
	for _, a := range actions {
		if ctx.Err() != nil {
			return
		}
		var fut raft.IndexFuture
		timeout := 10 * time.Second
		if a.kind == actionAddVoter || a.kind == actionAddNonvoter {
			if err := n.verifyRaftPeer(a.addr); err != nil {
				// Gossip membership only proves the gossip key; a server
				// enters Raft only if its Raft port proves the identity.
				n.log.Warn("reconcile: not adding a server whose raft port does not prove the server identity", "server", a.id, "addr", a.addr, "err", err)
				continue
			}
		}
		switch a.kind {
		case actionAddVoter:
			fut = n.raft.AddVoter(raft.ServerID(a.id), raft.ServerAddress(a.addr), 0, timeout)
		case actionAddNonvoter:
			fut = n.raft.AddNonvoter(raft.ServerID(a.id), raft.ServerAddress(a.addr), 0, timeout)
		case actionRemove:
			fut = n.raft.RemoveServer(raft.ServerID(a.id), 0, timeout)
		}
		if err := waitFuture(ctx, fut); err != nil {
			n.log.Warn("reconcile: configuration change failed", "action", a.kind.String(), "server", a.id, "addr", a.addr, "err", err)
			return
		}
		n.log.Info("reconcile: configuration changed", "action", a.kind.String(), "server", a.id, "addr", a.addr, "reason", a.reason)
	}
}
