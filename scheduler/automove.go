package scheduler

import (
	"fmt"
	"strings"
	"time"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Automatic moves (docs/MIGRATION.md):
//
//   - scheduled maintenance (an unavailability in the agent's offers, or an
//     inverse offer): the agent still runs tasks and accepts launches until
//     its window, so the instance is migrated with a live agent: the copy
//     runs on the old berth, the restore on a new berth elsewhere. Inverse
//     offers are accepted once no berth of ours is left on the agent.
//   - DRAIN_AGENT: Mesos kills the tasks at once and the agent accepts no
//     launch any more, so its berth cannot be copied. An app with
//     backup.replaceFromBackup is restored from its latest backup onto a new
//     berth (losing the writes since); any other instance waits for the
//     agent to be reactivated (its berth is intact) or marked gone, and
//     says so.
//   - an agent unreachable longer than the app's enabled unreachableStrategy
//     inactiveAfterSeconds, with backup.replaceFromBackup: replaced from the
//     latest backup (the old berth is destroyed if the agent returns).

// autoMoveRetry is how long after a failed automatic move the next starts.
const autoMoveRetry = 10 * time.Minute

// moveEnded is about when a failed move ended: an abandoned one at its
// healthy_by deadline, any other soon after it started.
func moveEnded(m *v1.Move) time.Time {
	t := m.GetCreatedAt().AsTime()
	if hb := m.GetHealthyBy(); hb != nil && hb.AsTime().After(t) {
		t = hb.AsTime()
	}
	return t
}

// tickAutoMoves starts the moves that agents' states call for.
func (p *planner) tickAutoMoves() {
	for id, i := range p.instances() {
		a := p.st.Apps[i.GetAppId()]
		if a == nil || goalOf(i) != v1.Goal_GOAL_RUNNING || !i.GetResident() || p.activeOp(id) != nil {
			continue
		}
		if m := i.GetMove(); m != nil && m.GetStep() != stepDone &&
			(m.GetStep() != stepFailed || p.now.Sub(moveEnded(m)) < autoMoveRetry) {
			continue
		}
		notice := i.GetAgentNotice()
		switch {
		case strings.HasPrefix(notice, noticeMaintenance) && hasBerth(i) && resState(i) == v1.ReservationState_RESERVATION_STATE_RESERVED:
			p.autoMigrate(i, a)
		case strings.HasPrefix(notice, noticeDraining) && hasBerth(i):
			if p.replaceFromBackup(p.edit(id), a, "agent draining") {
				p.changed[id] = true
			}
		case strings.HasPrefix(notice, noticeUnreachable) && i.GetTask().GetState() == stUnreachable:
			en := a.GetUnreachableStrategy().GetEnabled()
			since := i.GetTask().GetUpdatedAt()
			if en == nil || since == nil || p.now.Sub(since.AsTime()) < time.Duration(en.GetInactiveAfterSeconds())*time.Second {
				continue
			}
			if p.replaceFromBackup(p.edit(id), a, fmt.Sprintf("agent unreachable for more than %ds", en.GetInactiveAfterSeconds())) {
				p.changed[id] = true
			}
		}
	}
}

// autoMigrate starts the migration of an instance off an agent scheduled
// for maintenance, through the app's backup target or the server's
// migration target.
func (p *planner) autoMigrate(i *v1.Instance, a *v1.App) {
	why := ""
	if a.GetBackup().GetTarget() == "" && p.cfg.MigrationTarget == "" {
		why = "the app has no backup target and the server no --migration-target"
	} else {
		// A migration stops the task first: with nowhere to go, the
		// instance would stay down until the window.
		why = p.noMigrationPlace(i, a)
	}
	if why != "" {
		if !p.st.Mem.unmovable[i.GetId()] {
			p.st.Mem.unmovable[i.GetId()] = true
			p.event(&v1.Event{Type: "instance_move_event", AppId: a.GetId(), InstanceId: i.GetId(), AgentId: i.GetReservation().GetAgentId(),
				Message: "not migrating off " + i.GetAgentNotice() + ": " + why})
		}
		return
	}
	delete(p.st.Mem.unmovable, i.GetId())
	b := appmodel.NewMigration(a, i, p.cfg.NewID(), p.cfg.MigrationTarget, p.now)
	p.putBackupRecord(b)
	p.event(&v1.Event{Type: "instance_move_event", AppId: a.GetId(), InstanceId: i.GetId(), AgentId: b.GetFromAgent(),
		Message: "migrating off " + i.GetAgentNotice()})
}

// berthsOn is true when an instance of ours has a berth (current, or the
// previous one of a move in progress) on the agent.
func (p *planner) berthsOn(agentID string) bool {
	for _, i := range p.instances() {
		if hasBerth(i) && i.GetReservation().GetAgentId() == agentID {
			return true
		}
		if prev := i.GetMove().GetPrevious(); prev != nil && prev.GetAgentId() == agentID {
			return true
		}
		if taskLive(i.GetTask()) && i.GetTask().GetAgentId() == agentID {
			return true
		}
	}
	return false
}

// noMigrationPlace says why an instance cannot be migrated off its agent
// now, or "" when another agent can take it: one the master's last poll
// reports active (not drained, deactivated or scheduled for maintenance),
// that has made an offer since this leader started, and that meets the
// app's constraints beside the app's other instances. Resources are not
// checked: the move waits for an offer that fits, as a launch does.
func (p *planner) noMigrationPlace(i *v1.Instance, a *v1.App) string {
	states := p.st.Mem.agentStates
	if states == nil {
		return "the agents' states are not known yet"
	}
	cs, err := appmodel.Placements(a)
	if err != nil {
		return err.Error()
	}
	placed := p.placedValues(a, cs, &offerRound{values: map[string]map[string]*placedValues{}})
	from := i.GetReservation().GetAgentId()
	for id, st := range states {
		if id == from || st.Drain != "" || st.Deactivated || st.Maintenance != nil {
			continue
		}
		ai, ok := p.st.Mem.agents[id]
		if !ok {
			continue
		}
		if len(cs) == 0 || constraintsMet(cs, ai, placed) {
			return ""
		}
	}
	return "no other active agent fits the app's constraints"
}
