package rpc

import (
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestMayHaveCheckResults: a follower asks the leader for check results
// only for tasks whose app (current, or the version the task runs) has
// checks the leader runs; a listing of other tasks answers locally.
func TestMayHaveCheckResults(t *testing.T) {
	f := fsm.New(nil)
	var index uint64
	apply := func(typ v1.CommandType, msg proto.Message) {
		t.Helper()
		data, err := fsm.Encode(typ, msg)
		if err != nil {
			t.Fatal(err)
		}
		index++
		if res := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).(*fsm.ApplyResult); res.Err != nil {
			t.Fatalf("apply %s: %v", typ, res.Err)
		}
	}
	app := func(id, version string, hcs []*v1.HealthCheck, ready []*v1.ReadinessCheck) *v1.App {
		return &v1.App{Id: id, Version: proto.String(version), Cmd: proto.String("sleep 1000"), Instances: proto.Int32(0), HealthChecks: hcs, ReadinessChecks: ready}
	}
	http := []*v1.HealthCheck{{Protocol: proto.String("HTTP"), Path: proto.String("/health")}}
	command := []*v1.HealthCheck{{Protocol: proto.String("COMMAND"), Command: &v1.HealthCheckCommand{Value: "true"}}}
	for _, a := range []*v1.App{
		app("/plain", "2026-01-01T00:00:00Z", nil, nil),
		app("/http", "2026-01-01T00:00:00Z", http, nil),
		app("/command", "2026-01-01T00:00:00Z", command, nil),
		app("/ready", "2026-01-01T00:00:00Z", nil, []*v1.ReadinessCheck{{Name: proto.String("ready")}}),
		app("/was-checked", "2026-01-01T00:00:00Z", http, nil),
	} {
		apply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: a})
	}
	// The current version of /was-checked has no check; its task still
	// runs the first one, which the leader checks.
	apply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{App: app("/was-checked", "2026-01-02T00:00:00Z", nil, nil)})
	st := f.State().Snapshot()

	task := func(appID, state, version string) *v1.TaskView {
		return &v1.TaskView{AppId: appID, State: state, Version: version}
	}
	for _, c := range []struct {
		name  string
		tasks []*v1.TaskView
		want  bool
	}{
		{"no tasks", nil, false},
		{"running, no checks", []*v1.TaskView{task("/plain", "TASK_RUNNING", "2026-01-01T00:00:00Z")}, false},
		{"running, Mesos check only", []*v1.TaskView{task("/command", "TASK_RUNNING", "2026-01-01T00:00:00Z")}, false},
		{"running, HTTP check", []*v1.TaskView{task("/plain", "TASK_RUNNING", "2026-01-01T00:00:00Z"), task("/http", "TASK_RUNNING", "2026-01-01T00:00:00Z")}, true},
		{"staging, readiness check", []*v1.TaskView{task("/ready", "TASK_STAGING", "2026-01-01T00:00:00Z")}, true},
		{"ended, HTTP check", []*v1.TaskView{task("/http", "TASK_FAILED", ""), task("/http", "", "")}, false},
		{"running an older version with a check", []*v1.TaskView{task("/was-checked", "TASK_RUNNING", "2026-01-01T00:00:00Z")}, true},
		{"running the current version without", []*v1.TaskView{task("/was-checked", "TASK_RUNNING", "2026-01-02T00:00:00Z")}, false},
		{"app unknown to this store", []*v1.TaskView{task("/gone", "TASK_RUNNING", "2026-01-01T00:00:00Z")}, true},
	} {
		if got := mayHaveCheckResults(st, c.tasks); got != c.want {
			t.Errorf("%s: mayHaveCheckResults = %v, want %v", c.name, got, c.want)
		}
	}
}
