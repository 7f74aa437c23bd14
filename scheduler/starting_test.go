package scheduler

import (
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// placeOne places one resident instance and returns it with the statuses
// the master queued for its launch (TASK_STARTING, then TASK_RUNNING).
func placeOne(t *testing.T, h *harness) (*v1.Instance, mesos.TaskStatus, mesos.TaskStatus) {
	t.Helper()
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/db/pg", "v1", 1), "d1")
	h.tick()
	h.offers()
	if len(h.master.pending) != 2 || h.master.pending[0].GetState() != mesos.TASK_STARTING {
		t.Fatalf("statuses after the launch: %v", h.master.pending)
	}
	starting, running := h.master.pending[0], h.master.pending[1]
	h.master.pending = nil
	return h.only("/db/pg"), starting, running
}

// TASK_STARTING of a committed launch is acknowledged at once, without a
// commit: the instance stays TASK_STAGING in the store, the staging
// timeout leaves the task alone, and the reservation it confirmed is
// committed with TASK_RUNNING.
func TestStartingIsAcknowledgedWithoutCommit(t *testing.T) {
	h := newHarness(t)
	inst, starting, running := placeOne(t, h)

	d := h.decide(StatusUpdate{Status: starting})
	if d.Plan != nil || len(d.Calls) != 0 {
		t.Fatalf("TASK_STARTING: plan %v, calls %v; want neither", d.Plan, callTypes(d))
	}
	if len(d.Early) != 1 || d.Early[0].Type != scheduler.Call_ACKNOWLEDGE || string(d.Early[0].Acknowledge.UUID) != string(starting.UUID) {
		t.Fatalf("early calls %v, want the acknowledgement of TASK_STARTING", d.Early)
	}
	if len(d.Events) != 1 || d.Events[0].GetTaskState() != stStarting {
		t.Fatalf("events %v, want one status_update_event TASK_STARTING", d.Events)
	}
	if got := h.store.instance(inst.Id); got.GetTask().GetState() != stStaging ||
		resState(got) != v1.ReservationState_RESERVATION_STATE_PENDING {
		t.Fatalf("stored after TASK_STARTING: task %s, reservation %v", got.GetTask().GetState(), resState(got))
	}

	// Past the staging timeout and the reservation's pending timeout: the
	// task left staging, so it is neither killed nor its berth abandoned.
	h.advance(h.cfg.withDefaults().StagingTimeout + time.Minute)
	if d := h.tick(); len(d.Calls) != 0 {
		t.Fatalf("tick after the staging timeout sent %v for a starting task", callTypes(d))
	}

	d = h.decide(StatusUpdate{Status: running})
	if len(d.Early) != 0 || len(d.Calls) != 1 || d.Calls[0].Type != scheduler.Call_ACKNOWLEDGE {
		t.Fatalf("TASK_RUNNING: early %v, calls %v; want its acknowledgement after the commit", d.Early, callTypes(d))
	}
	got := h.store.instance(inst.Id)
	if got.GetTask().GetState() != stRunning || resState(got) != v1.ReservationState_RESERVATION_STATE_RESERVED {
		t.Fatalf("stored after TASK_RUNNING: task %s, reservation %v", got.GetTask().GetState(), resState(got))
	}
	if len(h.mem.starting) != 0 {
		t.Fatalf("memory still holds starting tasks %v", h.mem.starting)
	}
}

// The confirmation a TASK_STARTING carried is committed with the task's
// next status even when that one (a master's report that the agent is
// unreachable) would not confirm the reservation by itself: the berth is
// kept, as if STARTING had been committed.
func TestStartingConfirmationCommittedWithNextStatus(t *testing.T) {
	h := newHarness(t)
	inst, starting, _ := placeOne(t, h)
	h.decide(StatusUpdate{Status: starting})

	st, src := mesos.TASK_UNREACHABLE, mesos.SOURCE_MASTER
	h.decide(StatusUpdate{Status: mesos.TaskStatus{
		TaskID: starting.TaskID, AgentID: starting.AgentID, State: &st, Source: &src, UUID: []byte("uuid-unreachable"),
	}})
	got := h.store.instance(inst.Id)
	if got.GetTask().GetState() != stUnreachable || resState(got) != v1.ReservationState_RESERVATION_STATE_RESERVED {
		t.Fatalf("stored: task %s, reservation %v; want TASK_UNREACHABLE on a reserved berth", got.GetTask().GetState(), resState(got))
	}
}

// After a failover the new leader knows nothing of the old one's soft
// state: the master answers its reconciliation with the task's latest
// state, and the launch completes as before.
func TestStartingSoftStateAcrossFailover(t *testing.T) {
	h := newHarness(t)
	inst, starting, running := placeOne(t, h)
	h.decide(StatusUpdate{Status: starting})
	h.master.pending = append(h.master.pending, running)
	h.restart()
	h.settle()
	got := h.store.instance(inst.Id)
	if got.GetTask().GetState() != stRunning || resState(got) != v1.ReservationState_RESERVATION_STATE_RESERVED ||
		got.GetTask().GetId() != inst.GetTask().GetId() {
		t.Fatalf("after the failover: task %s %s, reservation %v", got.GetTask().GetId(), got.GetTask().GetState(), resState(got))
	}
}
