package scheduler

import (
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// A drain's TASK_KILLED (REASON_AGENT_DRAINING) is no failure: no launch
// delay, no lastTaskFailure, no relaunch anywhere (the draining agent makes
// no offers, and the berth stays there), and the instance says why it
// waits. When the agent is reactivated, its offers end the notice and the
// instance relaunches on its berth.
func TestDrainKillWaitsWithoutBackoffAndSaysWhy(t *testing.T) {
	h, inst := twoAgentsOneBerth(t)
	a := h.master.agents[inst.Reservation.AgentId]
	h.master.drain(a.id, false)
	h.deliver()
	got := h.only("/pg")
	if got.Task.State != "TASK_KILLED" || got.LaunchNotBefore != nil || got.ConsecutiveFailures != 0 || got.LastFailure != nil {
		t.Fatalf("drain kill counted as a failure: %v", got)
	}
	if !strings.HasPrefix(got.AgentNotice, noticeDraining) {
		t.Fatalf("notice %q", got.AgentNotice)
	}
	launches := len(masterLogHas(h.master, "LAUNCH"))
	for k := 0; k < 5; k++ {
		h.advance(time.Minute)
		h.settle()
	}
	if n := len(masterLogHas(h.master, "LAUNCH")); n != launches {
		t.Fatalf("relaunched while the agent drains: %v", h.master.log)
	}
	if d := masterLogHas(h.master, "DESTROY"); len(d) > 0 {
		t.Fatalf("a drain destroyed data: %v", d)
	}
	// Reactivated: offers come again, without unavailability.
	a.draining = false
	h.advance(time.Minute)
	h.settle()
	got = h.only("/pg")
	if got.Task.State != stRunning || got.Reservation.AgentId != a.id || got.AgentNotice != "" {
		t.Fatalf("after reactivation: %v", got)
	}
}

// A drain with mark_gone ends in TASK_GONE_BY_OPERATOR: the berth is lost,
// the instance gets a new, empty berth elsewhere with the next epoch, and
// says what happened until then.
func TestDrainMarkGoneMakesNewBerthWithNextEpoch(t *testing.T) {
	h, inst := twoAgentsOneBerth(t)
	a := h.master.agents[inst.Reservation.AgentId]
	h.master.drain(a.id, true)
	h.deliver()
	if got := h.only("/pg"); !strings.HasPrefix(got.AgentNotice, noticeGone) || got.Reservation.GetEpoch() != 1 || hasBerth(got) {
		t.Fatalf("after mark-gone drain: %v", got)
	}
	h.settle()
	got := h.only("/pg")
	if got.Reservation.AgentId == a.id || got.Reservation.Epoch != 2 || got.Task.State != stRunning || got.AgentNotice != "" {
		t.Fatalf("no new berth: %v", got)
	}
}

// Scheduled maintenance: offers carrying an unavailability mark the
// instances there, and no new berth is made on such an agent.
func TestMaintenanceUnavailabilityMarksInstancesAndAvoidsNewBerths(t *testing.T) {
	h := newHarness(t)
	a1 := h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	start := time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)
	a1.unavailability = &mesos.Unavailability{Start: mesos.TimeInfo{Nanoseconds: start.UnixNano()}, Duration: &mesos.DurationInfo{Nanoseconds: int64(time.Hour)}}
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.settle()
	if got := h.only("/pg"); hasBerth(got) {
		t.Fatalf("a berth was made on a machine going into maintenance: %v", got)
	}
	h.master.addAgent("A2", "host2", 4, 1024, 1000, 31000, 31010, nil)
	h.settle()
	got := h.only("/pg")
	if got.Reservation.AgentId != "A2" || got.AgentNotice != "" {
		t.Fatalf("not placed on A2: %v", got)
	}
	// Now A2 gets scheduled too: its instance is marked.
	h.master.agents["A2"].unavailability = a1.unavailability
	h.advance(time.Minute)
	h.settle()
	if got := h.only("/pg"); got.AgentNotice != "agent scheduled for maintenance from 2025-01-02T00:00:00Z for 1h0m0s" {
		t.Fatalf("notice %q", got.AgentNotice)
	}
	// Unscheduled: the notice ends.
	h.master.agents["A2"].unavailability = nil
	h.advance(time.Minute)
	h.settle()
	if got := h.only("/pg"); got.AgentNotice != "" {
		t.Fatalf("notice %q after the maintenance was unscheduled", got.AgentNotice)
	}
}

