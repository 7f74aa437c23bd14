package scheduler

import (
	"fmt"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Agents that go away: what the scheduler learns about an agent from
// Mesos (a drain's kills, maintenance unavailability in offers, an agent
// marked gone) is shown on the instances whose berth is there
// (Instance.agent_notice, in task views), so that an operator sees why an
// instance is down or at risk. Data migration off a draining agent builds
// on this later; today a drained instance waits for its agent (a drain
// never destroys data: invariant 7).

// Notices, the prefixes of Instance.agent_notice.
const (
	noticeDraining    = "agent draining"
	noticeMaintenance = "agent scheduled for maintenance"
	noticeGone        = "agent gone"
	noticeUnreachable = "agent unreachable"
)

// setNotice records an agent notice on an instance when it changes.
func (p *planner) setNotice(id, notice string) {
	i := p.inst(id)
	if i == nil || i.GetAgentNotice() == notice {
		return
	}
	e := p.edit(id)
	if e == nil {
		e = i // created in this decision
	}
	e.AgentNotice = notice
	p.changed[id] = true
	if notice != "" {
		p.event(&v1.Event{Type: "instance_changed_event", AppId: e.GetAppId(), InstanceId: id,
			AgentId: e.GetReservation().GetAgentId(), Host: e.GetReservation().GetHostname(), Message: notice})
	}
}

// instanceAgent is the agent an instance depends on: its berth's, else its
// live task's.
func instanceAgent(i *v1.Instance) string {
	if hasBerth(i) {
		return i.GetReservation().GetAgentId()
	}
	if taskLive(i.GetTask()) {
		return i.GetTask().GetAgentId()
	}
	return ""
}

// noteOfferedAgents updates the notices of instances on the agents that
// made offers: an offer carrying an unavailability means scheduled
// maintenance; an offer without one means the agent is up and active (a
// draining or deactivated agent makes no offers), so an older notice ends.
func (p *planner) noteOfferedAgents(offers []mesos.Offer) {
	notices := map[string]string{}
	for idx := range offers {
		o := &offers[idx]
		notices[o.AgentID.Value] = maintenanceNotice(o.Unavailability)
	}
	for id, i := range p.instances() {
		if n, ok := notices[instanceAgent(i)]; ok {
			p.setNotice(id, n)
		}
	}
}

// maintenanceNotice describes an offer's unavailability ("" for none).
func maintenanceNotice(u *mesos.Unavailability) string {
	if u == nil {
		return ""
	}
	start := time.Unix(0, u.Start.Nanoseconds).UTC().Format(time.RFC3339)
	if d := u.GetDuration(); d != nil {
		return fmt.Sprintf("%s from %s for %s", noticeMaintenance, start, time.Duration(d.Nanoseconds))
	}
	return fmt.Sprintf("%s from %s (no end)", noticeMaintenance, start)
}

// noteStatusAgent records what a task status says about its agent: a
// drain killed it (REASON_AGENT_DRAINING), or the agent was marked gone.
func (p *planner) noteStatusAgent(e *v1.Instance, s mesos.TaskStatus) {
	agentID := s.GetAgentID().GetValue()
	if agentID == "" {
		agentID = e.GetTask().GetAgentId()
	}
	if states := p.st.Mem.agentStates; states != nil {
		// Until the next poll, an agent that lost its task this way is no
		// place to migrate to.
		switch {
		case s.GetState() == mesos.TASK_UNREACHABLE, s.GetState() == mesos.TASK_GONE_BY_OPERATOR:
			delete(states, agentID)
		case s.GetReason() == mesos.REASON_AGENT_DRAINING:
			if st, ok := states[agentID]; ok {
				st.Drain, st.Deactivated = "DRAINING", true
				states[agentID] = st
			}
		}
	}
	switch {
	case s.GetState() == mesos.TASK_UNREACHABLE:
		p.setNotice(e.GetId(), fmt.Sprintf("%s: agent %s is unreachable; the instance waits for it (its data lives there), or for the operator to mark it gone or wipe the instance", noticeUnreachable, agentID))
	case s.GetState() == mesos.TASK_RUNNING && strings.HasPrefix(e.GetAgentNotice(), noticeUnreachable):
		p.setNotice(e.GetId(), "")
	case s.GetState() == mesos.TASK_GONE_BY_OPERATOR:
		p.setNotice(e.GetId(), fmt.Sprintf("%s: agent %s was marked gone by the operator and its berth with it", noticeGone, agentID))
	case s.GetReason() == mesos.REASON_AGENT_DRAINING:
		p.setNotice(e.GetId(), p.drainNotice(e, agentID, "draining"))
	}
}

// drainNotice says what an instance on a draining (or drained) agent does,
// and why: the same words from the task's kill and from the master's poll.
func (p *planner) drainNotice(i *v1.Instance, agentID, state string) string {
	head := fmt.Sprintf("%s: agent %s is %s; its berth cannot be copied (a draining agent accepts no launch)", noticeDraining, agentID, state)
	a := p.st.Apps[i.GetAppId()]
	switch {
	case !a.GetBackup().GetReplaceFromBackup():
		return head + ": the instance waits on its intact berth for the agent to be reactivated or marked gone " +
			"(the app does not opt in to backup.replaceFromBackup, which would restore its latest backup on another agent)"
	case p.latestBackup(i.GetId()) == nil:
		return head + ": the app opts in to backup.replaceFromBackup but the instance has no succeeded backup; " +
			"it waits for the agent to be reactivated or marked gone"
	}
	return head + ": the instance is replaced from its latest backup on another agent (backup.replaceFromBackup; the writes since are lost)"
}

// drainKilled is true for a status of a task killed by its agent's drain:
// not a failure of the task, and no reason for a launch delay.
func drainKilled(s mesos.TaskStatus) bool {
	return s.GetReason() == mesos.REASON_AGENT_DRAINING
}

// InverseOffers carries one INVERSE_OFFERS event: the master asks for
// agents whose machines are scheduled for maintenance to be vacated.
type InverseOffers struct{ Offers []mesos.InverseOffer }

func (InverseOffers) isInput() {}

// inverseRefuse is how long a declined inverse offer stays declined when
// no berth on the agent can be migrated off it: said rarely rather than
// every few seconds.
const inverseRefuse = 10 * time.Minute

// inverseRefuseMoving is how long a declined inverse offer stays declined
// while a berth on the agent may still be migrated off it.
const inverseRefuseMoving = 15 * time.Second

// berthsMayLeave is true when a berth on the agent belongs to an instance
// that has not been found unable to migrate (automove.go).
func (p *planner) berthsMayLeave(agentID string) bool {
	for id, i := range p.instances() {
		if (instanceAgent(i) == agentID || i.GetMove().GetPrevious().GetAgentId() == agentID) && !p.st.Mem.unmovable[id] {
			return true
		}
	}
	return false
}

// onInverseOffers marks the instances on the agents asked for, accepts
// for agents no berth of ours is on any more, and declines for the others
// (the answer is advisory: Mesos records it in the maintenance status):
// briefly while their berths are being (or may be) migrated off
// (automove.go), for long when none can be.
func (p *planner) onInverseOffers(ios []mesos.InverseOffer) {
	byAgent := map[string]string{}
	ids := make([]mesos.OfferID, 0, len(ios))
	var vacated, leaving []mesos.OfferID
	for _, io := range ios {
		agentID := io.GetAgentID().GetValue()
		byAgent[agentID] = maintenanceNotice(&io.Unavailability)
		switch {
		case !p.berthsOn(agentID):
			vacated = append(vacated, io.OfferID) // every berth migrated off
		case p.berthsMayLeave(agentID):
			leaving = append(leaving, io.OfferID)
		default:
			ids = append(ids, io.OfferID)
		}
	}
	if len(leaving) > 0 {
		// Asked again soon: the accept follows shortly after the last berth left.
		p.call(calls.DeclineInverseOffers(leaving...).With(calls.RefuseSeconds(inverseRefuseMoving)))
	}
	if len(vacated) > 0 {
		p.call(calls.AcceptInverseOffers(vacated...))
	}
	for id, i := range p.instances() {
		n, ok := byAgent[instanceAgent(i)]
		if !ok {
			continue
		}
		if cur := i.GetAgentNotice(); cur == "" || strings.HasPrefix(cur, noticeMaintenance) {
			p.setNotice(id, n)
		}
	}
	if len(ids) > 0 {
		p.call(calls.DeclineInverseOffers(ids...).With(calls.RefuseSeconds(inverseRefuse)))
	}
}
