package scheduler

import (
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// movingHarness is twoAgentsOneBerth with a backup target and the binary
// URL copy tasks fetch.
func movingHarness(t *testing.T, policy *v1.BackupPolicy, edits ...func(*v1.App)) (*harness, *v1.App, *v1.Instance) {
	t.Helper()
	h := newHarness(t)
	h.cfg.BinaryURL = testBinaryURL
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.master.addAgent("A2", "host2", 4, 1024, 1000, 31000, 31010, nil)
	app := residentApp("/pg", "v1", 1)
	app.Backup = policy
	for _, edit := range edits {
		edit(app)
	}
	h.store.putApp(app, "")
	h.settle()
	inst := h.only("/pg")
	if inst.GetTask().GetState() != stRunning || inst.GetReservation().GetEpoch() != 1 {
		t.Fatalf("instance not settled: %v", inst)
	}
	return h, app, inst
}

func migrateRecord(app *v1.App, inst *v1.Instance, id string, now time.Time) *v1.Backup {
	b := appmodel.NewBackup(app, inst, id, now)
	b.Migrate, b.MigrationId, b.FromAgent = true, id, inst.GetReservation().GetAgentId()
	return b
}

func otherAgent(id string) string {
	if id == "A1" {
		return "A2"
	}
	return "A1"
}

// A migration: the copy runs on the old berth, then a new berth with the
// next epoch is reserved on the other agent together with the restore
// task; the old berth is neither launched on nor destroyed until the new
// task runs; then it is destroyed once, and one task of the instance runs,
// on the new berth. The old agent disconnecting and returning in the
// middle changes nothing.
func TestMigrationMovesBerthAndDestroysOldOnlyOnceNewRuns(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b"})
	from := inst.GetReservation().GetAgentId()
	to := otherAgent(from)
	oldPID := inst.GetReservation().GetVolumes()[0].GetPersistenceId()
	h.putBackup(migrateRecord(app, inst, "m1", h.now))

	h.tick()
	h.deliver()
	if m := h.only("/pg").GetMove(); m.GetStep() != stepCopy || m.GetKind() != moveMigrate || m.GetStoppedAt() != nil && taskLive(h.only("/pg").GetTask()) {
		t.Fatalf("move after start: %v", m)
	}
	h.advance(time.Second)
	h.tick()
	h.offers()
	copyID := inst.GetId() + "._backup.m1"
	if b := h.backupRecord("m1"); b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING || b.GetAgentId() != from {
		t.Fatalf("migration copy: %v", b)
	}
	h.advance(3 * time.Second)
	h.finishTask(copyID, mesos.TASK_FINISHED)
	h.deliver()
	r := h.backupRecord("m1-restore")
	if r == nil || r.GetState() != v1.BackupState_BACKUP_STATE_PENDING || !r.GetMove() || r.GetSourceBackupId() != "m1" {
		t.Fatalf("restore after the copy: %v", r)
	}
	h.tick()
	mid := h.only("/pg")
	if mid.GetMove().GetStep() != stepPlacing || mid.GetMove().GetPrevious().GetEpoch() != 1 || hasBerth(mid) {
		t.Fatalf("after the switch: %v", mid)
	}
	// The old agent disconnects and comes back mid-migration: its berth is
	// offered again, neither launched on nor destroyed.
	h.master.partition(from)
	h.deliver()
	h.master.heal(from)
	h.deliver()
	d := h.offers()
	restoreID := inst.GetId() + "._restore.m1-restore"
	ti := launchedTask(h, restoreID)
	if ti == nil || ti.AgentID.Value != to {
		t.Fatalf("restore task not launched on %s: %v (%v)", to, ti, acceptOps(d))
	}
	if !strings.Contains(ti.GetCommand().GetValue(), "volume restore --wipe --backup 'm1'") {
		t.Errorf("restore command %q", ti.GetCommand().GetValue())
	}
	if !hasLabel(ti.Labels, LabelEpoch, "2") && !resourcesLabelled(ti.Resources, "2") {
		t.Errorf("restore task's resources not of epoch 2: %v", ti.Resources)
	}
	h.deliver()
	h.settle()
	if d := masterLogHas(h.master, "DESTROY"); len(d) > 0 {
		t.Fatalf("destroyed during the move: %v", d)
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 0 {
		t.Fatalf("app task running during the restore: %v", live)
	}
	if _, ok := h.master.agents[from].res[inst.GetId()+"@1"]; !ok {
		t.Fatalf("old berth gone before the new task runs: %v", h.master.reservations())
	}

	h.advance(5 * time.Second)
	h.finishTask(restoreID, mesos.TASK_FINISHED)
	h.deliver()
	h.settle()
	h.advance(time.Minute)
	h.settle()
	got := h.only("/pg")
	m := got.GetMove()
	if got.GetReservation().GetAgentId() != to || got.GetReservation().GetEpoch() != 2 || got.GetTask().GetState() != stRunning {
		t.Fatalf("after the move: %v", got)
	}
	if m.GetStep() != stepDone || m.GetPrevious() != nil || m.GetRunningAt() == nil || m.GetDowntimeMs() == 0 {
		t.Fatalf("move record: %v", m)
	}
	if d := masterLogHas(h.master, "DESTROY "+oldPID); len(d) != 1 {
		t.Fatalf("old volume destroyed %d times: %v", len(d), h.master.log)
	}
	if left := h.master.agents[from].res; len(left) != 0 {
		t.Fatalf("old berth left: %v", h.master.reservations())
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 1 || !strings.HasPrefix(live[0], to+"/") {
		t.Fatalf("live tasks %v", live)
	}
	if !h.hasEvent("instance_move_event") {
		t.Error("no instance_move_event")
	}
}

func hasLabel(ls *mesos.Labels, k, v string) bool {
	got, ok := labelValue(ls, k)
	return ok && got == v
}

func resourcesLabelled(rs []mesos.Resource, epoch string) bool {
	for _, r := range rs {
		if res := currentReservation(&r); res != nil && hasLabel(res.GetLabels(), LabelEpoch, epoch) {
			return true
		}
	}
	return false
}

// A restore onto another agent that fails goes back to the old berth,
// whose data is intact: the app runs there again, the new berth is
// destroyed, and its epoch is never used again.
func TestFailedMoveGoesBackToOldBerth(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b"})
	from := inst.GetReservation().GetAgentId()
	src := appmodel.NewBackup(app, inst, "b0", h.now)
	src.State = v1.BackupState_BACKUP_STATE_SUCCEEDED
	h.putBackup(src)
	r := appmodel.NewRestore(app, inst, src, "r1", h.now)
	r.Move, r.MigrationId, r.FromAgent, r.ToAgent = true, "r1", from, otherAgent(from)
	h.putBackup(r)
	h.settle()
	restoreID := inst.GetId() + "._restore.r1"
	if ti := launchedTask(h, restoreID); ti == nil || ti.AgentID.Value != otherAgent(from) {
		t.Fatalf("restore not launched on the other agent: %v", h.master.log)
	}
	h.finishTask(restoreID, mesos.TASK_FAILED)
	h.deliver()
	h.settle()
	h.advance(time.Minute)
	h.settle()
	got := h.only("/pg")
	if got.GetReservation().GetAgentId() != from || got.GetReservation().GetEpoch() != 1 || got.GetMaxEpoch() != 2 ||
		got.GetTask().GetState() != stRunning || got.GetMove().GetStep() != stepFailed {
		t.Fatalf("after a failed move: %v", got)
	}
	if left := h.master.agents[otherAgent(from)].res; len(left) != 0 {
		t.Fatalf("new berth of the failed move left: %v", h.master.reservations())
	}
	if d := masterLogHas(h.master, "DESTROY "+inst.GetReservation().GetVolumes()[0].GetPersistenceId()); len(d) != 0 {
		t.Fatalf("old berth destroyed: %v", d)
	}
	if nextEpoch(got) != 3 {
		t.Fatalf("next epoch %d, want 3", nextEpoch(got))
	}
}

// replaceFromBackup: the agent is marked gone; the instance gets a new
// berth on another agent filled from its latest backup, and when the old
// agent returns with its berth that berth is destroyed, never launched.
func TestReplaceFromBackupWhenAgentGone(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b", ReplaceFromBackup: true})
	from := inst.GetReservation().GetAgentId()
	for k, id := range []string{"b-old", "b-new"} {
		b := appmodel.NewBackup(app, inst, id, h.now.Add(time.Duration(k)*time.Minute))
		b.State = v1.BackupState_BACKUP_STATE_SUCCEEDED
		h.putBackup(b)
	}
	h.master.markGone(from)
	h.deliver()
	h.settle()
	var restore *v1.Backup
	for _, b := range h.state().Backups {
		if b.GetKind() == v1.BackupKind_BACKUP_KIND_RESTORE && b.GetInstanceId() == inst.GetId() {
			restore = b
		}
	}
	if restore == nil || !restore.GetReplace() || restore.GetSourceBackupId() != "b-new" || restore.GetState() != v1.BackupState_BACKUP_STATE_RUNNING || restore.GetAgentId() == from {
		t.Fatalf("replacement restore: %v", restore)
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 0 {
		t.Fatalf("app launched before the restore: %v", live)
	}
	h.finishTask(restore.GetTaskId(), mesos.TASK_FINISHED)
	h.deliver()
	h.advance(time.Minute) // the launch backoff of the lost task
	h.settle()
	got := h.only("/pg")
	if got.GetReservation().GetAgentId() == from || got.GetReservation().GetEpoch() != 2 || got.GetTask().GetState() != stRunning ||
		got.GetMove().GetStep() != stepDone || got.GetMove().GetKind() != moveReplace {
		t.Fatalf("after the replacement: %v", got)
	}
}

// A restore onto another agent is placed only on that agent.
func TestRestoreToAgentIsPinned(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b"})
	h.master.addAgent("A3", "host3", 4, 1024, 1000, 31000, 31010, nil)
	src := appmodel.NewBackup(app, inst, "b0", h.now)
	src.State = v1.BackupState_BACKUP_STATE_SUCCEEDED
	h.putBackup(src)
	r := appmodel.NewRestore(app, inst, src, "r1", h.now)
	r.Move, r.MigrationId, r.FromAgent, r.ToAgent = true, "r1", inst.GetReservation().GetAgentId(), "host3"
	h.putBackup(r)
	h.settle()
	if ti := launchedTask(h, inst.GetId()+"._restore.r1"); ti == nil || ti.AgentID.Value != "A3" {
		t.Fatalf("restore not on A3: %v", ti)
	}
}

// Scheduled maintenance on the berth's agent: the instance is migrated
// off it (copy on the old berth, restore on a new berth elsewhere), and
// the agent's inverse offer is accepted once no berth is left there.
func TestMaintenanceMigratesAndThenAcceptsInverseOffer(t *testing.T) {
	h, _, inst := movingHarness(t, nil)
	h.cfg.MigrationTarget = "file:///staging"
	from := inst.GetReservation().GetAgentId()
	start := h.now.Add(24 * time.Hour)
	h.master.agents[from].unavailability = &mesos.Unavailability{Start: mesos.TimeInfo{Nanoseconds: start.UnixNano()}}
	h.advance(time.Minute)
	h.settle()
	// Until the leader has polled the master's agents, it does not know
	// where the instance could go: the task keeps running.
	for _, r := range h.state().Backups {
		if r.GetMigrate() {
			t.Fatalf("a migration started before the agents' states were known: %v", r)
		}
	}
	h.decide(h.agentStates())
	h.advance(time.Second) // the settle ends once instances stop changing: the record is new
	h.settle()
	var b *v1.Backup
	for _, r := range h.state().Backups {
		if r.GetMigrate() && r.GetInstanceId() == inst.GetId() {
			b = r
		}
	}
	if b == nil || b.GetTarget() != "file:///staging" || b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING {
		t.Fatalf("no migration copy running: %v\n%v\n%v", h.state().Backups, h.only("/pg"), h.master.log)
	}
	io := mesos.InverseOffer{OfferID: mesos.OfferID{Value: "io-1"}, FrameworkID: mesos.FrameworkID{Value: "fw-1"},
		AgentID: &mesos.AgentID{Value: from}, Unavailability: *h.master.agents[from].unavailability}
	if d := h.decide(InverseOffers{Offers: []mesos.InverseOffer{io}}); len(d.Calls) != 1 || d.Calls[0].GetDeclineInverseOffers() == nil {
		t.Fatalf("inverse offer not declined while a berth is there: %v", callTypes(d))
	} else if r := d.Calls[0].GetDeclineInverseOffers().GetFilters().GetRefuseSeconds(); r != inverseRefuseMoving.Seconds() {
		t.Fatalf("declined for %vs while the berth is migrating off, want %v", r, inverseRefuseMoving.Seconds())
	}
	// The live copy runs in the task first; then the task stops for the
	// final copy.
	if !b.GetLive() || b.GetContainerId() == "" {
		t.Fatalf("the migration did not start with a live copy: %v", b)
	}
	h.decide(NestedCopyResult{BackupID: b.GetId(), ContainerID: b.GetContainerId(), Succeeded: true})
	h.settle()
	b = h.backupRecord(b.GetId())
	h.finishTask(b.GetTaskId(), mesos.TASK_FINISHED)
	h.deliver()
	h.settle()
	r := h.backupRecord(b.GetId() + "-restore")
	h.finishTask(r.GetTaskId(), mesos.TASK_FINISHED)
	h.deliver()
	h.advance(time.Minute)
	h.settle()
	got := h.only("/pg")
	if got.GetReservation().GetAgentId() == from || got.GetTask().GetState() != stRunning || got.GetMove().GetStep() != stepDone {
		t.Fatalf("not migrated off the maintenance: %v", got)
	}
	if left := h.master.agents[from].res; len(left) != 0 {
		t.Fatalf("berth left on the agent: %v", h.master.reservations())
	}
	io.OfferID.Value = "io-2"
	if d := h.decide(InverseOffers{Offers: []mesos.InverseOffer{io}}); len(d.Calls) != 1 || d.Calls[0].GetAcceptInverseOffers() == nil {
		t.Fatalf("inverse offer of the vacated agent not accepted: %v", callTypes(d))
	}
}

// DRAIN_AGENT kills the task and the agent accepts no launch: without a
// policy the instance waits on its berth (never destroyed); with
// replaceFromBackup it is restored from its latest backup elsewhere.
func TestDrainWaitsOrReplacesFromBackup(t *testing.T) {
	for _, replace := range []bool{false, true} {
		h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b", ReplaceFromBackup: replace})
		from := inst.GetReservation().GetAgentId()
		src := appmodel.NewBackup(app, inst, "b0", h.now)
		src.State = v1.BackupState_BACKUP_STATE_SUCCEEDED
		h.putBackup(src)
		h.master.drain(from, false)
		h.deliver()
		h.advance(time.Minute)
		h.settle()
		h.advance(time.Minute)
		h.settle()
		h.decide(h.agentStates()) // the master's poll says the same as the kill
		got := h.only("/pg")
		if !replace {
			if got.GetReservation().GetAgentId() != from || got.GetMove() != nil || !strings.HasPrefix(got.GetAgentNotice(), noticeDraining) ||
				!strings.Contains(got.GetAgentNotice(), "waits on its intact berth") || !strings.Contains(got.GetAgentNotice(), "does not opt in to backup.replaceFromBackup") {
				t.Fatalf("without the policy: %v", got)
			}
			if d := masterLogHas(h.master, "DESTROY"); len(d) > 0 {
				t.Fatalf("destroyed on drain: %v", d)
			}
			continue
		}
		if got.GetMove().GetKind() != moveReplace || got.GetReservation().GetAgentId() == from {
			t.Fatalf("with replaceFromBackup: %v", got)
		}
	}
}

// Replacement by hand of an instance on an unreachable agent: the new
// berth is filled from the backup; when the agent comes back its task is
// killed (unknown) and its berth destroyed, never launched on.
func TestReplaceUnreachableThenOldAgentReturns(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b"})
	from := inst.GetReservation().GetAgentId()
	src := appmodel.NewBackup(app, inst, "b0", h.now)
	src.State = v1.BackupState_BACKUP_STATE_SUCCEEDED
	h.putBackup(src)
	h.master.partition(from)
	h.deliver()
	h.settle()
	if d := masterLogHas(h.master, "DESTROY"); len(d) > 0 {
		t.Fatalf("destroyed on unreachable: %v", d)
	}
	cur := h.only("/pg")
	r := appmodel.NewRestore(app, cur, src, "r1", h.now)
	r.Move, r.Replace, r.MigrationId, r.FromAgent = true, true, "r1", from
	h.putBackup(r)
	h.settle()
	h.advance(time.Second)
	h.settle()
	restore := h.backupRecord("r1")
	if restore.GetState() != v1.BackupState_BACKUP_STATE_RUNNING || restore.GetAgentId() == from {
		t.Fatalf("replacement restore: %v", restore)
	}
	h.finishTask(restore.GetTaskId(), mesos.TASK_FINISHED)
	h.deliver()
	h.advance(time.Minute)
	h.settle()
	moved := h.only("/pg")
	if moved.GetReservation().GetAgentId() == from || moved.GetTask().GetState() != stRunning || moved.GetMove().GetStep() != stepDone {
		t.Fatalf("after the replacement: %v", moved)
	}
	// The old agent returns with its task and berth.
	h.master.heal(from)
	h.deliver()
	h.advance(time.Minute)
	h.settle()
	h.advance(time.Minute)
	h.settle()
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 1 || strings.HasPrefix(live[0], from+"/") {
		t.Fatalf("live tasks after the old agent returned: %v", live)
	}
	if d := masterLogHas(h.master, "DESTROY "+inst.GetReservation().GetVolumes()[0].GetPersistenceId()); len(d) != 1 {
		t.Fatalf("old berth not destroyed once: %v", h.master.log)
	}
}

// A leader failover at every step of a migration resumes it: the new
// leader finds the move and its records in the replicated state and ends
// with one task on the new berth and the old berth destroyed once.
func TestMigrationResumesAfterFailoverAtEachStep(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b"})
	from := inst.GetReservation().GetAgentId()
	oldPID := inst.GetReservation().GetVolumes()[0].GetPersistenceId()
	h.putBackup(migrateRecord(app, inst, "m1", h.now))
	h.restart() // committed, nothing done yet
	h.settle()
	h.restart() // the copy runs
	h.settle()
	h.finishTask(inst.GetId()+"._backup.m1", mesos.TASK_FINISHED)
	h.restart() // the copy's end is learned by reconciliation
	h.deliver()
	h.settle()
	h.advance(time.Second)
	h.settle()
	if m := h.only("/pg").GetMove(); m.GetStep() != stepRestore {
		t.Fatalf("move after the copy and failovers: %v", m)
	}
	h.restart() // the restore runs on the new berth
	h.settle()
	r := h.backupRecord("m1-restore")
	h.finishTask(r.GetTaskId(), mesos.TASK_FINISHED)
	h.deliver()
	h.restart() // launch
	h.advance(time.Minute)
	h.settle()
	h.restart() // done: the old berth is collected by the new leader
	h.advance(time.Minute)
	h.settle()
	got := h.only("/pg")
	if got.GetReservation().GetAgentId() == from || got.GetMove().GetStep() != stepDone || got.GetTask().GetState() != stRunning {
		t.Fatalf("after the migration with failovers: %v", got)
	}
	if d := masterLogHas(h.master, "DESTROY "+oldPID); len(d) != 1 {
		t.Fatalf("old volume destroyed %d times: %v", len(d), h.master.log)
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 1 {
		t.Fatalf("live tasks %v", live)
	}
}

// The restore task of a move becoming UNREACHABLE is waited for: nothing
// is destroyed, neither berth is launched on, and the move goes on once
// the agent is back.
func TestMoveWaitsForUnreachableRestore(t *testing.T) {
	h, app, inst := movingHarness(t, &v1.BackupPolicy{Target: "file:///b"})
	from := inst.GetReservation().GetAgentId()
	to := otherAgent(from)
	src := appmodel.NewBackup(app, inst, "b0", h.now)
	src.State = v1.BackupState_BACKUP_STATE_SUCCEEDED
	h.putBackup(src)
	r := appmodel.NewRestore(app, inst, src, "r1", h.now)
	r.Move, r.MigrationId, r.FromAgent, r.ToAgent = true, "r1", from, to
	h.putBackup(r)
	h.settle()
	h.master.partition(to)
	h.deliver()
	for k := 0; k < 3; k++ {
		h.advance(10 * time.Minute)
		h.settle()
	}
	if d := masterLogHas(h.master, "DESTROY"); len(d) > 0 {
		t.Fatalf("destroyed while the restore was unreachable: %v", d)
	}
	if got := h.only("/pg"); got.GetMove().GetStep() != stepRestore || got.GetMove().GetPrevious() == nil {
		t.Fatalf("move while unreachable: %v", got.GetMove())
	}
	if live := liveTasksOf(h.master, inst.GetId()); len(live) != 0 {
		t.Fatalf("app launched while its restore is unreachable: %v", live)
	}
	h.master.heal(to)
	h.deliver()
	h.finishTask(inst.GetId()+"._restore.r1", mesos.TASK_FINISHED)
	h.deliver()
	h.advance(time.Minute)
	h.settle()
	if got := h.only("/pg"); got.GetMove().GetStep() != stepDone || got.GetReservation().GetAgentId() != to {
		t.Fatalf("after the agent came back: %v", got)
	}
}

// agentStates is what the leader's poll of the master reports of the
// fake master's agents.
func (h *harness) agentStates() AgentStates {
	in := AgentStates{Agents: map[string]AgentState{}}
	for id, a := range h.master.agents {
		if a.gone {
			continue
		}
		st := AgentState{Maintenance: a.unavailability}
		if a.draining {
			st.Drain, st.Deactivated = "DRAINING", true
		}
		in.Agents[id] = st
	}
	return in
}

// Scheduled maintenance with no other agent the app's constraints allow:
// the instance is not stopped for a migration that could not be placed.
func TestMaintenanceMigrationWaitsForAPlace(t *testing.T) {
	h, _, inst := movingHarness(t, nil)
	h.cfg.MigrationTarget = "file:///staging"
	from := inst.GetReservation().GetAgentId()
	for id, a := range h.master.agents {
		if id != from {
			a.draining = true
		}
	}
	h.master.agents[from].unavailability = &mesos.Unavailability{Start: mesos.TimeInfo{Nanoseconds: h.now.Add(24 * time.Hour).UnixNano()}}
	h.advance(time.Minute)
	h.settle()
	h.decide(h.agentStates())
	h.advance(time.Minute)
	h.settle()
	for _, r := range h.state().Backups {
		if r.GetMigrate() {
			t.Fatalf("a migration started with nowhere to go: %v", r)
		}
	}
	if got := h.only("/pg"); got.GetTask().GetState() != stRunning || got.GetReservation().GetAgentId() != from {
		t.Fatalf("the instance was disturbed: %v", got)
	}
	io := mesos.InverseOffer{OfferID: mesos.OfferID{Value: "io-1"}, FrameworkID: mesos.FrameworkID{Value: "fw-1"},
		AgentID: &mesos.AgentID{Value: from}, Unavailability: *h.master.agents[from].unavailability}
	d := h.decide(InverseOffers{Offers: []mesos.InverseOffer{io}})
	if len(d.Calls) != 1 || d.Calls[0].GetDeclineInverseOffers().GetFilters().GetRefuseSeconds() != inverseRefuse.Seconds() {
		t.Fatalf("inverse offer of an agent nothing can leave: %v", d.Calls)
	}
}