// The master's agent states (polled): a stopped instance on a draining
// agent is marked (no task update would tell), so is one on a machine with
// scheduled maintenance or a deactivated agent; the notice ends with the
// state; a notice from a task update (unreachable) is left alone.
func TestAgentStatesMarkInstances(t *testing.T) {
	h, inst := twoAgentsOneBerth(t)
	agent := inst.Reservation.AgentId
	h.store.putApp(withInstances(residentApp("/pg", "v1", 1), "v2", 0), "")
	h.settle()
	if got := h.only("/pg"); goalOf(got) != v1.Goal_GOAL_STOPPED || !hasBerth(got) {
		t.Fatalf("not stopped on its berth: %v", got)
	}
	notice := func() string { return h.only("/pg").GetAgentNotice() }
	h.decide(AgentStates{Agents: map[string]AgentState{agent: {Drain: "DRAINING", Deactivated: true}}})
	if !strings.HasPrefix(notice(), noticeDraining) || !strings.Contains(notice(), "draining") {
		t.Fatalf("draining: %q", notice())
	}
	h.decide(AgentStates{Agents: map[string]AgentState{agent: {Drain: "DRAINED", Deactivated: true}}})
	if !strings.Contains(notice(), "drained") {
		t.Fatalf("drained: %q", notice())
	}
	u := &mesos.Unavailability{Start: mesos.TimeInfo{Nanoseconds: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}}
	h.decide(AgentStates{Agents: map[string]AgentState{agent: {Maintenance: u}}})
	if notice() != "agent scheduled for maintenance from 2030-01-01T00:00:00Z (no end)" {
		t.Fatalf("maintenance: %q", notice())
	}
	h.decide(AgentStates{Agents: map[string]AgentState{agent: {Deactivated: true}}})
	if !strings.HasPrefix(notice(), noticeDeactivated) {
		t.Fatalf("deactivated: %q", notice())
	}
	h.decide(AgentStates{Agents: map[string]AgentState{agent: {}}})
	if notice() != "" {
		t.Fatalf("after the agent is back to normal: %q", notice())
	}
	// Another agent's state changes nothing here.
	h.decide(AgentStates{Agents: map[string]AgentState{"other": {Drain: "DRAINING"}}})
	if notice() != "" {
		t.Fatalf("another agent's drain: %q", notice())
	}
}

// Inverse offers mark the instances on the agent with its maintenance and
// are declined (Berth keeps the data there until it can migrate it).
func TestInverseOffersMarkAndDecline(t *testing.T) {
	h, inst := twoAgentsOneBerth(t)
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	io := mesos.InverseOffer{OfferID: mesos.OfferID{Value: "io-1"}, FrameworkID: mesos.FrameworkID{Value: "fw-1"},
		AgentID: &mesos.AgentID{Value: inst.Reservation.AgentId}, Unavailability: mesos.Unavailability{Start: mesos.TimeInfo{Nanoseconds: start.UnixNano()}}}
	d := h.decide(InverseOffers{Offers: []mesos.InverseOffer{io}})
	if got := h.only("/pg").GetAgentNotice(); got != "agent scheduled for maintenance from 2030-01-01T00:00:00Z (no end)" {
		t.Fatalf("notice %q", got)
	}
	if len(d.Calls) != 1 || d.Calls[0].GetDeclineInverseOffers() == nil || d.Calls[0].GetDeclineInverseOffers().InverseOfferIDs[0].Value != "io-1" {
		t.Fatalf("calls %v", d.Calls)
	}
}
