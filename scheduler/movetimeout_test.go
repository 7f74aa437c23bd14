package scheduler

import (
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// withHealthCheck gives the app a leader-run HTTP health check: in the
// harness nothing probes it, so a task is healthy only when a test says so.
func withHealthCheck(a *v1.App) {
	a.HealthChecks = []*v1.HealthCheck{{Protocol: proto.String("HTTP"), PortIndex: proto.Int32(0),
		GracePeriodSeconds: proto.Int32(30), IntervalSeconds: proto.Int32(10), TimeoutSeconds: proto.Int32(5), MaxConsecutiveFailures: proto.Int32(3)}}
}

// migrateToLaunch runs a migration of the harness' instance until its new
// task runs on the new berth (never healthy: nothing reports it).
func migrateToLaunch(t *testing.T, h *harness, app *v1.App, inst *v1.Instance) {
	t.Helper()
	h.putBackup(migrateRecord(app, inst, "m1", h.now))
	h.settle()
	h.finishTask(inst.GetId()+"._backup.m1", mesos.TASK_FINISHED)
	h.deliver()
	h.advance(time.Second)
	h.settle()
	r := h.backupRecord("m1-restore")
	if r.GetState() != v1.BackupState_BACKUP_STATE_RUNNING {
		t.Fatalf("restore not running: %v", r)
	}
	h.finishTask(r.GetTaskId(), mesos.TASK_FINISHED)
	h.deliver()
	h.settle()
	got := h.only("/pg")
	if got.GetMove().GetStep() != stepHealthy || got.GetTask().GetState() != stRunning || got.GetReservation().GetEpoch() != 2 ||
		got.GetMove().GetHealthyBy() == nil {
		t.Fatalf("new task not running on the new berth: %v", got)
	}
}

// moveEvents are the messages of the instance_move_events so far.
func (h *harness) moveEvents() string {
	var b strings.Builder
	for _, e := range h.events {
		if e.GetType() == "instance_move_event" {
			b.WriteString(e.GetMessage() + "\n")
		}
	}
	return b.String()
}

// A migration whose new task is never healthy is abandoned at the app's
// moveTimeout: the new task is killed, the instance runs again on its old
// berth (same volume, epoch 1), the new berth is destroyed once and its
// epoch never reused, and the events and the move record say why. At no
// moment do two tasks of the instance run (the harness checks it after
// every decision).
func TestMoveNotHealthyInTimeGoesBackToOldBerth(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b", MoveTimeout: proto.String("5m")}, withHealthCheck)
	from := inst.GetReservation().GetAgentId()
	to := otherAgent(from)
	oldPID := inst.GetReservation().GetVolumes()[0].GetPersistenceId()
	migrateToLaunch(t, h, app, inst)
	newPID := h.only("/pg").GetReservation().GetVolumes()[0].GetPersistenceId()
	newTask := h.only("/pg").GetTask().GetId()

	h.advance(4 * time.Minute)
	h.settle()
	if got := h.only("/pg"); got.GetMove().GetStep() != stepHealthy || got.GetTask().GetId() != newTask {
		t.Fatalf("abandoned before the deadline: %v", got.GetMove())
	}
	h.advance(2 * time.Minute)
	h.tick()
	got := h.only("/pg")
	if got.GetMove().GetStep() != stepAbandon || !strings.Contains(got.GetMove().GetError(), "not healthy within 5m0s") {
		t.Fatalf("move past its deadline: %v", got.GetMove())
	}
	if h.mem.kills[newTask].reason == "" {
		t.Fatalf("the new task %s is not being killed", newTask)
	}
	h.deliver()
	h.settle()
	h.advance(time.Minute)
	h.settle()
	got = h.only("/pg")
	m := got.GetMove()
	if got.GetReservation().GetAgentId() != from || got.GetReservation().GetEpoch() != 1 || got.GetMaxEpoch() != 2 ||
		got.GetReservation().GetVolumes()[0].GetPersistenceId() != oldPID || got.GetTask().GetState() != stRunning ||
		got.GetTask().GetAgentId() != from {
		t.Fatalf("not back on the old berth: %v", got)
	}
	if m.GetStep() != stepFailed || m.GetAbandonedEpoch() != 2 || m.GetPrevious() != nil ||
		!strings.Contains(m.GetError(), "back to the old berth on agent "+from) {
		t.Fatalf("move record: %v", m)
	}
	if d := masterLogHas(h.master, "DESTROY "+newPID); len(d) != 1 {
		t.Fatalf("new berth destroyed %d times: %v", len(d), h.master.log)
	}
	if d := masterLogHas(h.master, "DESTROY "+oldPID); len(d) != 0 {
		t.Fatalf("old berth destroyed: %v", d)
	}
	if left := h.master.agents[to].res; len(left) != 0 {
		t.Fatalf("new berth left: %v", h.master.reservations())
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 1 || !strings.HasPrefix(live[0], from+"/") {
		t.Fatalf("live tasks %v", live)
	}
	if nextEpoch(got) != 3 {
		t.Fatalf("next epoch %d, want 3", nextEpoch(got))
	}
	if ev := h.moveEvents(); !strings.Contains(ev, "migrate abandoning: the task on the new berth (agent "+to+", epoch 2) was not healthy within 5m0s") ||
		!strings.Contains(ev, "migrate failed:") {
		t.Fatalf("move events:\n%s", ev)
	}
}

// The same abandon with a leader failover at each of its steps: after the
// deadline is committed, after "abandoning" is committed but before the
// kill reaches the master (a crash between commit and send), and after the
// new task's end before the switch back. Each new leader carries on from
// the replicated move.
func TestAbandonedMoveResumesAfterFailoverAtEachStep(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b", MoveTimeout: proto.String("5m")}, withHealthCheck)
	from := inst.GetReservation().GetAgentId()
	oldPID := inst.GetReservation().GetVolumes()[0].GetPersistenceId()
	migrateToLaunch(t, h, app, inst)
	newPID := h.only("/pg").GetReservation().GetVolumes()[0].GetPersistenceId()
	newTask := h.only("/pg").GetTask().GetId()
	deadline := h.only("/pg").GetMove().GetHealthyBy().AsTime()

	h.restart() // the deadline is in the replicated move
	h.settle()
	if got := h.only("/pg").GetMove(); !got.GetHealthyBy().AsTime().Equal(deadline) || got.GetStep() != stepHealthy {
		t.Fatalf("after a failover: %v", got)
	}
	h.advance(6 * time.Minute)
	h.dropCalls = true // the leader commits "abandoning" and dies before its kill is sent
	h.tick()
	if got := h.only("/pg"); got.GetMove().GetStep() != stepAbandon || got.GetTask().GetState() != stRunning {
		t.Fatalf("abandon not committed: %v", got)
	}
	h.restart()
	h.settle() // the new leader kills the new task, then goes back
	h.restart()
	h.advance(time.Minute)
	h.settle()
	got := h.only("/pg")
	if got.GetReservation().GetAgentId() != from || got.GetReservation().GetEpoch() != 1 || got.GetTask().GetState() != stRunning ||
		got.GetMove().GetStep() != stepFailed {
		t.Fatalf("after the abandon with failovers: %v", got)
	}
	if st := h.master.agents[otherAgent(from)].tasks[newTask].state; st != mesos.TASK_KILLED {
		t.Fatalf("new task %s ended %s, want killed", newTask, st)
	}
	if d := masterLogHas(h.master, "DESTROY "+newPID); len(d) != 1 {
		t.Fatalf("new berth destroyed %d times: %v", len(d), h.master.log)
	}
	if d := masterLogHas(h.master, "DESTROY "+oldPID); len(d) != 0 {
		t.Fatalf("old berth destroyed: %v", d)
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 1 || !strings.HasPrefix(live[0], from+"/") {
		t.Fatalf("live tasks %v", live)
	}
}

// The new task's end is learned by the new leader's reconciliation: the
// leader dies after the kill reached the master, before the status came.
func TestAbandonedMoveKillLearnedByReconciliation(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b", MoveTimeout: proto.String("5m")}, withHealthCheck)
	from := inst.GetReservation().GetAgentId()
	migrateToLaunch(t, h, app, inst)
	h.advance(6 * time.Minute)
	h.tick() // abandoning, kill sent
	h.restart()
	h.settle()
	h.advance(time.Minute)
	h.settle()
	if got := h.only("/pg"); got.GetReservation().GetAgentId() != from || got.GetTask().GetState() != stRunning || got.GetMove().GetStep() != stepFailed {
		t.Fatalf("after the failover: %v", got)
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 1 || !strings.HasPrefix(live[0], from+"/") {
		t.Fatalf("live tasks %v", live)
	}
}

// A new task that becomes healthy in time completes the move as before;
// an abandoned move's unreachable new task is waited for (never two live
// copies): the old berth is not launched on until the task is known gone.
func TestAbandonWaitsForUnreachableNewTask(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b", MoveTimeout: proto.String("5m")}, withHealthCheck)
	from := inst.GetReservation().GetAgentId()
	to := otherAgent(from)
	migrateToLaunch(t, h, app, inst)
	h.master.partition(to)
	h.deliver()
	h.advance(6 * time.Minute)
	h.settle()
	h.advance(10 * time.Minute)
	h.settle()
	got := h.only("/pg")
	if got.GetMove().GetStep() != stepAbandon || got.GetReservation().GetAgentId() != to {
		t.Fatalf("abandon with an unreachable new task: %v", got)
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 1 || !strings.HasPrefix(live[0], to+"/") {
		t.Fatalf("launched beside the unreachable task: %v", live)
	}
	if d := masterLogHas(h.master, "DESTROY"); len(d) != 0 {
		t.Fatalf("destroyed while unreachable: %v", d)
	}
	h.master.heal(to)
	h.deliver()
	h.settle()
	h.advance(time.Minute)
	h.settle()
	if got := h.only("/pg"); got.GetReservation().GetAgentId() != from || got.GetTask().GetState() != stRunning || got.GetMove().GetStep() != stepFailed {
		t.Fatalf("after the new agent came back: %v", got)
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 1 || !strings.HasPrefix(live[0], from+"/") {
		t.Fatalf("live tasks %v", live)
	}
}

// A replacement whose new task is never healthy has no old berth to go
// back to: the move ends failed and says so, the instance keeps its new
// berth (the restored data, its only copy: never destroyed) and relaunches
// there; no other replacement starts by itself.
func TestReplacementNotHealthyInTimeStopsAndReports(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b", ReplaceFromBackup: true, MoveTimeout: proto.String("5m")}, withHealthCheck)
	from := inst.GetReservation().GetAgentId()
	b := appmodel.NewBackup(app, inst, "b0", h.now)
	b.State = v1.BackupState_BACKUP_STATE_SUCCEEDED
	h.putBackup(b)
	h.master.markGone(from)
	h.deliver()
	h.settle()
	var restore *v1.Backup
	for _, r := range h.state().Backups {
		if r.GetKind() == v1.BackupKind_BACKUP_KIND_RESTORE {
			restore = r
		}
	}
	h.finishTask(restore.GetTaskId(), mesos.TASK_FINISHED)
	h.deliver()
	h.advance(time.Minute)
	h.settle()
	placed := h.only("/pg")
	if placed.GetMove().GetStep() != stepHealthy || placed.GetReservation().GetAgentId() == from {
		t.Fatalf("replacement not running: %v", placed)
	}
	h.crashLoop(6*time.Minute, placed.GetId())
	got := h.only("/pg")
	m := got.GetMove()
	if m.GetStep() != stepFailed || !strings.Contains(m.GetError(), "a replacement has no old berth to go back to") {
		t.Fatalf("replacement past its deadline: %v", m)
	}
	if got.GetReservation().GetAgentId() != placed.GetReservation().GetAgentId() || got.GetReservation().GetEpoch() != 2 {
		t.Fatalf("the replacement's berth was given up: %v", got)
	}
	if d := masterLogHas(h.master, "DESTROY"); len(d) != 0 {
		t.Fatalf("destroyed: %v", d)
	}
	h.advance(30 * time.Minute)
	h.settle()
	if n := len(h.state().Backups); n != 2 {
		t.Fatalf("another replacement started by itself: %v", h.state().Backups)
	}
	if got := h.only("/pg"); got.GetReservation().GetAgentId() != placed.GetReservation().GetAgentId() || got.GetTask().GetState() != stRunning {
		t.Fatalf("the instance left its berth: %v", got)
	}
}

// crashLoop advances the clock by d in minutes, crashing the instance's
// running task at each step.
func (h *harness) crashLoop(d time.Duration, instanceID string) {
	for ; d > 0; d -= time.Minute {
		if t := h.store.instance(instanceID).GetTask(); t.GetState() == stRunning {
			h.master.crash(t.GetId())
			h.deliver()
		}
		h.advance(time.Minute)
		h.settle()
	}
}

// The default move timeout: twice the slowest health check's window, at
// least 10 minutes; the app's moveTimeout wins.
func TestMoveTimeoutDefault(t *testing.T) {
	a := residentApp("/pg", "v1", 1)
	if d := appmodel.MoveTimeout(a); d != appmodel.DefaultMoveTimeout {
		t.Fatalf("without health checks: %s", d)
	}
	a.HealthChecks = []*v1.HealthCheck{{Protocol: proto.String("HTTP")}} // Marathon's defaults: 15+300+4*60+20 s
	if d := appmodel.MoveTimeout(a); d != 2*575*time.Second {
		t.Fatalf("with Marathon's default health check: %s", d)
	}
	a.Backup = &v1.BackupPolicy{Target: "file:///b", MoveTimeout: proto.String("90s")}
	if d := appmodel.MoveTimeout(a); d != 90*time.Second {
		t.Fatalf("with moveTimeout: %s", d)
	}
}
