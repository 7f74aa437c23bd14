package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// applier feeds commands to an FSM as Raft log entries with increasing
// indexes, the way Raft does.
type applier struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func newApplier(t *testing.T) *applier {
	t.Helper()
	return &applier{t: t, f: New(nil)}
}

func (a *applier) apply(ct v1.CommandType, msg proto.Message) *ApplyResult {
	a.t.Helper()
	data, err := Encode(ct, msg)
	if err != nil {
		a.t.Fatalf("encode: %v", err)
	}
	a.index++
	res, ok := a.f.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: data}).(*ApplyResult)
	if !ok {
		a.t.Fatalf("Apply did not return *ApplyResult")
	}
	return res
}

func (a *applier) mustApply(ct v1.CommandType, msg proto.Message) {
	a.t.Helper()
	if res := a.apply(ct, msg); res.Err != nil {
		a.t.Fatalf("apply %s: %v", ct, res.Err)
	}
}

func testApp(id, version string) *v1.App {
	return &v1.App{Id: id, Cmd: proto.String("sleep 1000"), Instances: proto.Int32(1), Version: proto.String(version)}
}

func residentInstance(id, appID, agent, pid string) *v1.Instance {
	return &v1.Instance{
		Id: id, AppId: appID, Goal: v1.Goal_GOAL_RUNNING, Resident: true,
		Reservation: &v1.Reservation{
			State: v1.ReservationState_RESERVATION_STATE_RESERVED, AgentId: agent, Role: "berth",
			Volumes: []*v1.LocalVolume{{PersistenceId: pid, ContainerPath: "data", SizeMib: 10}},
		},
		Task: &v1.Task{Id: id + "._app.1", AgentId: agent, State: "TASK_RUNNING"},
	}
}

const (
	v1Time = "2026-11-27T08:00:00.000Z"
	v2Time = "2026-11-27T09:00:00.000Z"
)

func TestAppCreateUpdateDelete(t *testing.T) {
	a := newApplier(t)
	s := NewTestReader(t, a.f.State)
	dep := &v1.Deployment{Id: "d1", AffectedApps: []string{"/web"}, Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING}
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp("/web", v1Time), Deployment: dep})
	if got := s.App("/web"); got == nil || got.GetVersion() != v1Time {
		t.Fatalf("app after create = %v", got)
	}
	if s.Deployment("d1") == nil {
		t.Fatal("deployment stored with the app is missing")
	}

	res := a.apply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp("/web", v2Time)})
	if !errors.Is(res.Err, ErrAlreadyExists) {
		t.Fatalf("second create: err = %v, want ErrAlreadyExists", res.Err)
	}

	up := testApp("/web", v2Time)
	up.Instances = proto.Int32(3)
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{App: up, CancelDeployments: []string{"d1"}})
	if got := s.App("/web").GetInstances(); got != 3 {
		t.Fatalf("instances after update = %d, want 3", got)
	}
	if st := s.Deployment("d1").GetStatus(); st != v1.DeploymentStatus_DEPLOYMENT_STATUS_CANCELED {
		t.Fatalf("cancelled deployment status = %v", st)
	}
	if got := s.AppVersions("/web"); len(got) != 2 || got[0] != v2Time || got[1] != v1Time {
		t.Fatalf("versions = %v, want newest first [%s %s]", got, v2Time, v1Time)
	}
	if old := s.AppVersion("/web", v1Time); old.GetInstances() != 1 {
		t.Fatalf("old version instances = %d, want 1", old.GetInstances())
	}

	res = a.apply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{App: testApp("/web", v2Time), ExpectedVersion: v1Time})
	if !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("update with stale expected version: err = %v, want ErrConflict", res.Err)
	}
	res = a.apply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{App: testApp("/nope", v2Time)})
	if !errors.Is(res.Err, ErrNotFound) {
		t.Fatalf("update of missing app: err = %v, want ErrNotFound", res.Err)
	}

	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{
		PutInstances: []*v1.Instance{residentInstance("web.instance-1", "/web", "agent-1", "web#data#1")},
	})
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_DELETE, &v1.AppDeleteCommand{AppId: "/web"})
	if s.App("/web") != nil || len(s.AppVersions("/web")) != 0 {
		t.Fatal("app or its versions survived delete")
	}
	if g := s.Instance("web.instance-1").GetGoal(); g != v1.Goal_GOAL_DECOMMISSIONED {
		t.Fatalf("instance goal after app delete = %v, want DECOMMISSIONED", g)
	}
	if s.Volume("web#data#1") == nil {
		t.Fatal("volume of a decommissioned instance must stay known until it is destroyed")
	}
	res = a.apply(v1.CommandType_COMMAND_TYPE_APP_DELETE, &v1.AppDeleteCommand{AppId: "/web"})
	if !errors.Is(res.Err, ErrNotFound) {
		t.Fatalf("second delete: err = %v, want ErrNotFound", res.Err)
	}
}

