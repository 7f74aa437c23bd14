package scheduler

import (
	"strings"
	"testing"

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
