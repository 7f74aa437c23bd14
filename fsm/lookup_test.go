package fsm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func instanceIDs(insts []*v1.Instance) []string {
	out := make([]string, 0, len(insts))
	for _, i := range insts {
		out = append(out, i.GetId())
	}
	return out
}

// TestLookupsFollowIdsInAnyFormat: an app's instances and a task's
// instance are found through the primary index when their ids follow
// invariant 5, and through the app and task indexes when they do not;
// both kinds are found, in id order, and a task id moves with its task.
func TestLookupsFollowIdsInAnyFormat(t *testing.T) {
	a := newApplier(t)
	s := NewTestReader(t, a.f.State)
	run := func(id, app, task string) *v1.Instance {
		return &v1.Instance{Id: id, AppId: app, Goal: v1.Goal_GOAL_RUNNING, Task: &v1.Task{Id: task, State: "TASK_RUNNING"}}
	}
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{
		run("a_b.instance-2", "/a/b", "a_b.instance-2._app.1"),
		run("a_b.instance-1", "/a_b", "a_b.instance-1._app.4"), // same slug, other app
		run("a_b.instance-0", "/a/b", "legacy-task-0"),         // task id not derived from the instance id
		run("zz-legacy-1", "/a/b", "zz-legacy-1._app.1"),       // instance id not derived from the app id
		run("aa-legacy-2", "/a/b", "a_b.instance-9._app.1"),    // task id naming an instance it is not
		run("a_b.instance-9", "/a/b", ""),
	}})
	if got, want := instanceIDs(s.InstancesByApp("/a/b")), []string{"a_b.instance-0", "a_b.instance-2", "a_b.instance-9", "aa-legacy-2", "zz-legacy-1"}; !slices.Equal(got, want) {
		t.Fatalf("instances of /a/b = %v, want %v", got, want)
	}
	if got := instanceIDs(s.InstancesByApp("/a_b")); !slices.Equal(got, []string{"a_b.instance-1"}) {
		t.Fatalf("instances of /a_b = %v", got)
	}
	if got := s.InstancesByApp("/a"); len(got) != 0 {
		t.Fatalf("instances of /a = %v, want none", instanceIDs(got))
	}
	for task, want := range map[string]string{
		"a_b.instance-2._app.1": "a_b.instance-2",
		"a_b.instance-1._app.4": "a_b.instance-1",
		"legacy-task-0":         "a_b.instance-0",
		"zz-legacy-1._app.1":    "zz-legacy-1",
		"a_b.instance-9._app.1": "aa-legacy-2",
		"a_b.instance-2._app.2": "",
		"nothing":               "",
	} {
		if got := s.InstanceByTaskID(task).GetId(); got != want {
			t.Errorf("instance of task %s = %q, want %q", task, got, want)
		}
	}

	// A task id is one instance's at a time, whichever index finds it.
	for _, thief := range []*v1.Instance{
		run("a_b.instance-9", "/a/b", "a_b.instance-9._app.1"),
		run("a_b.instance-3", "/a/b", "legacy-task-0"),
		run("a_b.instance-4", "/a/b", "a_b.instance-2._app.1"),
	} {
		cur := s.Instance(thief.GetId())
		thief.ModifyIndex = cur.GetModifyIndex()
		res := a.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{thief}})
		if !errors.Is(res.Err, ErrConflict) {
			t.Fatalf("%s taking task %s: err = %v, want ErrConflict", thief.GetId(), thief.GetTask().GetId(), res.Err)
		}
	}

	// The legacy holder moves on; the task id is free, and found where it
	// now is.
	moved := proto.Clone(s.Instance("aa-legacy-2")).(*v1.Instance)
	moved.Task.Id = "aa-legacy-2._app.2"
	claim := proto.Clone(s.Instance("a_b.instance-9")).(*v1.Instance)
	claim.Task = &v1.Task{Id: "a_b.instance-9._app.1", State: "TASK_STAGING"}
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{moved, claim}})
	if got := s.InstanceByTaskID("a_b.instance-9._app.1").GetId(); got != "a_b.instance-9" {
		t.Fatalf("task a_b.instance-9._app.1 after the move belongs to %q", got)
	}
	if got := s.InstanceByTaskID("aa-legacy-2._app.2").GetId(); got != "aa-legacy-2" {
		t.Fatalf("task aa-legacy-2._app.2 belongs to %q", got)
	}

	// Deleting the app decommissions every instance of it, in both forms.
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp("/a/b", v1Time)})
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_DELETE, &v1.AppDeleteCommand{AppId: "/a/b"})
	for _, inst := range s.InstancesByApp("/a/b") {
		if inst.GetGoal() != v1.Goal_GOAL_DECOMMISSIONED {
			t.Errorf("instance %s after app delete: goal %v", inst.GetId(), inst.GetGoal())
		}
	}
	if g := s.Instance("a_b.instance-1").GetGoal(); g != v1.Goal_GOAL_RUNNING {
		t.Fatalf("instance of the other app /a_b: goal %v, want RUNNING", g)
	}
}