func TestRequestIDAppliesOnce(t *testing.T) {
	a := newApplier(t)
	cmd := &v1.AppCreateCommand{RequestId: "req-1", App: testApp("/once", v1Time)}
	first := a.apply(v1.CommandType_COMMAND_TYPE_APP_CREATE, cmd)
	if first.Err != nil {
		t.Fatal(first.Err)
	}
	retry := a.apply(v1.CommandType_COMMAND_TYPE_APP_CREATE, cmd)
	if retry.Err != nil || retry.Index != first.Index {
		t.Fatalf("retry = %+v, want the first outcome (index %d, no error)", retry, first.Index)
	}

	// A refused request is remembered with its refusal, even if the state
	// that caused it changes later.
	bad := &v1.AppUpdateCommand{RequestId: "req-2", App: testApp("/missing", v2Time)}
	if res := a.apply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, bad); !errors.Is(res.Err, ErrNotFound) {
		t.Fatalf("first update: %v", res.Err)
	}
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp("/missing", v1Time)})
	res := a.apply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, bad)
	if !errors.Is(res.Err, ErrNotFound) {
		t.Fatalf("retried update: err = %v, want the remembered ErrNotFound", res.Err)
	}
	if got := NewTestReader(t, a.f.State).App("/missing").GetVersion(); got != v1Time {
		t.Fatalf("retried update changed the app to version %s", got)
	}
}

func TestFrameworkIDSet(t *testing.T) {
	a := newApplier(t)
	a.mustApply(v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: "fw-1"})
	a.mustApply(v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: "fw-1"})
	res := a.apply(v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: "fw-2"})
	if !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("replacing the framework id: err = %v, want ErrConflict", res.Err)
	}
	if got := NewTestReader(t, a.f.State).FrameworkID(); got != "fw-1" {
		t.Fatalf("framework id = %q", got)
	}
	a.mustApply(v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: "fw-2", Overwrite: true})
	if got := NewTestReader(t, a.f.State).FrameworkID(); got != "fw-2" {
		t.Fatalf("framework id after overwrite = %q", got)
	}
	if res := a.apply(v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{}); !errors.Is(res.Err, ErrInvalid) {
		t.Fatalf("empty framework id: err = %v", res.Err)
	}
}

