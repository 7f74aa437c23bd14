package scheduler

import (
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestMixedHealthChecks: an app with a Marathon-level check (HTTP, probed
// by the leader) and a Mesos check (COMMAND) passes the Mesos check to
// Mesos in the TaskInfo, probes only the HTTP one itself, and counts the
// task healthy once both say so and unhealthy as soon as one does not
// (as Marathon: its HealthCheckActor for the one, Mesos status updates for
// the other, docs/docs/health-checks.md).
func TestMixedHealthChecks(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := residentApp("/pg", "v1", 1)
	app.HealthChecks = []*v1.HealthCheck{
		{Protocol: proto.String("HTTP"), Path: proto.String("/health"), PortIndex: proto.Int32(0)},
		{Protocol: proto.String("COMMAND"), Command: &v1.HealthCheckCommand{Value: "pg_isready"}},
	}
	h.store.putApp(app, "")
	h.settle()

	if len(h.master.launched) != 1 {
		t.Fatalf("launched %d tasks", len(h.master.launched))
	}
	hc := h.master.launched[0].HealthCheck
	if hc == nil || hc.Type != mesos.HealthCheck_COMMAND || hc.GetCommand().GetValue() != "pg_isready" {
		t.Fatalf("TaskInfo.health_check = %v, want the COMMAND check", hc)
	}
	targets := healthTargets(h.state())
	if len(targets) != 1 || len(targets[0].checks) != 1 || targets[0].checks[0].GetProtocol() != "HTTP" || targets[0].indexes[0] != 0 {
		t.Fatalf("leader-probed checks = %+v, want only the HTTP one", targets)
	}

	task := h.only("/pg").GetTask()
	mesosHealth := func(healthy bool) {
		st := mesos.TASK_RUNNING
		h.decide(StatusUpdate{Status: mesos.TaskStatus{
			TaskID: mesos.TaskID{Value: task.GetId()}, AgentID: &mesos.AgentID{Value: "A1"}, State: &st, Healthy: &healthy,
		}})
	}
	healthy := func() *bool { return h.only("/pg").GetTask().Healthy }
	mesosHealth(true)
	if healthy() != nil {
		t.Fatalf("healthy with only the Mesos check passed: %v", *healthy())
	}
	h.decide(HealthResult{TaskID: task.GetId(), Healthy: true})
	if hv := healthy(); hv == nil || !*hv {
		t.Fatalf("both checks pass, healthy = %v", hv)
	}
	mesosHealth(false)
	if hv := healthy(); hv == nil || *hv {
		t.Fatalf("Mesos check failing, healthy = %v", hv)
	}
	if !h.hasEvent("health_status_changed_event") {
		t.Fatal("no health_status_changed_event")
	}
	mesosHealth(true)
	h.decide(HealthResult{TaskID: task.GetId(), Healthy: false})
	if hv := healthy(); hv == nil || *hv {
		t.Fatalf("HTTP check failing, healthy = %v", hv)
	}
	h.decide(HealthResult{TaskID: task.GetId(), Healthy: true})
	if hv := healthy(); hv == nil || !*hv {
		t.Fatalf("both pass again, healthy = %v", hv)
	}
}
