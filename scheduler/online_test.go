package scheduler

import (
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func onlinePolicy() *v1.BackupPolicy {
	return &v1.BackupPolicy{Target: "file:///backups", Consistency: strPtr(appmodel.BackupOnline),
		PreCommand: strPtr("touch pause"), PostCommand: strPtr("rm pause")}
}

// An online backup runs in a nested container of the app's running task:
// the record is committed RUNNING with the task, its container and the
// nested container before anything is sent; the task is never killed; a
// new leader follows the same copy (the same target, to launch again and
// wait for); the copy's outcome is committed once.
func TestOnlineBackupRunsInsideTheRunningTask(t *testing.T) {
	h, app, inst := backupHarness(t, onlinePolicy())
	appTask := inst.GetTask().GetId()
	if inst.GetTask().GetContainerId() != fakeContainerID(appTask) {
		t.Fatalf("the task's container id was not recorded from its status: %v", inst.GetTask())
	}
	h.putBackup(appmodel.NewBackup(app, inst, "bk1", h.now))

	// Failover before the leader saw the record: nothing was sent yet.
	h.restart()
	h.tick()
	b := h.backupRecord("bk1")
	if b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING || b.GetAgentId() != "A1" || b.GetParentTaskId() != appTask ||
		b.GetParentContainerId() != fakeContainerID(appTask) || b.GetContainerId() != "berth-backup-bk1" || b.GetTaskId() != "" {
		t.Fatalf("online backup after a tick: %v", b)
	}
	if len(h.mem.kills) != 0 {
		t.Fatalf("an online backup killed a task: %v", h.mem.kills)
	}
	targets := nestedCopyTargets(h.state(), testBinaryURL)
	if len(targets) != 1 {
		t.Fatalf("nested copy targets %v", targets)
	}
	tg := targets[0]
	if tg.AgentID != "A1" || tg.ContainerID.Value != "berth-backup-bk1" || tg.ContainerID.Parent.GetValue() != fakeContainerID(appTask) {
		t.Fatalf("target %+v", tg)
	}
	cmd := tg.Command
	if !strings.Contains(cmd.GetValue(), "./berth volume backup --id 'bk1'") || !strings.Contains(cmd.GetValue(), `--dir "$MESOS_SANDBOX"/../../'data'`) {
		t.Errorf("nested copy command %q", cmd.GetValue())
	}
	if len(cmd.URIs) != 1 || cmd.URIs[0].Value != testBinaryURL {
		t.Errorf("nested copy fetches %v", cmd.URIs)
	}
	env := map[string]string{}
	for _, v := range cmd.GetEnvironment().GetVariables() {
		env[v.Name] = v.GetValue()
	}
	if env["BERTH_BACKUP_PRE_COMMAND"] != "touch pause" || env["BERTH_BACKUP_POST_COMMAND"] != "rm pause" {
		t.Errorf("nested copy env %v", env)
	}

	// Failover while the copy runs: the record and its target are the same.
	h.restart()
	h.settle()
	if got := nestedCopyTargets(h.state(), testBinaryURL); len(got) != 1 || got[0].ContainerID.Value != tg.ContainerID.Value {
		t.Fatalf("targets after failover %v", got)
	}
	if got := h.only("/db/pg").GetTask(); got.GetId() != appTask || got.GetState() != stRunning {
		t.Fatalf("app task during the online copy: %v", got)
	}

	// A stale result (another container) changes nothing; the real one ends it.
	h.decide(NestedCopyResult{BackupID: "bk1", ContainerID: "other", Succeeded: false, Message: "stale"})
	if b := h.backupRecord("bk1"); b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING {
		t.Fatalf("a stale result decided the backup: %v", b)
	}
	h.decide(NestedCopyResult{BackupID: "bk1", ContainerID: "berth-backup-bk1", Succeeded: true})
	b = h.backupRecord("bk1")
	if b.GetState() != v1.BackupState_BACKUP_STATE_SUCCEEDED || b.GetFinishedAt() == nil {
		t.Fatalf("online backup after its copy succeeded: %v", b)
	}
	h.decide(NestedCopyResult{BackupID: "bk1", ContainerID: "berth-backup-bk1", Succeeded: false, Message: "late"})
	if b := h.backupRecord("bk1"); b.GetState() != v1.BackupState_BACKUP_STATE_SUCCEEDED {
		t.Fatalf("a repeated result changed a decided backup: %v", b)
	}
	if len(nestedCopyTargets(h.state(), testBinaryURL)) != 0 {
		t.Fatal("a decided copy is still a target")
	}
	h.settle()
	if got := h.only("/db/pg").GetTask(); got.GetId() != appTask || got.GetState() != stRunning {
		t.Fatalf("app task after the online backup: %v", got)
	}
}

// The app's task dies during an online copy: the copy dies with it, the
// backup fails cleanly, and only then does the app launch again.
func TestOnlineBackupFailsWhenTheTaskDies(t *testing.T) {
	h, app, inst := backupHarness(t, onlinePolicy())
	appTask := inst.GetTask().GetId()
	h.putBackup(appmodel.NewBackup(app, inst, "bk1", h.now))
	h.tick()
	h.master.crash(appTask)
	h.deliver()
	h.tick()
	h.offers()
	if got := h.only("/db/pg").GetTask(); got.GetId() != appTask {
		t.Fatalf("the app relaunched before the online copy was decided: %v", got)
	}
	h.decide(NestedCopyResult{BackupID: "bk1", ContainerID: "berth-backup-bk1", Message: "the copy was killed (its task ended, or the copy was aborted)"})
	if b := h.backupRecord("bk1"); b.GetState() != v1.BackupState_BACKUP_STATE_FAILED || !strings.Contains(b.GetError(), "killed") {
		t.Fatalf("backup after its task died: %v", b)
	}
	h.now = h.now.Add(10 * 60e9)
	h.settle()
	if got := h.only("/db/pg").GetTask(); got.GetId() == appTask || got.GetState() != stRunning {
		t.Fatalf("app after the failed online backup: %v", got)
	}
}

// An online backup of an instance whose task does not run is a copy task
// on the berth (nothing to stop); one whose task is starting waits.
func TestOnlineBackupOfAStoppedInstanceUsesACopyTask(t *testing.T) {
	h, app, inst := backupHarness(t, onlinePolicy())
	appTask := inst.GetTask().GetId()
	h.master.crash(appTask)
	h.deliver()
	h.putBackup(appmodel.NewBackup(app, inst, "bk1", h.now))
	h.tick()
	h.offers()
	b := h.backupRecord("bk1")
	if b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING || b.GetTaskId() != inst.GetId()+"._backup.bk1" || b.GetContainerId() != "" {
		t.Fatalf("online backup of a stopped instance: %v", b)
	}
}

// Removing the app during an online copy fails the backup: the task is
// killed and its nested container dies with it.
func TestOnlineBackupEndsWithTheInstance(t *testing.T) {
	h, app, inst := backupHarness(t, onlinePolicy())
	h.putBackup(appmodel.NewBackup(app, inst, "bk1", h.now))
	h.tick()
	h.store.deleteApp(app.GetId(), "d2")
	h.tick()
	if b := h.backupRecord("bk1"); b.GetState() != v1.BackupState_BACKUP_STATE_FAILED || !strings.Contains(b.GetError(), "removed") {
		t.Fatalf("online backup of a removed instance: %v", b)
	}
}

// A migration starts with a live copy inside the running task (the task
// keeps running), then stops the task for the final stop-consistency copy
// and restores on the new berth as before; a leader failover at each step
// resumes it, and downtime is counted from the stop, not from the start.
func TestMigrationLiveCopyThenStopCopy(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b"})
	appTask := inst.GetTask().GetId()
	from := inst.GetReservation().GetAgentId()
	h.putBackup(appmodel.NewMigration(app, inst, "m1", "", h.now))
	h.restart() // failover before the leader saw the record
	h.tick()
	b := h.backupRecord("m1")
	if !b.GetLive() || b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING || b.GetParentTaskId() != appTask || len(h.mem.kills) != 0 {
		t.Fatalf("live copy: %v (kills %v)", b, h.mem.kills)
	}
	if m := h.only("/pg").GetMove(); m.GetStep() != stepLive || m.GetStoppedAt() != nil {
		t.Fatalf("move during the live copy: %v", m)
	}
	h.restart() // failover during the live copy: the same copy is followed
	h.advance(30 * time.Second)
	h.settle()
	if got := nestedCopyTargets(h.state(), testBinaryURL); len(got) != 1 || got[0].BackupID != "m1" {
		t.Fatalf("targets after failover: %v", got)
	}
	if got := h.only("/pg").GetTask(); got.GetId() != appTask || got.GetState() != stRunning {
		t.Fatalf("the task stopped during the live copy: %v", got)
	}
	stop := h.now
	h.decide(NestedCopyResult{BackupID: "m1", ContainerID: b.GetContainerId(), Succeeded: true})
	b = h.backupRecord("m1")
	if b.GetLive() || b.GetState() != v1.BackupState_BACKUP_STATE_PENDING || b.GetContainerId() != "" {
		t.Fatalf("after the live copy: %v", b)
	}
	if m := h.only("/pg").GetMove(); m.GetStep() != stepCopy {
		t.Fatalf("move after the live copy: %v", m)
	}
	h.restart() // failover between the live copy and the stop copy
	h.tick()
	if h.mem.kills[appTask].reason != killBackup {
		t.Fatalf("the task was not stopped for the final copy: %v", h.mem.kills)
	}
	h.deliver()
	h.advance(time.Second)
	h.tick()
	h.offers()
	copyID := inst.GetId() + "._backup.m1"
	if b := h.backupRecord("m1"); b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING || b.GetTaskId() != copyID || b.GetAgentId() != from {
		t.Fatalf("final copy: %v", b)
	}
	h.advance(2 * time.Second)
	h.finishTask(copyID, mesos.TASK_FINISHED)
	h.deliver()
	h.settle()
	restoreID := inst.GetId() + "._restore.m1-restore"
	if launchedTask(h, restoreID) == nil {
		t.Fatalf("restore not launched: %v", h.master.log)
	}
	h.advance(2 * time.Second)
	h.finishTask(restoreID, mesos.TASK_FINISHED)
	h.deliver()
	h.settle()
	h.advance(time.Minute)
	h.settle()
	got := h.only("/pg")
	m := got.GetMove()
	if got.GetReservation().GetAgentId() == from || got.GetTask().GetState() != stRunning || m.GetStep() != stepDone {
		t.Fatalf("after the migration: %v", got)
	}
	if down := time.Duration(m.GetDowntimeMs()) * time.Millisecond; down <= 0 || down > h.now.Sub(stop) || m.GetStoppedAt().AsTime().Before(stop) {
		t.Fatalf("downtime %v counted from %v, the live copy ended at %v", down, m.GetStoppedAt().AsTime(), stop)
	}
}

// A migration of an instance whose task does not run skips the live copy.
func TestMigrationLiveCopySkippedWithoutATask(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b"})
	h.master.crash(inst.GetTask().GetId())
	h.deliver()
	h.putBackup(appmodel.NewMigration(app, inst, "m1", "", h.now))
	h.tick()
	h.offers()
	if b := h.backupRecord("m1"); b.GetLive() || b.GetContainerId() != "" || b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING ||
		b.GetTaskId() != inst.GetId()+"._backup.m1" {
		t.Fatalf("migration of a stopped instance: %v", b)
	}
}

// A migration of an app whose task runs in a container image skips the
// live copy (a nested container would need the image) and says so; the
// task is stopped for the stop-consistency copy, as without a live copy.
func TestMigrationLiveCopySkippedForAnImageTask(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b"}, func(a *v1.App) {
		a.Container.Type = strPtr("MESOS")
		a.Container.Docker = &v1.Docker{Image: "postgres:16"}
	})
	h.putBackup(appmodel.NewMigration(app, inst, "m1", "", h.now))
	h.tick()
	if b := h.backupRecord("m1"); b.GetLive() || b.GetContainerId() != "" || b.GetState() != v1.BackupState_BACKUP_STATE_PENDING {
		t.Fatalf("migration of an image task: %v", b)
	}
	skipped := false
	for _, e := range h.events {
		skipped = skipped || (e.Type == "instance_move_event" && strings.Contains(e.Message, "live copy skipped: the task runs in container image postgres:16"))
	}
	if !skipped {
		t.Fatalf("no event says why the live copy was skipped: %v", h.eventTypes())
	}
	h.tick()
	if h.mem.kills[inst.GetTask().GetId()].reason != killBackup {
		t.Fatalf("the task was not stopped for the copy: %v", h.mem.kills)
	}
}