func TestSchedulerPlanKeepsDerivedTables(t *testing.T) {
	a := newApplier(t)
	s := NewTestReader(t, a.f.State)
	inst := residentInstance("db.instance-1", "/db", "agent-1", "db#data#1")
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{
		PutInstances:   []*v1.Instance{inst},
		PutDeployments: []*v1.Deployment{{Id: "d1", AffectedApps: []string{"/db"}, CreatedAt: timestamppb.New(time.Unix(1, 0))}},
	})
	if got := s.InstanceByTaskID("db.instance-1._app.1"); got.GetId() != "db.instance-1" {
		t.Fatalf("instance by task id = %v", got)
	}
	if r := s.Reservation("db.instance-1"); r.GetAgentId() != "agent-1" {
		t.Fatalf("reservation = %v", r)
	}
	if got := s.ReservationsByAgent("agent-1"); len(got) != 1 {
		t.Fatalf("reservations on agent-1 = %d, want 1", len(got))
	}
	if v := s.Volume("db#data#1"); v.GetInstanceId() != "db.instance-1" || v.GetAgentId() != "agent-1" {
		t.Fatalf("volume = %v", v)
	}
	if len(s.DeploymentsByApp("/db")) != 1 {
		t.Fatal("deployment by app missing")
	}

	// Relaunch: new task id, same berth. The old task id is forgotten.
	next := proto.Clone(s.Instance("db.instance-1")).(*v1.Instance)
	next.Task = &v1.Task{Id: "db.instance-1._app.2", State: "TASK_STAGING"}
	next.Incarnation = 2
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{next}})
	if s.InstanceByTaskID("db.instance-1._app.1") != nil {
		t.Fatal("old task id still indexed")
	}
	if len(s.Volumes()) != 1 {
		t.Fatalf("volumes = %d, want 1", len(s.Volumes()))
	}

	// Invariant 2 at the state level: a volume belongs to one instance.
	thief := residentInstance("db.instance-2", "/db", "agent-1", "db#data#1")
	res := a.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{thief}})
	if !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("second instance on the same volume: err = %v, want ErrConflict", res.Err)
	}
	if s.Instance("db.instance-2") != nil {
		t.Fatal("a refused plan must not be partially applied")
	}

	// Unpinning: reservation back to NONE drops the derived rows.
	unpinned := proto.Clone(s.Instance("db.instance-1")).(*v1.Instance)
	unpinned.Reservation = &v1.Reservation{State: v1.ReservationState_RESERVATION_STATE_NONE}
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{unpinned}})
	if s.Reservation("db.instance-1") != nil || s.Volume("db#data#1") != nil {
		t.Fatal("unpinned instance still has reservation or volume rows")
	}

	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{
		DeleteInstances: []string{"db.instance-1"}, DeleteDeployments: []string{"d1"},
	})
	if len(s.Instances()) != 0 || len(s.Deployments()) != 0 {
		t.Fatal("plan deletes not applied")
	}
	for _, bad := range []*v1.Instance{{AppId: "/db"}, {Id: "x"}} {
		res := a.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{bad}})
		if !errors.Is(res.Err, ErrInvalid) {
			t.Fatalf("instance %v: err = %v, want ErrInvalid", bad, res.Err)
		}
	}
}

// TestInstanceWritesAreCompareAndSet checks that a writer holding a stale
// copy of an instance cannot overwrite a newer change: a wipe committed by
// the API must not be undone by a scheduler plan computed before it.
func TestInstanceWritesAreCompareAndSet(t *testing.T) {
	a := newApplier(t)
	s := NewTestReader(t, a.f.State)
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{
		PutInstances: []*v1.Instance{residentInstance("pg.instance-1", "/pg", "agent-1", "pg#data#1")},
	})
	read := s.Instance("pg.instance-1")
	if read.GetModifyIndex() != a.index {
		t.Fatalf("modify index = %d, want the entry's index %d", read.GetModifyIndex(), a.index)
	}

	// The scheduler reads the instance, then the API wipes it.
	schedulerCopy := proto.Clone(read).(*v1.Instance)
	wipe := proto.Clone(read).(*v1.Instance)
	wipe.Goal = v1.Goal_GOAL_DECOMMISSIONED
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{wipe}})

	// The scheduler's plan from its stale copy is refused, whole.
	schedulerCopy.Task = &v1.Task{Id: "pg.instance-1._app.2", State: "TASK_STAGING"}
	res := a.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{
		PutInstances:   []*v1.Instance{schedulerCopy},
		PutDeployments: []*v1.Deployment{{Id: "d"}},
	})
	if !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("stale write: err = %v, want ErrConflict", res.Err)
	}
	if got := s.Instance("pg.instance-1"); got.GetGoal() != v1.Goal_GOAL_DECOMMISSIONED || got.GetTask().GetId() != "pg.instance-1._app.1" {
		t.Fatalf("stale write changed the instance: %v", got)
	}
	if s.Deployment("d") != nil {
		t.Fatal("a refused plan must not be partially applied")
	}

	// A new instance must not already exist; a deleted one cannot be revived
	// from a stale copy.
	dup := residentInstance("pg.instance-1", "/pg", "agent-1", "pg#data#9")
	if res := a.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{dup}}); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("creating an existing instance: err = %v, want ErrConflict", res.Err)
	}
	stale := s.Instance("pg.instance-1")
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{DeleteInstances: []string{"pg.instance-1"}})
	if res := a.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{stale}}); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("reviving a deleted instance: err = %v, want ErrConflict", res.Err)
	}
}

