package scheduler

import (
	"maps"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// liveTasksOf counts the live tasks of an instance on the master.
func liveTasksOf(m *fakeMaster, iid string) []string {
	var out []string
	for _, id := range m.order {
		for tid, t := range m.agents[id].tasks {
			if strings.HasPrefix(tid, iid+"._app.") && isLiveState(t.state.String()) {
				out = append(out, id+"/"+tid)
			}
		}
	}
	return out
}

func masterLogHas(m *fakeMaster, prefix string) []string {
	var out []string
	for _, l := range m.log {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// twoAgentsOneBerth starts a harness with agents A1 and A2 and a resident
// app /pg of one instance, settled on its berth.
func twoAgentsOneBerth(t *testing.T) (*harness, *v1.Instance) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.master.addAgent("A2", "host2", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.settle()
	return h, h.only("/pg")
}

// Never two live copies: an agent stops; the instance waits; the operator
// marks the agent gone, so the instance gets a new, empty berth elsewhere
// with the next epoch; then the old agent's disk comes back with its old
// berth (as a Mesos agent that recovers its checkpointed resources): the
// old berth is destroyed and unreserved, never launched on, and the
// instance keeps running once, on its new berth.
func TestOldBerthReturningAfterGoneIsDestroyedNeverLaunched(t *testing.T) {
	h, inst := twoAgentsOneBerth(t)
	if inst.GetReservation().GetEpoch() != 1 {
		t.Fatalf("first berth epoch %d, want 1", inst.GetReservation().GetEpoch())
	}
	old := h.master.agents[inst.Reservation.AgentId]
	if _, ok := old.res[inst.GetId()+"@1"]; !ok {
		t.Fatalf("reservation not labelled with epoch 1: %v", h.master.reservations())
	}
	oldPID := inst.Reservation.Volumes[0].PersistenceId

	h.master.partition(old.id)
	h.deliver()
	h.advance(time.Hour)
	h.settle()
	if got := h.only("/pg"); got.Reservation.AgentId != old.id || got.Reservation.Epoch != 1 || !strings.HasPrefix(got.AgentNotice, noticeUnreachable) {
		t.Fatalf("an unreachable agent's instance did not wait on its berth: %v", got)
	}
	if d := masterLogHas(h.master, "DESTROY"); len(d) > 0 {
		t.Fatalf("destroyed on an unreachable agent: %v", d)
	}

	saved := maps.Clone(old.res)
	h.master.markGone(old.id)
	h.deliver()
	h.advance(5 * time.Second)
	h.settle()
	moved := h.only("/pg")
	if moved.Reservation.AgentId == old.id || moved.Reservation.Epoch != 2 || moved.Task.State != stRunning ||
		moved.Reservation.Volumes[0].PersistenceId == oldPID {
		t.Fatalf("after gone: %v", moved)
	}

	// The old agent returns holding the epoch-1 berth, free.
	for _, r := range saved {
		r.usedBy = ""
	}
	old.res = saved
	old.gone = false
	h.advance(time.Minute)
	h.settle()
	if left := old.res; len(left) != 0 {
		t.Fatalf("old berth not collected: %v", h.master.reservations())
	}
	if d := masterLogHas(h.master, "DESTROY "+oldPID); len(d) != 1 {
		t.Fatalf("old volume not destroyed once: %v", h.master.log)
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 1 || !strings.HasPrefix(live[0], moved.Reservation.AgentId+"/") {
		t.Fatalf("live tasks of the instance: %v", live)
	}
	if got := h.only("/pg"); got.Reservation.Epoch != 2 || got.Reservation.AgentId != moved.Reservation.AgentId || got.Incarnation != moved.Incarnation {
		t.Fatalf("the instance was disturbed by its old berth: %v", got)
	}
}

// A berth of an older epoch offered by the agent that also holds the
// instance's current berth (same instance id, same agent) is destroyed
// and unreserved in the same ACCEPT that launches on the current one; a
// berth from before epochs (no label) counts as epoch 0.
func TestStaleEpochOnSameAgentIsCollected(t *testing.T) {
	h := newHarness(t)
	a1 := h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.settle()
	inst := h.only("/pg")
	cur := a1.res[inst.GetId()+"@1"]
	if cur == nil {
		t.Fatalf("no epoch-1 reservation: %v", h.master.reservations())
	}
	// An unlabelled (epoch 0) berth of the same instance, as an older Berth
	// would have left it: same instance id, its own volume.
	a1.res[inst.GetId()] = &fakeReservation{fid: cur.fid, iid: inst.GetId(), cpus: 0.5, mem: 64,
		volumes: map[string]fakeVolume{"pg#data#stale": {size: 100, path: "data"}}}
	// Stop the task so that the current berth is offered too.
	h.master.crash(inst.Task.Id)
	h.deliver()
	h.advance(time.Minute)
	d := h.offers()
	ops := acceptOps(d)
	if len(ops) != 1 || strings.Join(ops[0], ",") != "DESTROY,UNRESERVE,LAUNCH" {
		t.Fatalf("accept ops %v, want one DESTROY,UNRESERVE,LAUNCH", ops)
	}
	h.deliver()
	if _, ok := a1.res[inst.GetId()]; ok {
		t.Fatalf("stale berth left: %v", h.master.reservations())
	}
	got := h.only("/pg")
	if got.Reservation.Epoch != 1 || got.Reservation.Volumes[0].PersistenceId != inst.Reservation.Volumes[0].PersistenceId || got.Task.State != stRunning {
		t.Fatalf("current berth disturbed: %v", got)
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 1 {
		t.Fatalf("live tasks %v", live)
	}
}

// Never destroy on doubt: a task that ends LOST, GONE, DROPPED, UNKNOWN,
// FAILED or ERROR, or becomes UNREACHABLE, keeps its berth; the instance
// relaunches on the same volume (or waits while unreachable) and no
// DESTROY is ever sent.
func TestAmbiguousStatesNeverDestroy(t *testing.T) {
	for _, st := range []mesos.TaskState{mesos.TASK_LOST, mesos.TASK_GONE, mesos.TASK_DROPPED, mesos.TASK_UNKNOWN,
		mesos.TASK_FAILED, mesos.TASK_ERROR, mesos.TASK_UNREACHABLE} {
		t.Run(st.String(), func(t *testing.T) {
			h, inst := twoAgentsOneBerth(t)
			a := h.master.agents[inst.Reservation.AgentId]
			if st == mesos.TASK_UNREACHABLE {
				h.master.partition(a.id)
			} else {
				h.master.finish(a, a.tasks[inst.Task.Id], st)
			}
			h.deliver()
			for k := 0; k < 5; k++ {
				h.advance(10 * time.Minute)
				h.settle()
			}
			if d := masterLogHas(h.master, "DESTROY"); len(d) > 0 {
				t.Fatalf("%v destroyed a volume: %v", st, d)
			}
			got := h.only("/pg")
			if got.Reservation.AgentId != a.id || got.Reservation.Epoch != 1 ||
				got.Reservation.Volumes[0].PersistenceId != inst.Reservation.Volumes[0].PersistenceId {
				t.Fatalf("%v moved the berth: %v", st, got)
			}
			if st != mesos.TASK_UNREACHABLE && (got.Task.State != stRunning || got.Incarnation < 2) {
				t.Fatalf("%v: not relaunched on its berth: %v", st, got)
			}
		})
	}
}

// Epoch labels: the berth's reserved resources, its volume and its task
// carry the epoch and instance id.
func TestEpochLabelsOnReserveCreateLaunch(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.tick()
	d := h.offers()
	var sawReserve, sawCreate, sawLaunch bool
	for _, c := range d.Calls {
		if c.Accept == nil {
			continue
		}
		for _, op := range c.Accept.Operations {
			switch op.Type {
			case mesos.Offer_Operation_RESERVE:
				for _, r := range op.Reserve.Resources {
					sawReserve = labelEpoch(currentReservation(&r).GetLabels()) == 1
				}
			case mesos.Offer_Operation_CREATE:
				for _, r := range op.Create.Volumes {
					sawCreate = labelEpoch(currentReservation(&r).GetLabels()) == 1
				}
			case mesos.Offer_Operation_LAUNCH:
				ti := op.Launch.TaskInfos[0]
				iid, _ := labelValue(ti.Labels, LabelInstanceID)
				sawLaunch = labelEpoch(ti.Labels) == 1 && iid == h.only("/pg").GetId()
			}
		}
	}
	if !sawReserve || !sawCreate || !sawLaunch {
		t.Fatalf("epoch labels: reserve %v create %v launch %v", sawReserve, sawCreate, sawLaunch)
	}
	if e := labelEpoch(&mesos.Labels{Labels: []mesos.Label{{Key: LabelEpoch, Value: strPtr("x")}}}); e == 0 || e == 1 {
		t.Fatalf("an unreadable epoch label reads as %d", e)
	}
}
