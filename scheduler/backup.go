package scheduler

import (
	"fmt"
	"sort"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Backups and restores of a berth's volume, driven as committed intents
// (invariant 1): a backup record is PENDING once committed; the leader
// stops the app's task (stop consistency) and, on the next offer of the
// berth's reserved resources and volume, commits the copy task (RUNNING
// with its task id) before it LAUNCHes it there. The copy task's end
// commits the outcome; only then may the app's task launch again. A new
// leader finds the records in the state: a PENDING one proceeds, a RUNNING
// one is reconciled like any task and ends SUCCEEDED or FAILED. Nothing
// here destroys a volume (invariant 7).

// BackupReader is implemented by a StateReader that holds backup records
// (*fsm.Snapshot does). A reader without it has no backups.
type BackupReader interface {
	Backups() ([]*v1.Backup, error)
}

// Task id markers of copy tasks: "<instance id>._backup.<backup id>" and
// "<instance id>._restore.<restore id>".
const (
	backupTaskMarker  = "._backup."
	restoreTaskMarker = "._restore."
)

// killBackup is the kill reason of an app task stopped for a copy.
const killBackup = "backup"

func copyTaskID(b *v1.Backup) string {
	if b.GetKind() == v1.BackupKind_BACKUP_KIND_RESTORE {
		return b.GetInstanceId() + restoreTaskMarker + b.GetId()
	}
	return b.GetInstanceId() + backupTaskMarker + b.GetId()
}

// backupIDOfTask returns the backup id a copy task id was built from, or "".
func backupIDOfTask(taskID string) string {
	for _, m := range []string{backupTaskMarker, restoreTaskMarker} {
		if i := strings.LastIndex(taskID, m); i >= 0 {
			return taskID[i+len(m):]
		}
	}
	return ""
}

func backupActive(b *v1.Backup) bool {
	return b != nil && (b.GetState() == v1.BackupState_BACKUP_STATE_PENDING || b.GetState() == v1.BackupState_BACKUP_STATE_RUNNING)
}

// loadBackups reads the backup records of r into the state.
func (s *State) loadBackups(r StateReader) error {
	s.Backups = map[string]*v1.Backup{}
	br, ok := r.(BackupReader)
	if !ok {
		return nil
	}
	bs, err := br.Backups()
	if err != nil {
		return fmt.Errorf("read backups: %w", err)
	}
	for _, b := range bs {
		s.Backups[b.GetId()] = b
	}
	return nil
}

// backup returns the current (possibly edited) record.
func (p *planner) backup(id string) *v1.Backup {
	if b, ok := p.bput[id]; ok {
		return b
	}
	return p.st.Backups[id]
}

// editBackup returns a working copy of a record that will be committed.
func (p *planner) editBackup(id string) *v1.Backup {
	if b, ok := p.bput[id]; ok {
		return b
	}
	orig := p.st.Backups[id]
	if orig == nil {
		return nil
	}
	c := proto.Clone(orig).(*v1.Backup)
	p.bput[id] = c
	return c
}

// sortedBackupIDs lists the current records' ids in order.
func (p *planner) sortedBackupIDs() []string {
	ids := make([]string, 0, len(p.st.Backups)+len(p.bput))
	for id := range p.st.Backups {
		ids = append(ids, id)
	}
	for id := range p.bput {
		if _, ok := p.st.Backups[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// activeOp returns the backup or restore in progress on an instance, or nil.
func (p *planner) activeOp(instanceID string) *v1.Backup {
	if p.opByInst == nil {
		p.opByInst = map[string]string{}
		for _, id := range p.sortedBackupIDs() {
			if b := p.backup(id); backupActive(b) {
				p.opByInst[b.GetInstanceId()] = id
			}
		}
	}
	if id, ok := p.opByInst[instanceID]; ok {
		if b := p.backup(id); backupActive(b) {
			return b
		}
	}
	return nil
}

// putBackupRecord adds or replaces a record in the plan.
func (p *planner) putBackupRecord(b *v1.Backup) {
	p.bput[b.GetId()] = b
	if backupActive(b) {
		p.activeOp("") // build the index first
		p.opByInst[b.GetInstanceId()] = b.GetId()
	}
	p.backupEvent(b, "")
}

func (p *planner) backupEvent(b *v1.Backup, msg string) {
	if msg == "" {
		msg = kindName(b) + " " + strings.ToLower(strings.TrimPrefix(b.GetState().String(), "BACKUP_STATE_"))
		if b.GetError() != "" {
			msg += ": " + b.GetError()
		}
	}
	p.event(&v1.Event{Type: "backup_event", AppId: b.GetAppId(), InstanceId: b.GetInstanceId(), TaskId: b.GetTaskId(),
		AgentId: b.GetAgentId(), Message: msg, Backup: proto.Clone(b).(*v1.Backup)})
}

func kindName(b *v1.Backup) string {
	if b.GetKind() == v1.BackupKind_BACKUP_KIND_RESTORE {
		return "restore"
	}
	return "backup"
}

// failBackup ends a record as FAILED.
func (p *planner) failBackup(id, reason string) {
	e := p.editBackup(id)
	if e == nil {
		return
	}
	e.State = v1.BackupState_BACKUP_STATE_FAILED
	e.Error = reason
	e.FinishedAt = p.ts()
	p.backupEvent(e, "")
	p.moveCopyEnded(e)
}

// tickBackups moves backups and restores along: it fails those whose
// berth went away, stops the app tasks that stand in a copy's way, and
// starts the backups the apps' schedules call for.
func (p *planner) tickBackups() {
	for _, id := range p.sortedBackupIDs() {
		b := p.backup(id)
		if !backupActive(b) {
			continue
		}
		i := p.inst(b.GetInstanceId())
		if p.tickMove(b, i) || p.tickOnline(b, i) {
			continue
		}
		if i == nil || goalOf(i) == v1.Goal_GOAL_DECOMMISSIONED || !hasBerth(i) {
			if b.GetState() == v1.BackupState_BACKUP_STATE_RUNNING {
				// The copy may still hold the volume: stop it first.
				p.kill(&v1.Task{Id: b.GetTaskId(), AgentId: b.GetAgentId()}, killGoal, 0)
				continue
			}
			p.failBackup(id, "the instance has no berth any more")
			continue
		}
		if b.GetState() == v1.BackupState_BACKUP_STATE_PENDING && taskLive(i.GetTask()) {
			p.kill(i.GetTask(), killBackup, killGrace(p.st.Apps[i.GetAppId()]))
		}
	}
	p.scheduleBackups()
	p.tickAutoMoves()
}

// scheduleBackups creates the backups that apps' schedules make due: an
// instance's next backup is due at the schedule's next time after its
// last backup (whatever its outcome) or, without one, after the instance
// was created.
func (p *planner) scheduleBackups() {
	var last map[string]*v1.Backup
	for _, appID := range p.st.sortedAppIDs() {
		a := p.st.Apps[appID]
		sched := appmodel.BackupSchedule(a)
		if sched == nil || !appmodel.HasBackup(a) {
			continue
		}
		if last == nil {
			last = map[string]*v1.Backup{}
			for _, id := range p.sortedBackupIDs() {
				b := p.backup(id)
				if b.GetKind() != v1.BackupKind_BACKUP_KIND_BACKUP {
					continue
				}
				if l := last[b.GetInstanceId()]; l == nil || b.GetCreatedAt().AsTime().After(l.GetCreatedAt().AsTime()) {
					last[b.GetInstanceId()] = b
				}
			}
		}
		for iid, i := range p.instances() {
			if i.GetAppId() != appID || resState(i) != v1.ReservationState_RESERVATION_STATE_RESERVED ||
				goalOf(i) == v1.Goal_GOAL_DECOMMISSIONED || p.activeOp(iid) != nil {
				continue
			}
			from := i.GetCreatedAt().AsTime()
			if l := last[iid]; l != nil {
				from = l.GetCreatedAt().AsTime()
			}
			if next := sched.Next(from); next.IsZero() || next.After(p.now) {
				continue
			}
			b := appmodel.NewBackup(a, i, p.cfg.NewID(), p.now)
			b.Scheduled = true
			p.putBackupRecord(b)
		}
	}
}

// launchCopy commits a PENDING record's copy task and returns its LAUNCH
// on the berth's resources (the reservation and its volume).
func (p *planner) launchCopy(b *v1.Backup, a *v1.App, i *v1.Instance, o *mesos.Offer, resources []mesos.Resource) (mesos.Offer_Operation, bool) {
	if p.cfg.BinaryURL == "" {
		p.failBackup(b.GetId(), "the scheduler has no URL of the berth binary to fetch (server --advertise-api)")
		return mesos.Offer_Operation{}, false
	}
	taskID := copyTaskID(b)
	ti := copyTaskInfo(a, b, taskID, o, resources, p.cfg.BinaryURL)
	e := p.editBackup(b.GetId())
	if e == nil { // created in this decision
		e = b
	}
	e.State = v1.BackupState_BACKUP_STATE_RUNNING
	e.TaskId = taskID
	e.AgentId = o.AgentID.Value
	e.StartedAt = p.ts()
	p.backupEvent(e, "")
	return calls.OpLaunch(ti), true
}

// copyTaskInfo is the copy task: the berth binary, fetched from a Berth
// server, in its volume-copy mode, on the berth's reserved resources with
// the volume mounted at its container path as for the app's task.
func copyTaskInfo(a *v1.App, b *v1.Backup, taskID string, o *mesos.Offer, resources []mesos.Resource, binaryURL string) mesos.TaskInfo {
	return mesos.TaskInfo{
		Name:      taskName(a.GetId()) + "-" + kindName(b),
		TaskID:    mesos.TaskID{Value: taskID},
		AgentID:   o.AgentID,
		Resources: resources,
		Command:   copyCommand(a, b, `"$MESOS_SANDBOX"/`+shellQuote(b.GetContainerPath()), binaryURL),
	}
}

// copyCommand is the berth binary, fetched from a Berth server into the
// sandbox, in its volume-copy mode on the volume at dir (a shell word).
func copyCommand(a *v1.App, b *v1.Backup, dir, binaryURL string) *mesos.CommandInfo {
	pol := a.GetBackup()
	env := map[string]string{
		"BERTH_BACKUP_ID":     b.GetId(),
		"BERTH_BACKUP_TARGET": b.GetTarget(),
		"BERTH_APP_ID":        b.GetAppId(),
		"BERTH_INSTANCE_ID":   b.GetInstanceId(),
	}
	args := []string{"./berth", "volume"}
	if b.GetKind() == v1.BackupKind_BACKUP_KIND_RESTORE {
		args = append(args, "restore", "--wipe", "--backup", shellQuote(b.GetSourceBackupId()))
		if b.GetManifestSha256() != "" {
			args = append(args, "--manifest-sha256", b.GetManifestSha256())
		}
	} else {
		args = append(args, "backup", "--id", shellQuote(b.GetId()), "--app", shellQuote(b.GetAppId()), "--instance", shellQuote(b.GetInstanceId()))
		if pol.GetPreCommand() != "" {
			env["BERTH_BACKUP_PRE_COMMAND"] = pol.GetPreCommand()
		}
		if pol.GetPostCommand() != "" {
			env["BERTH_BACKUP_POST_COMMAND"] = pol.GetPostCommand()
		}
	}
	args = append(args, "--dir", dir)
	shell := true
	cmd := &mesos.CommandInfo{
		Shell: &shell,
		Value: strPtr("exec " + strings.Join(args, " ")),
		URIs:  []mesos.CommandInfo_URI{{Value: binaryURL, Executable: boolPtr(true), OutputFile: strPtr("berth"), Cache: boolPtr(false)}},
	}
	secrets := map[string]string{}
	splitEnv(pol.GetEnv(), a.GetSecrets(), env, secrets)
	cmd.Environment = &mesos.Environment{Variables: mesosEnv(env, secrets)}
	if a.User != nil && *a.User != "" {
		cmd.User = strPtr(*a.User)
	}
	return cmd
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// copyRunning is true while a copy task may hold the instance's volume.
func (p *planner) copyRunning(instanceID string) bool {
	op := p.activeOp(instanceID)
	return op != nil && op.GetState() == v1.BackupState_BACKUP_STATE_RUNNING
}

// opByTask returns the current record whose copy task is taskID, or nil.
func (p *planner) opByTask(taskID string) *v1.Backup {
	id := backupIDOfTask(taskID)
	if id == "" {
		return nil
	}
	if b := p.backup(id); b != nil && b.GetTaskId() == taskID {
		return b
	}
	return nil
}

// copyStatus records a status of a copy task. An UNREACHABLE copy is
// waited for: it may still hold the volume, and only its end frees the
// berth for the app's task.
func (p *planner) copyStatus(b *v1.Backup, s mesos.TaskStatus) {
	state := s.GetState().String()
	if !backupActive(b) {
		if isLiveState(state) && state != stUnreachable {
			// A copy outliving its record (a leader failed it): stop it.
			p.kill(&v1.Task{Id: b.GetTaskId(), AgentId: b.GetAgentId()}, killUnknown, 0)
		}
		return
	}
	if state == stRunning || state == stFinished {
		p.moveBerthConfirmed(b, s)
	}
	if isLiveState(state) {
		return
	}
	delete(p.st.Mem.kills, b.GetTaskId())
	e := p.editBackup(b.GetId())
	if e == nil {
		e = b
	}
	e.FinishedAt = p.ts()
	if state == stFinished {
		e.State = v1.BackupState_BACKUP_STATE_SUCCEEDED
	} else {
		e.State = v1.BackupState_BACKUP_STATE_FAILED
		e.Error = fmt.Sprintf("copy task ended %s: %s", state, s.GetMessage())
	}
	p.backupEvent(e, "")
	p.moveCopyEnded(e)
}

// copyTasks lists the copy tasks in progress (task id → agent id), for
// reconciliation.
func (p *planner) copyTasks(into map[string]string) {
	for _, id := range p.sortedBackupIDs() {
		if b := p.backup(id); b.GetState() == v1.BackupState_BACKUP_STATE_RUNNING && b.GetTaskId() != "" {
			into[b.GetTaskId()] = b.GetAgentId()
		}
	}
}

// finishBackups adds the edited records to the plan, sorted.
func (p *planner) finishBackups(plan *v1.SchedulerPlanCommand) {
	ids := make([]string, 0, len(p.bput))
	for id := range p.bput {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		plan.PutBackups = append(plan.PutBackups, p.bput[id])
	}
}