func TestDeploymentCancel(t *testing.T) {
	a := newApplier(t)
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutDeployments: []*v1.Deployment{
		{Id: "run", Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING},
		{Id: "done", Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED},
	}})
	a.mustApply(v1.CommandType_COMMAND_TYPE_DEPLOYMENT_CANCEL, &v1.DeploymentCancelCommand{DeploymentIds: []string{"run", "done"}})
	s := NewTestReader(t, a.f.State)
	if s.Deployment("run").GetStatus() != v1.DeploymentStatus_DEPLOYMENT_STATUS_CANCELED {
		t.Fatal("running deployment not cancelled")
	}
	if s.Deployment("done").GetStatus() != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatal("a finished deployment must keep its outcome")
	}
	// The scheduler's stale copy cannot turn a cancelled deployment into a
	// success.
	stale := &v1.Deployment{Id: "run", Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED}
	if res := a.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutDeployments: []*v1.Deployment{stale}}); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("ending an ended deployment again: err = %v, want ErrConflict", res.Err)
	}
	res := a.apply(v1.CommandType_COMMAND_TYPE_DEPLOYMENT_CANCEL, &v1.DeploymentCancelCommand{DeploymentIds: []string{"nope"}})
	if !errors.Is(res.Err, ErrNotFound) {
		t.Fatalf("cancel unknown: err = %v", res.Err)
	}
}

func TestUnknownCommandTypeStopsTheReplica(t *testing.T) {
	f := New(nil)
	defer func() {
		if recover() == nil {
			t.Fatal("Apply of an unknown command type must panic")
		}
	}()
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{72, 1, 2}})
}

func TestUnknownIgnorableCommandIsSkipped(t *testing.T) {
	f := New(nil)
	data := []byte{byte(IgnoreUnknownTypeFlag) | 72, 1, 2}
	res := f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: data}).(*ApplyResult)
	if res.Err != nil || res.Index != 7 {
		t.Fatalf("ignorable unknown entry = %+v, want skipped at index 7", res)
	}
	if got := f.State().LastIndex(); got != 7 {
		t.Fatalf("applied index after a skipped entry = %d, want 7", got)
	}
	// A known type with the flag applies as usual.
	cmd, err := Encode(v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET|IgnoreUnknownTypeFlag, &v1.FrameworkIDSetCommand{FrameworkId: "fw"})
	if err != nil {
		t.Fatal(err)
	}
	if res := f.Apply(&raft.Log{Index: 8, Type: raft.LogCommand, Data: cmd}).(*ApplyResult); res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := NewTestReader(t, f.State).FrameworkID(); got != "fw" {
		t.Fatalf("framework id = %q", got)
	}
}

func TestCorruptPayloadIsRefusedNotApplied(t *testing.T) {
	f := New(nil)
	res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{byte(v1.CommandType_COMMAND_TYPE_APP_CREATE), 0xff, 0xff}}).(*ApplyResult)
	if !errors.Is(res.Err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", res.Err)
	}
	if len(NewTestReader(t, f.State).Apps()) != 0 {
		t.Fatal("corrupt entry changed state")
	}
}

func TestWatchFiresOnChange(t *testing.T) {
	a := newApplier(t)
	ch := NewTestReader(t, a.f.State).Watch()
	select {
	case <-ch:
		t.Fatal("watch fired before any change")
	default:
	}
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp("/w", v1Time)})
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not fire after an apply")
	}
	if NewTestReader(t, a.f.State).LastIndex() != a.index {
		t.Fatalf("last index = %d, want %d", NewTestReader(t, a.f.State).LastIndex(), a.index)
	}
}

