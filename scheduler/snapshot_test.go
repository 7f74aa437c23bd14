package scheduler

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// sameState fails unless st holds exactly the store's instances and
// deployments (same stored messages) and a correct sorted id list.
func sameState(t tb, st *State, s Store) {
	t.Helper()
	fresh, err := NewState(s.Snapshot(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Instances) != len(fresh.Instances) || len(st.Deployments) != len(fresh.Deployments) {
		t.Fatalf("snapshot has %d instances, %d deployments; store %d, %d",
			len(st.Instances), len(st.Deployments), len(fresh.Instances), len(fresh.Deployments))
	}
	for id, i := range fresh.Instances {
		if st.Instances[id] != i {
			t.Fatalf("instance %s in the snapshot is not the stored one: %v vs %v", id, st.Instances[id], i)
		}
	}
	for id, d := range fresh.Deployments {
		if st.Deployments[id] != d {
			t.Fatalf("deployment %s in the snapshot is not the stored one", id)
		}
	}
	if got, want := st.appsWithInstances(), fresh.appsWithInstances(); !slices.Equal(got, want) {
		t.Fatalf("apps with instances %v, want %v", got, want)
	}
	for _, a := range fresh.appsWithInstances() {
		if got, want := st.instanceIDsOf(a), fresh.instanceIDsOf(a); !slices.Equal(got, want) {
			t.Fatalf("instances of %s %v, want %v", a, got, want)
		}
	}
	if got, want := st.sortedInstanceIDs(), fresh.sortedInstanceIDs(); len(got) != len(want) {
		t.Fatalf("sorted ids %v, want %v", got, want)
	} else {
		for k := range got {
			if got[k] != want[k] {
				t.Fatalf("sorted ids %v, want %v", got, want)
			}
		}
	}
}

func inst(id, app, task string) *v1.Instance {
	return &v1.Instance{Id: id, AppId: app, Goal: v1.Goal_GOAL_RUNNING,
		Task: &v1.Task{Id: task, State: stRunning}}
}

// The driver's snapshot is reused while nothing changed, follows its own
// commits by re-reading what they touched (as the FSM stored it, modify
// index included), and is taken afresh after any other write.
func TestSnapshotsFollowOwnCommitsOnly(t *testing.T) {
	l := newFSMStore(t)
	get := func(c *snapshots, mem *Memory) *State {
		t.Helper()
		st, err := c.get(l, mem)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	l.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{inst("i1", "/a", "t1"), inst("i2", "/a", "t2")}})
	var c snapshots
	mem := NewMemory()
	st := get(&c, mem)
	sameState(t, st, l)
	if again := get(&c, mem); again != st {
		t.Fatal("unchanged store: snapshot not reused")
	}
	if st.instanceByTask("t2").GetId() != "i2" {
		t.Fatal("task index")
	}

	// Own commit: i1 changes, i2 is deleted, i3 added, a deployment put.
	i1 := proto.Clone(st.Instances["i1"]).(*v1.Instance)
	i1.Task.State = stKilling
	own := &v1.SchedulerPlanCommand{
		PutInstances:    []*v1.Instance{i1, inst("i3", "/a", "t3")},
		DeleteInstances: []string{"i2"},
		PutDeployments:  []*v1.Deployment{{Id: "d1", Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING}},
	}
	l.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, own)
	c.committed(l, own)
	after := get(&c, mem)
	if after != st {
		t.Fatal("own commit: snapshot taken afresh instead of updated")
	}
	sameState(t, after, l)
	if after.Instances["i1"].GetModifyIndex() != l.index {
		t.Fatalf("i1 modify index %d, want the FSM's %d", after.Instances["i1"].GetModifyIndex(), l.index)
	}
	if after.instanceByTask("t2") != nil || after.instanceByTask("t3").GetId() != "i3" {
		t.Fatal("task index not rebuilt after the update")
	}
	mem2 := NewMemory()
	if get(&c, mem2).Mem != mem2 {
		t.Fatal("memory not swapped")
	}

	// Another writer (the API) changes the store: a fresh snapshot.
	l.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{inst("i4", "/b", "t4")}})
	fresh := get(&c, mem)
	if fresh == st {
		t.Fatal("foreign write: stale snapshot reused")
	}
	sameState(t, fresh, l)

	// Own commit preceded by a foreign one: not patched, taken afresh.
	l.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{inst("i5", "/b", "t5")}})
	own2 := &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{inst("i6", "/b", "t6")}}
	l.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, own2)
	c.committed(l, own2)
	last := get(&c, mem)
	if last == fresh {
		t.Fatal("own commit after a foreign one: snapshot patched")
	}
	sameState(t, last, l)
}
