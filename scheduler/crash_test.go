package scheduler

import (
	"reflect"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// A crash after committing a new reservation but before sending the ACCEPT:
// the new leader reconciles the staging task (GONE), the pending
// reservation times out because its labelled resources never appear, and
// the instance is placed afresh.
func TestCrashBeforeReserveIsSent(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.tick()

	h.dropCalls = true
	h.offers()
	inst := h.only("/pg")
	if resState(inst) != v1.ReservationState_RESERVATION_STATE_PENDING || inst.Task.State != stStaging {
		t.Fatalf("committed intent %v", inst)
	}
	firstPID := inst.Reservation.Volumes[0].PersistenceId
	h.restart()

	inst = h.only("/pg")
	if inst.Task.State != stGone {
		t.Fatalf("reconciled task state %q, want TASK_GONE", inst.Task.State)
	}
	// Before the timeout: the instance stays pinned, nothing is placed.
	h.advance(2 * time.Second)
	h.tick()
	if d := h.offers(); len(acceptOps(d)) != 0 {
		t.Fatalf("placed before the reservation timed out: %v", acceptOps(d))
	}
	h.advance(20 * time.Second)
	h.tick()
	inst = h.only("/pg")
	if resState(inst) != v1.ReservationState_RESERVATION_STATE_NONE {
		t.Fatalf("not unpinned after timeout: %v", inst.Reservation)
	}
	h.settle()
	inst = h.only("/pg")
	if inst.Task.State != stRunning || inst.Reservation.Volumes[0].PersistenceId == firstPID || inst.Incarnation != 2 {
		t.Fatalf("after replacement placement: %v", inst)
	}
}

// A crash after the RESERVE was sent but before the resources were seen:
// the reservation happened, so it shows up labelled and is confirmed.
func TestCrashAfterReserveIsSent(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.tick()
	h.offers()
	// Lose the statuses: the new leader knows only what it committed.
	h.master.pending = nil
	h.restart()
	inst := h.only("/pg")
	if inst.Task.State != stRunning || resState(inst) != v1.ReservationState_RESERVATION_STATE_RESERVED {
		t.Fatalf("after reconciliation: %v", inst)
	}
}

// A crash between committing a relaunch on a reservation and sending the
// LAUNCH: reconciliation reports the task GONE and it is relaunched with the
// next incarnation on the same berth.
func TestCrashBeforeRelaunchIsSent(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.settle()
	inst := h.only("/pg")
	pid := inst.Reservation.Volumes[0].PersistenceId
	h.master.crash(inst.Task.Id)
	h.deliver()
	h.advance(2 * time.Second)

	h.dropCalls = true
	h.offers()
	if got := h.only("/pg"); got.Incarnation != 2 || got.Task.State != stStaging {
		t.Fatalf("committed relaunch %v", got)
	}
	h.restart()
	if got := h.only("/pg"); got.Task.State != stGone {
		t.Fatalf("reconciled state %q", got.Task.State)
	}
	h.advance(5 * time.Second)
	h.settle()
	got := h.only("/pg")
	if got.Incarnation != 3 || got.Task.State != stRunning || got.Reservation.Volumes[0].PersistenceId != pid {
		t.Fatalf("relaunch after crash: %v", got)
	}
}

// A crash between committing the forgetting of a decommissioned instance
// and sending DESTROY+UNRESERVE: the labelled resources now belong to no
// instance and are collected by offer.
func TestCrashBeforeDestroyIsSent(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.settle()
	h.store.deleteApp("/pg", "")
	h.tick()
	h.deliver()
	h.dropCalls = true
	h.offers()
	if n := len(h.instancesOf("/pg")); n != 0 {
		t.Fatalf("%d instances still known", n)
	}
	h.restart()
	d := h.offers()
	if ops := acceptOps(d); !reflect.DeepEqual(ops, [][]string{{"DESTROY", "UNRESERVE"}}) {
		t.Fatalf("garbage collection ops %v", ops)
	}
	if r := h.master.reservations(); len(r) != 0 {
		t.Fatalf("left: %v", r)
	}
}

// Labelled resources of an unknown instance are destroyed and unreserved
// in one ACCEPT; resources of another framework id are left alone.
func TestGarbageCollectionByOffer(t *testing.T) {
	h := newHarness(t)
	a := h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	a.res["ghost.instance-1"] = &fakeReservation{fid: "fw-1", iid: "ghost.instance-1", cpus: 1, mem: 64, disk: 5,
		ports: []mesos.Value_Range{{Begin: 31020, End: 31020}}, volumes: map[string]fakeVolume{"ghost#data#1": {size: 10, path: "data"}}}
	a.res["other.instance-1"] = &fakeReservation{fid: "fw-other", iid: "other.instance-1", cpus: 1, volumes: map[string]fakeVolume{}}
	d := h.offers()
	if ops := acceptOps(d); !reflect.DeepEqual(ops, [][]string{{"DESTROY", "UNRESERVE"}}) {
		t.Fatalf("ops %v", ops)
	}
	if r := h.master.reservations(); len(r) != 1 || !strings.HasPrefix(r[0], "other.instance-1") {
		t.Fatalf("left: %v", r)
	}
	if a.cpus != 5 || a.disk != 1015 || !rangesContain(a.ports, 31020) {
		t.Fatalf("resources not returned: %+v", a)
	}
}

// A reservation that shows up after its instance was unpinned (timed out)
// is garbage: the instance has moved on.
func TestLateReservationIsCollected(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.tick()
	h.offers()
	// The task dies at once; its statuses are lost (no confirmation).
	inst := h.only("/pg")
	h.master.pending = nil
	h.master.crash(inst.Task.Id)
	h.master.pending = nil
	// Simulate the master losing the task state so reconciliation says GONE.
	delete(h.master.agents["A1"].tasks, inst.Task.Id)
	h.restart()
	h.advance(21 * time.Second)
	h.tick() // unpins
	if got := h.only("/pg"); resState(got) != v1.ReservationState_RESERVATION_STATE_NONE {
		t.Fatalf("not unpinned: %v", got.Reservation)
	}
	d := h.offers()
	ops := acceptOps(d)
	if len(ops) != 1 || !reflect.DeepEqual(ops[0][:2], []string{"DESTROY", "UNRESERVE"}) {
		t.Fatalf("ops %v", ops)
	}
	h.deliver()
	h.settle()
	got := h.only("/pg")
	if got.Task.State != stRunning || got.Reservation.Volumes[0].PersistenceId == inst.Reservation.Volumes[0].PersistenceId {
		t.Fatalf("after late reservation: %v", got)
	}
	if r := h.master.reservations(); len(r) != 1 {
		t.Fatalf("reservations %v", r)
	}
}

// A live task Berth does not know is killed; every update with a uuid is
// acknowledged after its commit, master updates without one are not.
func TestUnknownTaskIsKilledAndAcks(t *testing.T) {
	h := newHarness(t)
	st := mesos.TASK_RUNNING
	src := mesos.SOURCE_EXECUTOR
	d := h.decide(StatusUpdate{Status: mesos.TaskStatus{
		TaskID: mesos.TaskID{Value: "stray._app.1"}, State: &st, Source: &src,
		AgentID: &mesos.AgentID{Value: "A1"}, UUID: []byte("0123456789abcdef"),
	}})
	if got := callTypes(d); !reflect.DeepEqual(got, []string{"KILL", "ACKNOWLEDGE"}) {
		t.Fatalf("calls %v", got)
	}
	srcM := mesos.SOURCE_MASTER
	fin := mesos.TASK_KILLED
	d = h.decide(StatusUpdate{Status: mesos.TaskStatus{TaskID: mesos.TaskID{Value: "stray._app.1"}, State: &fin, Source: &srcM}})
	if len(d.Calls) != 0 || d.Plan != nil {
		t.Fatalf("terminal unknown without uuid: %v", callTypes(d))
	}
}

// Subscription: explicit reconciliation of every live task, then implicit,
// then a revive.
func TestSubscribeReconciles(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(statelessApp("/web", "v1", 2), "")
	h.settle()
	h.mem = NewMemory()
	d := h.decide(Subscribed{FrameworkID: "fw-1"})
	if got := callTypes(d); !reflect.DeepEqual(got, []string{"RECONCILE", "RECONCILE", "REVIVE"}) {
		t.Fatalf("calls %v", got)
	}
	if n := len(d.Calls[0].Reconcile.Tasks); n != 2 {
		t.Fatalf("explicit reconcile of %d tasks", n)
	}
	if n := len(d.Calls[1].Reconcile.Tasks); n != 0 {
		t.Fatalf("implicit reconcile carries %d tasks", n)
	}
	// Periodic: again after the interval.
	h.advance(11 * time.Minute)
	d = h.tick()
	n := 0
	for _, c := range d.Calls {
		if c.Type == scheduler.Call_RECONCILE {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("periodic reconciliation calls: %v", callTypes(d))
	}
}

// Without a committed framework id, offers are declined: nothing can be
// labelled.
func TestNoFrameworkIDDeclines(t *testing.T) {
	h := newHarness(t)
	h.store = newFSMStore(t) // no framework id committed
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.tick()
	if d := h.offers(); !reflect.DeepEqual(callTypes(d), []string{"DECLINE"}) {
		t.Fatalf("calls %v", callTypes(d))
	}
}

func TestCommittedPlanIsDeterministic(t *testing.T) {
	run := func() *v1.SchedulerPlanCommand {
		h := newHarness(t)
		h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
		h.master.addAgent("A2", "host2", 4, 1024, 1000, 31000, 31010, nil)
		h.store.putApp(residentApp("/pg", "v1", 3), "")
		h.tick()
		return h.offers().Plan
	}
	a, b := run(), run()
	if !proto.Equal(a, b) {
		t.Fatalf("plans differ:\n%v\n%v", a, b)
	}
}
