package scheduler

import (
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

const testBinaryURL = "http://berth.example:8080/v1/binary/berth"

func backupHarness(t *testing.T, policy *v1.BackupPolicy) (*harness, *v1.App, *v1.Instance) {
	t.Helper()
	h := newHarness(t)
	h.cfg.BinaryURL = testBinaryURL
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := residentApp("/db/pg", "v1", 1)
	app.Backup = policy
	h.store.putApp(app, "d1")
	h.settle()
	inst := h.only("/db/pg")
	if inst.GetTask().GetState() != stRunning {
		t.Fatalf("instance not running: %v", inst)
	}
	return h, app, inst
}

func (h *harness) backupRecord(id string) *v1.Backup { return h.store.read().Backup(id) }

func (h *harness) putBackup(b *v1.Backup) {
	h.t.Helper()
	h.store.mustApply(v1.CommandType_COMMAND_TYPE_BACKUP_PUT, &v1.BackupPutCommand{Backups: []*v1.Backup{b}})
}

// finishTask ends a fake task with a terminal state, as its executor would.
func (h *harness) finishTask(taskID string, st mesos.TaskState) {
	for _, a := range h.master.agents {
		if t, ok := a.tasks[taskID]; ok {
			h.master.finish(a, t, st)
			return
		}
	}
	h.t.Fatalf("no task %s", taskID)
}

func launchedTask(h *harness, taskID string) *mesos.TaskInfo {
	for i := range h.master.launched {
		if h.master.launched[i].TaskID.Value == taskID {
			return &h.master.launched[i]
		}
	}
	return nil
}

// A backup in stop consistency: the app's task is killed (not counted as a
// failure), the copy task runs on the berth's reservation and volume once
// committed, and only its end lets the app's task launch again on the same
// berth.
func TestBackupStopsCopiesAndStartsAgain(t *testing.T) {
	h, app, inst := backupHarness(t, &v1.BackupPolicy{Target: "file:///backups", PreCommand: strPtr("sync"),
		Env: map[string]*v1.EnvValue{"AWS_ACCESS_KEY_ID": {Kind: &v1.EnvValue_Value{Value: "k"}}}})
	appTask := inst.GetTask().GetId()
	h.putBackup(appmodel.NewBackup(app, inst, "bk1", h.now))

	h.tick()
	if h.mem.kills[appTask].reason != killBackup {
		t.Fatalf("app task not killed for the backup: %v", h.mem.kills)
	}
	h.deliver()
	// The app's task is gone and stays gone while the backup holds the berth.
	h.tick()
	if got := h.only("/db/pg").GetTask(); got.GetId() != appTask || got.GetState() != stKilled {
		t.Fatalf("app task %v", got)
	}
	h.offers()
	b := h.backupRecord("bk1")
	copyID := inst.GetId() + "._backup.bk1"
	if b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING || b.GetTaskId() != copyID || b.GetAgentId() != "A1" {
		t.Fatalf("backup after offer: %v", b)
	}
	ti := launchedTask(h, copyID)
	if ti == nil {
		t.Fatalf("copy task not launched: %v", h.master.log)
	}
	cmd := ti.GetCommand()
	if !strings.Contains(cmd.GetValue(), "./berth volume backup --id 'bk1'") || !strings.Contains(cmd.GetValue(), `--dir "$MESOS_SANDBOX"/'data'`) {
		t.Errorf("copy command %q", cmd.GetValue())
	}
	if len(cmd.URIs) != 1 || cmd.URIs[0].Value != testBinaryURL || !cmd.URIs[0].GetExecutable() {
		t.Errorf("copy task fetches %v", cmd.URIs)
	}
	env := map[string]string{}
	for _, v := range cmd.GetEnvironment().GetVariables() {
		env[v.Name] = v.GetValue()
	}
	if env["BERTH_BACKUP_TARGET"] != "file:///backups" || env["BERTH_BACKUP_PRE_COMMAND"] != "sync" || env["AWS_ACCESS_KEY_ID"] != "k" {
		t.Errorf("copy env %v", env)
	}
	vol := false
	for _, r := range ti.Resources {
		if r.GetDisk().GetPersistence().GetID() == inst.GetReservation().GetVolumes()[0].GetPersistenceId() {
			vol = true
		}
	}
	if !vol {
		t.Errorf("copy task without the berth's volume: %v", ti.Resources)
	}

	// While the copy runs nothing else launches on the berth.
	h.deliver()
	h.tick()
	h.offers()
	if got := h.only("/db/pg").GetTask().GetId(); got != appTask {
		t.Fatalf("app relaunched during the copy: %s", got)
	}

	h.finishTask(copyID, mesos.TASK_FINISHED)
	h.deliver()
	b = h.backupRecord("bk1")
	if b.GetState() != v1.BackupState_BACKUP_STATE_SUCCEEDED || b.GetFinishedAt() == nil {
		t.Fatalf("backup after the copy finished: %v", b)
	}
	if !h.hasEvent("backup_event") {
		t.Error("no backup_event published")
	}
	h.settle()
	after := h.only("/db/pg")
	if after.GetTask().GetState() != stRunning || after.GetTask().GetId() == appTask || after.GetReservation().GetAgentId() != "A1" {
		t.Fatalf("app after the backup: %v", after)
	}
	if after.GetConsecutiveFailures() != 0 || after.GetLaunchNotBefore() != nil {
		t.Errorf("the backup's kill counted as a failure: %v", after)
	}
}

// A leader failover at each step resumes the backup, and a copy task that
// fails lets the app start again with the backup marked failed.
func TestBackupSurvivesFailoverAndFailsCleanly(t *testing.T) {
	h, app, inst := backupHarness(t, &v1.BackupPolicy{Target: "file:///backups"})
	h.putBackup(appmodel.NewBackup(app, inst, "bk1", h.now))
	// The leader commits nothing and dies before its KILL is sent.
	h.dropCalls = true
	h.tick()
	h.restart()
	h.tick()
	h.deliver()
	h.offers()
	copyID := inst.GetId() + "._backup.bk1"
	if b := h.backupRecord("bk1"); b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING {
		t.Fatalf("backup after failover while pending: %v", b)
	}
	// Failover while the copy runs: reconciliation asks for the copy task.
	h.restart()
	if b := h.backupRecord("bk1"); b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING {
		t.Fatalf("backup after failover while running: %v", b)
	}
	asked := false
	for _, c := range h.sent {
		if c.Reconcile != nil {
			for _, rt := range c.Reconcile.Tasks {
				asked = asked || rt.TaskID.Value == copyID
			}
		}
	}
	if !asked {
		t.Fatal("the copy task was not reconciled after failover")
	}
	h.finishTask(copyID, mesos.TASK_FAILED)
	h.deliver()
	b := h.backupRecord("bk1")
	if b.GetState() != v1.BackupState_BACKUP_STATE_FAILED || !strings.Contains(b.GetError(), "TASK_FAILED") {
		t.Fatalf("backup after the copy failed: %v", b)
	}
	h.settle()
	if got := h.only("/db/pg"); got.GetTask().GetState() != stRunning || len(got.GetReservation().GetVolumes()) != 1 {
		t.Fatalf("app after a failed backup: %v", got)
	}
	// A new backup of the same instance may start now.
	h.putBackup(appmodel.NewBackup(app, inst, "bk2", h.now))
}

func TestRestoreRunsRestoreCommand(t *testing.T) {
	h, app, inst := backupHarness(t, &v1.BackupPolicy{Target: "file:///backups"})
	r := appmodel.NewBackup(app, inst, "rs1", h.now)
	r.Kind = v1.BackupKind_BACKUP_KIND_RESTORE
	r.SourceBackupId = "bk1"
	r.ManifestSha256 = strings.Repeat("a", 64)
	h.putBackup(r)
	h.tick()
	h.deliver()
	h.offers()
	copyID := inst.GetId() + "._restore.rs1"
	ti := launchedTask(h, copyID)
	if ti == nil {
		t.Fatalf("restore task not launched: %v", h.master.log)
	}
	if v := ti.GetCommand().GetValue(); !strings.Contains(v, "./berth volume restore --wipe --backup 'bk1' --manifest-sha256 "+r.ManifestSha256) {
		t.Errorf("restore command %q", v)
	}
	h.finishTask(copyID, mesos.TASK_FINISHED)
	h.deliver()
	h.settle()
	if b := h.backupRecord("rs1"); b.GetState() != v1.BackupState_BACKUP_STATE_SUCCEEDED {
		t.Fatalf("restore %v", b)
	}
	if got := h.only("/db/pg"); got.GetTask().GetState() != stRunning {
		t.Fatalf("app after restore: %v", got)
	}
}

func TestScheduledBackups(t *testing.T) {
	h, _, inst := backupHarness(t, &v1.BackupPolicy{Target: "file:///backups", Schedule: strPtr("@every 1h")})
	h.tick()
	if bs := h.store.read().Backups(); len(bs) != 0 {
		t.Fatalf("backup before it is due: %v", bs)
	}
	h.advance(time.Hour)
	h.tick()
	bs := h.store.read().Backups()
	if len(bs) != 1 || !bs[0].GetScheduled() || bs[0].GetInstanceId() != inst.GetId() || bs[0].GetState() != v1.BackupState_BACKUP_STATE_PENDING {
		t.Fatalf("scheduled backups: %v", bs)
	}
	// One at a time: the next tick starts no second one.
	h.advance(2 * time.Hour)
	h.tick()
	if n := len(h.store.read().Backups()); n != 1 {
		t.Fatalf("%d backups while one is pending", n)
	}
	// Without a binary URL a backup fails with a message instead of waiting.
	h.cfg.BinaryURL = ""
	h.deliver()
	h.offers()
	if b := h.store.read().Backup(bs[0].GetId()); b.GetState() != v1.BackupState_BACKUP_STATE_FAILED || !strings.Contains(b.GetError(), "binary") {
		t.Fatalf("backup without a binary URL: %v", b)
	}
}

// runningBackup is a harness whose one instance has backup bk1 running.
func runningBackup(t *testing.T) (*harness, string) {
	t.Helper()
	h, app, inst := backupHarness(t, &v1.BackupPolicy{Target: "file:///backups"})
	h.putBackup(appmodel.NewBackup(app, inst, "bk1", h.now))
	h.tick()
	h.deliver()
	h.offers()
	return h, inst.GetId() + "._backup.bk1"
}

// Wiping an instance during its backup stops the copy first; its volume is
// destroyed only once the copy released it, and the backup ends failed.
func TestWipeDuringBackupStopsTheCopyFirst(t *testing.T) {
	h, copyID := runningBackup(t)
	if h.backupRecord("bk1").GetState() != v1.BackupState_BACKUP_STATE_RUNNING {
		t.Fatalf("backup not running: %v", h.backupRecord("bk1"))
	}
	wiped := h.only("/db/pg")
	wiped.Goal = v1.Goal_GOAL_DECOMMISSIONED
	h.store.putInstance(wiped)
	h.tick()
	if _, ok := h.mem.kills[copyID]; !ok {
		t.Fatalf("copy task not killed after the wipe: %v", h.mem.kills)
	}
	// The fake master checks that no DESTROY touches a volume in use.
	h.deliver()
	h.settle()
	if b := h.backupRecord("bk1"); b.GetState() != v1.BackupState_BACKUP_STATE_FAILED {
		t.Fatalf("backup after the wipe: %v", b)
	}
}

// A copy task that reports running for a record that already ended (a
// leader failed it) is killed: it must not hold the berth's volume.
func TestStrayCopyTaskIsKilled(t *testing.T) {
	h, copyID := runningBackup(t)
	ended := h.backupRecord("bk1")
	ended.State = v1.BackupState_BACKUP_STATE_FAILED
	h.store.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutBackups: []*v1.Backup{ended}})
	h.restart() // reconciliation reports the copy task running
	if _, ok := h.mem.kills[copyID]; !ok {
		t.Fatalf("stray copy task not killed: %v", h.mem.kills)
	}
	h.deliver()
	h.settle()
	if got := h.only("/db/pg"); got.GetTask().GetState() != stRunning {
		t.Fatalf("app after the stray copy was killed: %v", got)
	}
}
