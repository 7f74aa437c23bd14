package scheduler

import (
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// takePending removes and returns the statuses the fake master has queued.
func (h *harness) takePending() []mesos.TaskStatus {
	p := h.master.pending
	h.master.pending = nil
	return p
}

// A task that fails by itself is recorded on its instance (Marathon's
// lastTaskFailure) by the very plan that processes its status, and
// reported once in the decision for the leader's log; a repeated status
// (as a new leader receives it again) records nothing new; a kill that was
// asked for is no failure.
func TestTaskFailureRecordedInPlan(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := statelessApp("/web", "v1", 1)
	h.store.putApp(app, "")
	h.settle()
	inst := h.only("/web")
	task := inst.GetTask()
	if want := "/frameworks/fw-1/executors/" + task.GetId() + "/runs/latest"; task.GetSandbox() != want {
		t.Fatalf("task sandbox %q, want %q", task.GetSandbox(), want)
	}
	if task.GetAgentUrl() != "http://host1:5051" {
		t.Fatalf("task agent url %q, want the offer's host on the agent port", task.GetAgentUrl())
	}

	h.master.crash(task.GetId())
	sts := h.takePending()
	sts[0].Message = proto.String("Command exited with status 3")
	sts[0].Reason = mesos.REASON_COMMAND_EXECUTOR_FAILED.Enum()
	d := h.decide(StatusUpdates{Statuses: sts})
	if len(d.TaskFailures) != 1 {
		t.Fatalf("decision reports %d task failures, want 1", len(d.TaskFailures))
	}
	f := d.TaskFailures[0]
	want := &v1.TaskFailure{
		AppId: "/web", InstanceId: inst.GetId(), TaskId: task.GetId(), State: "TASK_FAILED",
		Reason: "REASON_COMMAND_EXECUTOR_FAILED", Message: "Command exited with status 3",
		Timestamp: f.GetTimestamp(), Host: "host1", Version: "v1", AgentId: "A1",
		Sandbox: task.GetSandbox(), AgentUrl: task.GetAgentUrl(),
	}
	if !proto.Equal(f, want) || !f.GetTimestamp().AsTime().Equal(h.now) {
		t.Fatalf("task failure\n got %v\nwant %v (at %v)", f, want, h.now)
	}
	if d.Plan == nil || len(d.Plan.PutInstances) != 1 || !proto.Equal(d.Plan.PutInstances[0].GetLastFailure(), want) {
		t.Fatalf("the plan processing the status does not carry the failure: %v", d.Plan)
	}
	if got := h.store.instance(inst.GetId()).GetLastFailure(); !proto.Equal(got, want) {
		t.Fatalf("committed instance's last failure %v", got)
	}

	// The same status again (a new leader gets unacknowledged updates again).
	if d := h.decide(StatusUpdate{Status: sts[0]}); len(d.TaskFailures) != 0 {
		t.Fatalf("a repeated status recorded %d more failures", len(d.TaskFailures))
	}

	// The instance relaunches; an operator kill then is no failure.
	h.advance(10 * 60e9)
	h.settle()
	inst = h.only("/web")
	if inst.GetTask().GetId() == task.GetId() || !taskLive(inst.GetTask()) {
		t.Fatalf("instance not relaunched: %v", inst.GetTask())
	}
	h.store.putApp(withInstances(app, "v2", 0), "")
	h.tick()
	var failures int
	for _, s := range h.takePending() {
		failures += len(h.decide(StatusUpdate{Status: s}).TaskFailures)
	}
	if failures != 0 {
		t.Fatalf("a requested kill recorded %d failures", failures)
	}
}

// A task killed without anyone asking (e.g. by the agent) is a failure.
func TestUnexpectedKillIsAFailure(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.settle()
	inst := h.only("/pg")
	st := mesos.TASK_KILLED
	src := mesos.SOURCE_AGENT
	d := h.decide(StatusUpdate{Status: mesos.TaskStatus{
		TaskID: mesos.TaskID{Value: inst.GetTask().GetId()}, AgentID: &mesos.AgentID{Value: "A1"},
		State: &st, Source: &src, Message: proto.String("Container was OOM-killed"),
	}})
	if len(d.TaskFailures) != 1 || d.TaskFailures[0].GetState() != "TASK_KILLED" || d.TaskFailures[0].GetMessage() != "Container was OOM-killed" {
		t.Fatalf("unexpected kill: failures %v", d.TaskFailures)
	}
	// A failover keeps it: it is in the committed instance.
	h.restart()
	if f := h.store.instance(inst.GetId()).GetLastFailure(); f.GetTaskId() != inst.GetTask().GetId() {
		t.Fatalf("last failure after failover: %v", f)
	}
}

// A task killed by Berth's own health checks is a failure that says so;
// the failure's time is when the agent saw the task end.
func TestHealthKillIsAFailureThatSaysSo(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(statelessApp("/web", "v1", 1), "")
	h.settle()
	task := h.only("/web").GetTask()
	h.decide(HealthResult{TaskID: task.GetId(), Healthy: false, Kill: true, Message: "HTTP 500"})
	sts := h.takePending()
	if len(sts) != 1 || sts[0].GetState() != mesos.TASK_KILLED {
		t.Fatalf("statuses after the health kill: %v", sts)
	}
	sts[0].Message = proto.String("Command terminated with signal Terminated")
	ended := h.now.Add(-2 * 1e9)
	sts[0].Timestamp = proto.Float64(float64(ended.UnixNano()) / 1e9)
	d := h.decide(StatusUpdate{Status: sts[0]})
	if len(d.TaskFailures) != 1 {
		t.Fatalf("%d failures recorded for a health kill", len(d.TaskFailures))
	}
	f := d.TaskFailures[0]
	if f.GetMessage() != "killed after failing its health checks: Command terminated with signal Terminated" || f.GetState() != "TASK_KILLED" {
		t.Errorf("health kill failure = %v", f)
	}
	if got := f.GetTimestamp().AsTime(); got.Sub(ended).Abs() > 1e6 {
		t.Errorf("failure time %v, want the status time %v", got, ended)
	}
}