// TestVolumeBelongsToOneInstance: invariant 2 at the state level, for a
// volume listed twice in one berth and for a volume of another instance,
// and the volume is free again once its instance lets it go.
func TestVolumeBelongsToOneInstance(t *testing.T) {
	a := newApplier(t)
	s := NewTestReader(t, a.f.State)
	twice := residentInstance("db.instance-1", "/db", "agent-1", "db#data#1")
	twice.Reservation.Volumes = append(twice.Reservation.Volumes, &v1.LocalVolume{PersistenceId: "db#data#1", ContainerPath: "log"})
	res := a.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{twice}})
	if !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("one volume twice in a berth: err = %v, want ErrConflict", res.Err)
	}

	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{
		residentInstance("db.instance-1", "/db", "agent-1", "db#data#1"),
	}})
	// Both in one plan: the second sees the first.
	res = a.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{
		residentInstance("db.instance-2", "/db", "agent-2", "db#data#2"),
		residentInstance("db.instance-3", "/db", "agent-2", "db#data#2"),
	}})
	if !errors.Is(res.Err, ErrConflict) || s.Instance("db.instance-2") != nil {
		t.Fatalf("two instances on one new volume: err = %v (want ErrConflict, nothing applied)", res.Err)
	}
	// Its own volume again (a status write) is no conflict.
	next := proto.Clone(s.Instance("db.instance-1")).(*v1.Instance)
	next.Task.State = "TASK_FINISHED"
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{next}})
	if v := s.Volume("db#data#1"); v.GetInstanceId() != "db.instance-1" || v.GetAgentId() != "agent-1" || v.GetContainerPath() != "data" {
		t.Fatalf("volume = %v", v)
	}

	// Released by a delete of its instance, the id is free for another.
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{DeleteInstances: []string{"db.instance-1"}})
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{
		residentInstance("db.instance-4", "/db", "agent-4", "db#data#1"),
	}})
	if v := s.Volume("db#data#1"); v.GetInstanceId() != "db.instance-4" || v.GetAgentId() != "agent-4" {
		t.Fatalf("volume after the move = %v", v)
	}
	if got := s.ReservationsByAgent("agent-4"); len(got) != 1 || got[0].GetInstanceId() != "db.instance-4" {
		t.Fatalf("reservations on agent-4 = %v", got)
	}
}

// TestRestoreFormat1: a snapshot written before format 2 (reservations and
// volumes as records of their own, testdata/snapshot-v1.bin, written by
// commit 98fbfe8) restores to the same state, answers every lookup, and is
// written back as format 2, which restores to the same bytes.
func TestRestoreFormat1(t *testing.T) {
	old, err := os.ReadFile("testdata/snapshot-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(old, []byte(snapshotMagicV1)) {
		t.Fatalf("fixture is not format 1: %q", old[:len(snapshotMagicV1)])
	}
	f := New(nil)
	if err := f.Restore(io.NopCloser(bytes.NewReader(old))); err != nil {
		t.Fatal(err)
	}
	s := NewTestReader(t, f.State)
	if got := instanceIDs(s.InstancesByApp("/db")); !slices.Equal(got, []string{"db.instance-1", "db.instance-2"}) {
		t.Fatalf("instances of /db = %v", got)
	}
	if s.InstanceByTaskID("custom-task-2").GetId() != "db.instance-2" || s.InstanceByTaskID("db.instance-1._app.1").GetId() != "db.instance-1" ||
		s.InstanceByTaskID("web.instance-1._app.3").GetId() != "web.instance-1" {
		t.Fatal("instance by task id after restoring format 1")
	}
	if r := s.Reservation("db.instance-2"); r.GetAgentId() != "agent-2" || r.GetInstanceId() != "db.instance-2" {
		t.Fatalf("reservation = %v", r)
	}
	if v := s.Volume("db#data#2"); v.GetInstanceId() != "db.instance-2" || v.GetAgentId() != "agent-2" {
		t.Fatalf("volume = %v", v)
	}
	if len(s.Volumes()) != 2 || len(s.ReservationsByAgent("agent-1")) != 1 || s.Reservation("web.instance-1") != nil {
		t.Fatalf("volumes %v, reservations on agent-1 %v", s.Volumes(), s.ReservationsByAgent("agent-1"))
	}
	if s.FrameworkID() != "fw-1" || s.Deployment("d1") == nil || len(s.Apps()) != 2 || s.LastIndex() != 4 {
		t.Fatalf("framework id %q, deployment %v, apps %d, index %d", s.FrameworkID(), s.Deployment("d1"), len(s.Apps()), s.LastIndex())
	}
	// The state takes writes that check against what was restored.
	thief := residentInstance("db.instance-3", "/db", "agent-1", "db#data#1")
	data, err := Encode(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{thief}})
	if err != nil {
		t.Fatal(err)
	}
	if res := f.Apply(&raft.Log{Index: 5, Term: 1, Type: raft.LogCommand, Data: data}).(*ApplyResult); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("taking a restored instance's volume: err = %v, want ErrConflict", res.Err)
	}

	again := snapshotBytes(t, f)
	if !bytes.HasPrefix(again, []byte(snapshotMagic)) || len(again) >= len(old) {
		t.Fatalf("written back: %d bytes (format 1: %d), header %q", len(again), len(old), again[:len(snapshotMagic)])
	}
	g := New(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(again))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, g), again) {
		t.Fatal("format 2 → restore → snapshot differs")
	}
	// Format 2 has no reservation or volume records.
	bad := append([]byte(snapshotMagic), tagVolumeV1, 0, 0)
	if err := New(nil).Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
		t.Fatal("a format 2 snapshot with a format 1 volume record restored")
	}
}
