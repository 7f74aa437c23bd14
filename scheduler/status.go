package scheduler

import (
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// onStatus records a task status (commit), then acknowledges it. Statuses
// of tasks Berth does not know (or of an older incarnation) that are not
// terminal are killed.
func (p *planner) onStatus(s mesos.TaskStatus) {
	taskID := s.TaskID.Value
	state := s.GetState().String()
	agentID := s.GetAgentID().GetValue()
	unbound := false // the acknowledgement depends on nothing in the plan
	defer func() {
		if len(s.UUID) == 0 || agentID == "" {
			return
		}
		ack := calls.Acknowledge(agentID, taskID, s.UUID)
		if unbound {
			p.early = append(p.early, ack)
		} else {
			p.call(ack)
		}
	}()
	p.reconAnswered(taskID)
	if op := p.opByTask(taskID); op != nil {
		p.copyStatus(op, s)
		return
	}
	i := p.instByTask(taskID)
	if i == nil {
		if isLiveState(state) {
			// Unknown to the committed state: never let it hold resources or a
			// volume that a known instance may need.
			if rec, ok := p.st.Mem.kills[taskID]; !ok || p.now.Sub(rec.at) >= p.cfg.KillRetryInterval {
				p.st.Mem.kills[taskID] = killRecord{at: p.now, reason: killUnknown, agentID: agentID, attempts: rec.attempts + 1}
				p.call(calls.Kill(taskID, agentID))
			} else {
				// A KILL went out recently (maybe while the task was still known):
				// from now on it is retried as a kill of an unknown task.
				rec.reason = killUnknown
				if rec.agentID == "" {
					rec.agentID = agentID
				}
				p.st.Mem.kills[taskID] = rec
			}
		} else {
			delete(p.st.Mem.kills, taskID)
		}
		return
	}
	old := i.GetTask()
	if state == stRunning && old.GetState() != stRunning && old.GetStagedAt() != nil {
		// Timed here, where the instance is at hand: a lookup per status
		// before the decision cost a new leader a tenth of a second per
		// 100,000 reconciliation answers.
		p.placed = append(p.placed, p.now.Sub(old.GetStagedAt().AsTime()))
	}
	if state == stStaging && s.GetSource() == mesos.SOURCE_MASTER && p.stagingTimedOut(old) {
		// The master says the task is still staging past the timeout: a
		// launch stuck on its agent. (Without the master's word a task is
		// never killed for its age: under a status backlog its RUNNING may
		// be queued behind thousands of other updates.)
		p.kill(old, killStaging, 0)
	} else {
		delete(p.st.Mem.stagingAsked, taskID)
	}
	a := p.st.Apps[i.GetAppId()]
	prevState := old.GetState()
	healthChanged, mesosChanged := false, false
	var newHealthy, newMesos *bool
	if s.Healthy != nil && state == stRunning {
		h := *s.Healthy
		newMesos = &h
		mesosChanged = old.MesosHealthy == nil || *old.MesosHealthy != h
		newHealthy = combinedHealth(a, newMesos, old.CheckedHealthy)
		healthChanged = !sameHealth(old.Healthy, newHealthy)
	}
	// The launch used the reserved resources and volume, so a status from
	// the agent or executor, or a master report that the task runs, proves
	// the RESERVE and CREATE took effect.
	confirm := resState(i) == v1.ReservationState_RESERVATION_STATE_PENDING &&
		(agentID == "" || agentID == i.GetReservation().GetAgentId()) &&
		(s.GetSource() != mesos.SOURCE_MASTER || state == stStarting || state == stRunning || state == stKilling)
	if state == stStarting && prevState == stStaging {
		// TASK_STARTING of a task whose launch is committed is soft state:
		// it is acknowledged at once, without a commit of its own, and the
		// instance keeps TASK_STAGING in the store until the next status
		// (TASK_RUNNING, or how it ended) is recorded. The Mesos contract
		// is that a scheduler acknowledges an update once it has handled
		// it durably; here there is nothing durable to handle:
		//   - nothing decides on STARTING versus STAGING except the staging
		//     timeout (tickInstance), which reads Mem.starting too; health
		//     and readiness checks start at TASK_RUNNING, and the API shows
		//     both states alike ("staging");
		//   - the reservation this status confirms (PENDING → RESERVED) is
		//     remembered and committed with the task's next recorded status;
		//     until then the task is live, so the pending reservation's
		//     timeout does not apply;
		//   - a new leader (or this one after a failed commit) reconciles,
		//     and the master answers with the task's latest state, so a
		//     STARTING it never recorded comes back if it still matters.
		// Without this, each launch costs two commits in a row before its
		// RUNNING can be recorded: Mesos agents (and mesos-local) forward a
		// task's next update only once the previous one is acknowledged.
		p.st.Mem.starting[taskID] = p.st.Mem.starting[taskID] || confirm
		unbound = true
		p.event(&v1.Event{
			Type: "status_update_event", AppId: i.GetAppId(), InstanceId: i.GetId(), TaskId: taskID,
			TaskState: state, Message: s.GetMessage(), AgentId: old.GetAgentId(), Host: old.GetHostname(),
		})
		return
	}
	if confirmed, ok := p.st.Mem.starting[taskID]; ok {
		delete(p.st.Mem.starting, taskID)
		confirm = confirm || (confirmed && resState(i) == v1.ReservationState_RESERVATION_STATE_PENDING)
	}
	cid := containerIDOf(s) // recorded once known (a reconciliation reports it too)
	if prevState == state && !healthChanged && !mesosChanged && !confirm && (cid == "" || cid == old.GetContainerId()) {
		return // nothing new to record: just acknowledge
	}

	e := p.edit(i.GetId())
	t := e.Task
	t.State = state
	t.Message = s.GetMessage()
	if s.Reason != nil {
		t.Reason = s.Reason.String()
	} else {
		t.Reason = ""
	}
	if agentID != "" {
		t.AgentId = agentID
	}
	if cid != "" {
		t.ContainerId = cid
	}
	t.UpdatedAt = p.ts()
	if state == stRunning && t.StartedAt == nil {
		t.StartedAt = p.ts()
	}
	if mesosChanged {
		t.MesosHealthy = newMesos
	}
	if healthChanged {
		t.Healthy = newHealthy
		if newHealthy != nil && *newHealthy {
			e.ConsecutiveFailures = 0
		}
	}
	if confirm {
		e.Reservation.State = v1.ReservationState_RESERVATION_STATE_RESERVED
		e.Reservation.PendingUntil = nil
		p.changed[e.GetId()] = true
	}

	if prevState != state {
		p.noteStatusAgent(e, s)
		p.event(&v1.Event{
			Type: "status_update_event", AppId: e.GetAppId(), InstanceId: e.GetId(), TaskId: taskID,
			TaskState: state, Message: s.GetMessage(), AgentId: t.GetAgentId(), Host: t.GetHostname(),
			Healthy: t.Healthy,
		})
	}
	if healthChanged {
		p.event(&v1.Event{
			Type: "health_status_changed_event", AppId: e.GetAppId(), InstanceId: e.GetId(), TaskId: taskID,
			Healthy: newHealthy, AgentId: t.GetAgentId(), Host: t.GetHostname(),
		})
	}

	if isLiveState(state) || (!isLiveState(prevState) && prevState != "") {
		// Still live, or a repeated terminal state: nothing else to decide.
		if !isLiveState(state) {
			delete(p.st.Mem.kills, taskID)
		}
		return
	}
	p.taskEnded(e, a, s)
}

// instByTask returns the current (possibly edited) instance whose current
// task is taskID, nil if none: an earlier status of the same decision may
// have edited or forgotten it.
func (p *planner) instByTask(taskID string) *v1.Instance {
	i := p.st.instanceByTask(taskID)
	if i == nil {
		return nil
	}
	cur := p.inst(i.GetId())
	if cur == nil || cur.GetTask().GetId() != taskID || leftBehind(cur) {
		return nil
	}
	return cur
}

// taskEnded handles the transition of an instance's current task to a
// terminal state: backoff accounting, berth abandonment on
// TASK_GONE_BY_OPERATOR, and forgetting ended stateless or decommissioned
// instances.
func (p *planner) taskEnded(e *v1.Instance, a *v1.App, s mesos.TaskStatus) {
	t := e.Task
	state := t.GetState()
	rec, killed := p.st.Mem.kills[t.GetId()]
	delete(p.st.Mem.kills, t.GetId())
	t.Healthy = nil

	if state == stGoneByOperator && e.GetResident() {
		p.berthLost(e, a)
	}
	switch goalOf(e) {
	case v1.Goal_GOAL_DECOMMISSIONED:
		if !hasBerth(e) {
			p.forget(e.GetId()) // nothing left on any agent
		}
		return // a berth is destroyed when next offered
	case v1.Goal_GOAL_STOPPED:
		if !hasBerth(e) && !e.GetResident() {
			p.forget(e.GetId())
		}
		return
	}
	if a == nil {
		return // the tick decommissions instances of removed apps
	}
	if t.StartedAt != nil && p.now.Sub(t.StartedAt.AsTime()) >= p.cfg.BackoffResetAfter {
		e.ConsecutiveFailures = 0 // a long run resets the backoff
	}
	requested := t.KillRequestedAt != nil || killed && (rec.reason == killUpgrade || rec.reason == killGoal || rec.reason == killOperator || rec.reason == killBackup)
	if requested {
		e.LaunchNotBefore = nil
		return
	}
	// A crash, failed health checks, or a launch that failed.
	healthKill := killed && rec.reason == killHealth
	if state != stFinished && !drainKilled(s) {
		p.recordFailure(e, a, s, healthKill)
	}
	// Marathon adds launch delay only when a task ends Dropped, Error,
	// Failed, Gone or Finished, never when it was killed
	// (core/task/update/impl/steps/NotifyRateLimiterStepImpl.scala,
	// limitWorthy): a task killed for failing its health checks, or killed
	// by anyone else, relaunches without a new delay.
	if healthKill || state == stKilled || drainKilled(s) {
		return // a drain's kill (even one that loses the berth) is planned
	}
	e.ConsecutiveFailures++
	delay := appmodel.BackoffDelay(a, e.ConsecutiveFailures)
	e.LaunchNotBefore = timestamppb.New(p.now.Add(time.Duration(delay * float64(time.Second))))
}

// resetOutdatedBackoff clears the launch backoff of an app's instances
// that wait to relaunch after a task of an older configuration ended: a
// new version starts without delay. Marathon keys its launch delay by the
// run spec's configuration version (core/launchqueue/impl/RateLimiter.scala,
// delays by configRef), so deploying a new version resets it; a pure scale
// keeps it.
func (p *planner) resetOutdatedBackoff(a *v1.App, ids []string) {
	for id, i := range p.each(ids) {
		if goalOf(i) != v1.Goal_GOAL_RUNNING || taskLive(i.GetTask()) ||
			(i.GetLaunchNotBefore() == nil && i.GetConsecutiveFailures() == 0) || !p.outdated(i, a) {
			continue
		}
		e := p.edit(id)
		e.LaunchNotBefore, e.ConsecutiveFailures = nil, 0
		p.changed[id] = true
	}
}

// onHealth records the result of leader-run health checks and kills a task
// that failed maxConsecutiveFailures checks; its goal stays Running so it is
// relaunched on the same berth.
func (p *planner) onHealth(h HealthResult) {
	i := p.st.instanceByTask(h.TaskID)
	if i == nil || i.GetTask().GetState() != stRunning {
		return
	}
	t := i.GetTask()
	checked := h.Healthy
	if t.CheckedHealthy == nil || *t.CheckedHealthy != checked {
		e := p.edit(i.GetId())
		e.Task.CheckedHealthy = &checked
		e.Task.UpdatedAt = p.ts()
		agg := combinedHealth(p.st.Apps[i.GetAppId()], t.MesosHealthy, &checked)
		if !sameHealth(t.Healthy, agg) {
			e.Task.Healthy = agg
			if agg != nil && *agg {
				e.ConsecutiveFailures = 0
			}
			p.event(&v1.Event{
				Type: "health_status_changed_event", AppId: i.GetAppId(), InstanceId: i.GetId(), TaskId: h.TaskID,
				Healthy: agg, Message: h.Message, AgentId: t.GetAgentId(), Host: t.GetHostname(),
			})
		}
	}
	if h.Kill {
		if _, sent := p.st.Mem.kills[h.TaskID]; sent {
			return
		}
		p.event(&v1.Event{
			Type: "unhealthy_instance_kill_event", AppId: i.GetAppId(), InstanceId: i.GetId(), TaskId: h.TaskID,
			Message: h.Message, AgentId: t.GetAgentId(), Host: t.GetHostname(),
		})
		p.kill(t, killHealth, 0)
	}
}

// combinedHealth is a task's health from its parts: the Mesos check's
// (mesos) and the leader's checks' (checked), of those the app has (an
// app Berth no longer knows: whichever part is known). Unhealthy as soon
// as one part is; healthy once every part is; unknown (nil) otherwise.
func combinedHealth(a *v1.App, mesos, checked *bool) *bool {
	hasMesos, hasChecked := a == nil, a == nil
	for _, hc := range a.GetHealthChecks() {
		if appmodel.IsMarathonCheck(hc) {
			hasChecked = true
		} else {
			hasMesos = true
		}
	}
	var parts []*bool
	if hasMesos && (a != nil || mesos != nil) {
		parts = append(parts, mesos)
	}
	if hasChecked && (a != nil || checked != nil) {
		parts = append(parts, checked)
	}
	known := len(parts) > 0
	for _, p := range parts {
		if p != nil && !*p {
			f := false
			return &f
		}
		if p == nil {
			known = false
		}
	}
	if !known {
		return nil
	}
	t := true
	return &t
}

// sameHealth compares two optional health values.
func sameHealth(x, y *bool) bool {
	if x == nil || y == nil {
		return x == nil && y == nil
	}
	return *x == *y
}