type sink struct {
	bytes.Buffer
	cancelled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { s.cancelled = true; return nil }
func (s *sink) Close() error  { return nil }

func TestSnapshotRestoreRoundTrip10000Apps(t *testing.T) {
	a := newApplier(t)
	const n = 10000
	for i := 0; i < n; i++ {
		app := testApp(fmt.Sprintf("/app-%05d", i), v1Time)
		app.Env = map[string]*v1.EnvValue{"N": {Kind: &v1.EnvValue_Value{Value: fmt.Sprint(i)}}}
		a.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{RequestId: fmt.Sprintf("r%d", i), App: app})
	}
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{App: testApp("/app-00000", v2Time)})
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{
		PutInstances:   []*v1.Instance{residentInstance("app-00001.instance-1", "/app-00001", "agent-9", "app-00001#data#1")},
		PutDeployments: []*v1.Deployment{{Id: "d", AffectedApps: []string{"/app-00001"}}},
	})
	a.mustApply(v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: "fw"})

	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot point must not leak into it.
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp("/later", v1Time)})
	var out sink
	if err := snap.Persist(&out); err != nil {
		t.Fatal(err)
	}

	g := New(nil)
	watch := NewTestReader(t, g.State).Watch()
	if err := g.Restore(io.NopCloser(bytes.NewReader(out.Bytes()))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-watch:
	default:
		t.Fatal("restore did not wake readers of the old store")
	}
	s := NewTestReader(t, g.State)
	if got := len(s.Apps()); got != n {
		t.Fatalf("restored %d apps, want %d", got, n)
	}
	if s.App("/later") != nil {
		t.Fatal("snapshot contains a write made after it was taken")
	}
	if got := s.App("/app-01234").GetEnv()["N"].GetValue(); got != "1234" {
		t.Fatalf("restored app env N = %q", got)
	}
	if got := s.AppVersions("/app-00000"); len(got) != 2 {
		t.Fatalf("restored versions = %v", got)
	}
	if s.Volume("app-00001#data#1") == nil || s.Reservation("app-00001.instance-1") == nil ||
		s.InstanceByTaskID("app-00001.instance-1._app.1") == nil || s.Deployment("d") == nil {
		t.Fatal("restored instance, reservation, volume or deployment missing")
	}
	if s.FrameworkID() != "fw" {
		t.Fatalf("restored framework id = %q", s.FrameworkID())
	}
	// A second snapshot of the restored state is byte-identical.
	snap2, _ := g.Snapshot()
	var out2 sink
	if err := snap2.Persist(&out2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), out2.Bytes()) {
		t.Fatal("snapshot of restored state differs from the original")
	}

	// Request ids survive a restore: a retry after it still applies once.
	b := &applier{t: t, f: g, index: a.index + 1}
	res := b.apply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{RequestId: "r5", App: testApp("/app-00005", v2Time)})
	if res.Err != nil || s.App("/app-00005").GetVersion() != v1Time {
		t.Fatalf("retry after restore: %+v, version %s", res, s.App("/app-00005").GetVersion())
	}
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	a := newApplier(t)
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp("/x", v1Time)})
	snap, _ := a.f.Snapshot()
	var good sink
	if err := snap.Persist(&good); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":       nil,
		"not berth":   []byte("hello world, this is not a snapshot"),
		"truncated":   good.Bytes()[:good.Len()-1],
		"bad tag":     append([]byte(snapshotMagic), 99, 1, 0),
		"huge length": append([]byte(snapshotMagic), 1, 0xff, 0xff, 0xff, 0xff, 0x0f),
	}
	for name, data := range cases {
		f := New(nil)
		if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err == nil {
			t.Errorf("%s: restore succeeded, want an error", name)
		}
		if len(NewTestReader(t, f.State).Apps()) != 0 {
			t.Errorf("%s: failed restore changed the state", name)
		}
	}
}

func BenchmarkApplyAppCreate(b *testing.B) {
	f := New(nil)
	for i := 0; i < b.N; i++ {
		data, _ := Encode(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp(fmt.Sprintf("/a%d", i), v1Time)})
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
	}
}

// TestAppTotals: every app write keeps the count of apps and the sum of
// their instances (the API's capacity check reads them instead of every
// app), and a restore recounts them, also from a snapshot taken before
// the totals existed.
func TestAppTotals(t *testing.T) {
	a := newApplier(t)
	totals := func(f *FSM) AppTotals {
		t.Helper()
		got, err := f.State().Snapshot().AppTotals()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	withInstances := func(app *v1.App, n int32) *v1.App { app.Instances = proto.Int32(n); return app }
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: withInstances(testApp("/a", v1Time), 3)})
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: withInstances(testApp("/b", v1Time), 2)})
	// A refused create changes nothing.
	if res := a.apply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: withInstances(testApp("/b", v2Time), 7)}); res.Err == nil {
		t.Fatal("second create of /b applied")
	}
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{App: withInstances(testApp("/a", v2Time), 5)})
	if got := totals(a.f); got != (AppTotals{Apps: 2, Instances: 7}) {
		t.Fatalf("after creates and an update: %+v, want 2 apps, 7 instances", got)
	}
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_DELETE, &v1.AppDeleteCommand{AppId: "/b"})
	if got := totals(a.f); got != (AppTotals{Apps: 1, Instances: 5}) {
		t.Fatalf("after a delete: %+v, want 1 app, 5 instances", got)
	}

	// A snapshot without the totals (as older servers wrote them).
	tx := a.f.State().write()
	if _, err := tx.DeleteAll(tableMeta, "id", metaAppTotals); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var out sink
	if err := snap.Persist(&out); err != nil {
		t.Fatal(err)
	}
	g := New(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(out.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := totals(g); got != (AppTotals{Apps: 1, Instances: 5}) {
		t.Fatalf("after a restore: %+v, want 1 app, 5 instances", got)
	}
}

// The store keeps the message decoded from the entry (putInstance does not
// copy it again): it must share nothing with the entry's bytes, and a later
// write, or an app delete that decommissions it, must leave a stored
// message that a reader already holds as it was (readers share them).
func TestStoredInstancesAreImmutable(t *testing.T) {
	a := newApplier(t)
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp("/db", v1Time)})
	data, err := Encode(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{
		PutInstances: []*v1.Instance{residentInstance("db.instance-1", "/db", "agent-1", "db#data#1")}})
	if err != nil {
		t.Fatal(err)
	}
	a.index++
	if res := a.f.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: data}).(*ApplyResult); res.Err != nil {
		t.Fatal(res.Err)
	}
	for i := range data {
		data[i] = 'x' // raft may reuse or drop the entry's buffer
	}
	held := a.f.State().Snapshot()
	first, err := held.Instance("db.instance-1")
	if err != nil || first == nil {
		t.Fatalf("instance after the plan: %v, %v", first, err)
	}
	want := proto.Clone(first).(*v1.Instance)
	if first.GetId() != "db.instance-1" || first.GetTask().GetId() != "db.instance-1._app.1" || first.GetModifyIndex() != a.index {
		t.Fatalf("stored instance %v: id, task id or modify index not as written at %d", first, a.index)
	}

	next := proto.Clone(first).(*v1.Instance)
	next.Goal = v1.Goal_GOAL_STOPPED
	next.Task.State = "TASK_KILLED"
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{next}})
	second, _ := a.f.State().Snapshot().Instance("db.instance-1")
	if second.GetGoal() != v1.Goal_GOAL_STOPPED || second == first {
		t.Fatalf("after the second write the store holds %v, want a new message with goal stopped", second)
	}
	wantSecond := proto.Clone(second).(*v1.Instance)
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_DELETE, &v1.AppDeleteCommand{AppId: "/db"})
	if got, _ := a.f.State().Snapshot().Instance("db.instance-1"); got.GetGoal() != v1.Goal_GOAL_DECOMMISSIONED {
		t.Fatalf("after the app delete the store holds %v, want it decommissioned", got)
	}
	for _, held := range []struct{ got, want *v1.Instance }{{first, want}, {second, wantSecond}} {
		if !proto.Equal(held.got, held.want) {
			t.Fatalf("a message a reader held changed under it:\n got %v\nwant %v", held.got, held.want)
		}
	}
}
