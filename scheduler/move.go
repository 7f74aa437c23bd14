package scheduler

import (
	"fmt"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Berths that move (docs/MIGRATION.md): a restore onto a new berth on
// another agent (restore --to-agent), a migration (a copy of the volume to
// a target, then such a restore), and a replacement (such a restore from
// the latest backup when the old berth is lost). Every step is committed
// before the Mesos call it leads to (invariant 1):
//
//	live copy the migration's backup record first runs inside the app's
//	          running task (a nested container, online.go): it uploads the
//	          bulk of the volume's chunks while the app serves
//	copy      the same record runs on the old berth (the app's task
//	          stopped, as any stop-consistency backup): only the chunks
//	          changed since the live copy are uploaded
//	stopping  the move's restore record is PENDING; the app's task is killed
//	placing   the task is gone: the old berth is kept in Move.previous and
//	          the instance's reservation reset (epoch kept), so the next
//	          berth gets epoch + 1; the old berth is neither launched on nor
//	          destroyed while it is the previous one
//	restore   the new berth is reserved on an allowed agent together with
//	          the restore task on it (RESERVE, CREATE, LAUNCH in one accept)
//	launch    the restore succeeded: the app's task launches on the new berth
//	wait healthy  the new task runs; downtime = stopped_at → running_at
//	done      the new task is healthy (or runs, without health checks): the
//	          old berth is released (Move.previous cleared), and destroyed
//	          when offered since its epoch is not the instance's any more
//
// A failed restore goes back to the old berth (its epoch is still the
// instance's previous one; the abandoned new berth's epoch is kept in
// max_epoch so that no later berth reuses it). So does a move whose new
// task is not healthy by Move.healthy_by (the app's backup.moveTimeout,
// counted from the end of the restore):
//
//	abandoning  the deadline passed: the new task is killed (an
//	            unreachable one is waited for: never two live copies);
//	            nothing launches on the new berth meanwhile
//	failed      the new task is gone: the instance's berth is the old one
//	            again (relaunched there), the new berth is destroyed when
//	            offered and its epoch never reused
//
// A replacement has no old berth to go back to: past its deadline it ends
// failed and the instance stays on its new berth, which holds the only
// copy of its data (the restored backup), relaunching there like any
// resident instance; the operator replaces it again from another backup or
// wipes it. Trying other agents by itself would restore the same backup
// again, and a new task that is never healthy on it is more likely the
// data's or the app's doing than the agent's.

// Move kinds and steps (Instance.move).
const (
	moveMigrate = "migrate"
	moveRestore = "restore"
	moveReplace = "replace"

	stepLive     = "live copy"
	stepCopy     = "copy"
	stepStopping = "stopping"
	stepPlacing  = "placing"
	stepRestore  = "restore"
	stepLaunch   = "launch"
	stepHealthy  = "wait healthy"
	stepAbandon  = "abandoning"
	stepDone     = "done"
	stepFailed   = "failed"
)

// moveRecord is true for a record that moves its instance to a new berth.
func moveRecord(b *v1.Backup) bool {
	return b.GetMove() && b.GetKind() == v1.BackupKind_BACKUP_KIND_RESTORE
}

// moveOf returns the instance's move when it is the one the record
// belongs to.
func moveOf(i *v1.Instance, b *v1.Backup) *v1.Move {
	if m := i.GetMove(); m != nil && b.GetMigrationId() != "" && m.GetId() == b.GetMigrationId() {
		return m
	}
	return nil
}

func moveKind(b *v1.Backup) string {
	switch {
	case b.GetReplace():
		return moveReplace
	case b.GetMigrate() || b.GetMigrationId() != b.GetId():
		return moveMigrate
	}
	return moveRestore
}

// setStep moves the instance's move to a step and says so.
func (p *planner) setStep(e *v1.Instance, step, msg string) {
	m := e.GetMove()
	if m.GetStep() == step && msg == "" {
		return
	}
	m.Step = step
	p.changed[e.GetId()] = true
	text := m.GetKind() + " " + step
	if msg != "" {
		text += ": " + msg
	}
	p.event(&v1.Event{Type: "instance_move_event", AppId: e.GetAppId(), InstanceId: e.GetId(), AgentId: m.GetToAgent(),
		Message: text, Move: proto.Clone(m).(*v1.Move)})
}

// tickMove drives an active record that belongs to a move. It returns
// true when it handled the record (tickBackups leaves it alone then).
func (p *planner) tickMove(b *v1.Backup, i *v1.Instance) bool {
	if !b.GetMigrate() && !moveRecord(b) {
		return false
	}
	if i == nil || goalOf(i) == v1.Goal_GOAL_DECOMMISSIONED {
		return false
	}
	if moveOf(i, b) == nil {
		e := p.edit(i.GetId())
		e.Move = &v1.Move{
			Id: b.GetMigrationId(), Kind: moveKind(b), FromAgent: b.GetFromAgent(), ToAgent: b.GetToAgent(),
			CreatedAt: p.ts(), Step: stepCopy,
		}
		switch {
		case moveRecord(b):
			e.Move.Step = stepStopping
		case b.GetLive():
			e.Move.Step = stepLive
		}
		p.changed[e.GetId()] = true
		p.setStep(e, e.Move.Step, "started")
		i = e
	}
	m := i.GetMove()
	t := i.GetTask()
	if m.GetStoppedAt() == nil && !taskLive(t) {
		e := p.edit(i.GetId())
		e.Move.StoppedAt = p.ts()
		if t.GetUpdatedAt() != nil && t.GetUpdatedAt().AsTime().Before(p.now) {
			e.Move.StoppedAt = t.GetUpdatedAt() // when its end was recorded
		}
		p.changed[e.GetId()] = true
		i, m = e, e.GetMove()
	}
	if b.GetMigrate() {
		if !hasBerth(i) {
			p.failMove(i, b.GetId(), "the instance has no berth to copy")
			return true
		}
		return false // an ordinary backup on the old berth
	}
	if b.GetState() != v1.BackupState_BACKUP_STATE_PENDING || m.GetStep() != stepStopping {
		return true
	}
	lost := b.GetReplace() && (t.GetState() == stUnreachable || t.GetState() == stGone || !hasBerth(i))
	if taskLive(t) && !lost {
		p.kill(t, killBackup, killGrace(p.st.Apps[i.GetAppId()]))
		return true
	}
	// The task is gone (or lost with its berth): switch to a new berth.
	e := p.edit(i.GetId())
	if taskLive(e.GetTask()) {
		// Unreachable with its lost berth: forgotten; should it come back it
		// is an unknown task, killed (leftBehind).
		e.Task.State = stGone
		e.Task.Message = "left behind: the instance is replaced from a backup"
		e.Task.UpdatedAt = p.ts()
	}
	if hasBerth(e) && !b.GetReplace() {
		e.Move.Previous = proto.Clone(e.GetReservation()).(*v1.Reservation)
	}
	if e.Move.FromAgent == "" {
		e.Move.FromAgent = e.GetReservation().GetAgentId()
	}
	abandonBerth(e)
	p.setStep(e, stepPlacing, "waiting for an offer on "+moveWhere(b))
	return true
}

func moveWhere(b *v1.Backup) string {
	if b.GetToAgent() != "" {
		return "agent " + b.GetToAgent()
	}
	if b.GetFromAgent() != "" {
		return "an agent other than " + b.GetFromAgent()
	}
	return "any agent"
}

// leftBehind is true for an instance whose recorded task is on the berth
// a move left (a replacement's lost berth): a status of that task is of an
// unknown task (killed if live), never the instance's.
func leftBehind(i *v1.Instance) bool {
	m := i.GetMove()
	switch m.GetStep() {
	case stepPlacing, stepRestore, stepLaunch:
		return i.GetTask().GetAgentId() == m.GetFromAgent() && m.GetPrevious() == nil
	}
	return false
}

// movePlacing returns the move restore waiting for a new berth, or nil.
func (p *planner) movePlacing(i *v1.Instance) *v1.Backup {
	op := p.activeOp(i.GetId())
	if op == nil || !moveRecord(op) || op.GetState() != v1.BackupState_BACKUP_STATE_PENDING ||
		hasBerth(i) || taskLive(i.GetTask()) || goalOf(i) != v1.Goal_GOAL_RUNNING {
		return nil
	}
	if m := moveOf(i, op); m == nil || m.GetStep() != stepPlacing {
		return nil
	}
	return op
}

// moveAllows is true when a move's new berth may go on the offer's agent.
func moveAllows(b *v1.Backup, o *mesos.Offer) bool {
	if to := b.GetToAgent(); to != "" {
		return to == o.AgentID.Value || to == o.Hostname
	}
	return b.GetFromAgent() == "" || b.GetFromAgent() != o.AgentID.Value
}

// keepsPrevious is true for a labelled group that is the old berth of a
// move still in progress: neither launched on nor destroyed.
func keepsPrevious(i *v1.Instance, g *labelledGroup, agentID string) bool {
	prev := i.GetMove().GetPrevious()
	return prev != nil && g.epoch == prev.GetEpoch() && prev.GetAgentId() == agentID
}

// moveBerthConfirmed marks a move's new berth RESERVED once its restore
// task runs there: the task holds the berth's resources, so they are not
// offered (which would confirm it) and the pending timeout must not
// abandon a berth being filled.
func (p *planner) moveBerthConfirmed(b *v1.Backup, s mesos.TaskStatus) {
	i := p.inst(b.GetInstanceId())
	if !moveRecord(b) || i == nil || moveOf(i, b) == nil || resState(i) != v1.ReservationState_RESERVATION_STATE_PENDING ||
		i.GetReservation().GetAgentId() != s.GetAgentID().GetValue() {
		return
	}
	e := p.edit(i.GetId())
	e.Reservation.State = v1.ReservationState_RESERVATION_STATE_RESERVED
	e.Reservation.PendingUntil = nil
	p.changed[e.GetId()] = true
}

// moveCopyEnded continues a move whose record just ended.
func (p *planner) moveCopyEnded(b *v1.Backup) {
	i := p.inst(b.GetInstanceId())
	if i == nil || moveOf(i, b) == nil {
		return
	}
	ok := b.GetState() == v1.BackupState_BACKUP_STATE_SUCCEEDED
	switch {
	case b.GetMigrate() && ok:
		r := proto.Clone(b).(*v1.Backup)
		r.Id = b.GetId() + "-restore"
		r.Kind = v1.BackupKind_BACKUP_KIND_RESTORE
		r.State = v1.BackupState_BACKUP_STATE_PENDING
		r.SourceBackupId = b.GetId()
		r.Migrate = false
		r.Move = true
		r.TaskId, r.AgentId, r.Error = "", "", ""
		r.StartedAt, r.FinishedAt = nil, nil
		r.CreatedAt = p.ts()
		r.Scheduled = false
		r.ManifestSha256 = ""
		p.putBackupRecord(r)
		e := p.edit(i.GetId())
		e.Move.Bytes = b.GetBytes()
		p.setStep(e, stepStopping, "copy done")
	case b.GetMigrate():
		p.failMove(i, b.GetId(), b.GetError())
	case ok:
		e := p.edit(i.GetId())
		e.Move.Bytes = b.GetBytes()
		p.setHealthyBy(e)
		p.setStep(e, stepLaunch, "restore done; the new task must be healthy by "+e.Move.GetHealthyBy().AsTime().UTC().Format(time.RFC3339))
	default:
		e := p.edit(i.GetId())
		backToPrevious(e)
		p.failMove(e, b.GetId(), b.GetError())
	}
}

// backToPrevious makes a move's old berth the instance's berth again (its
// data is intact) and keeps the epoch of the abandoned new berth in
// max_epoch, so that no later berth reuses it; the new berth is destroyed
// when offered. Without an old berth (a replacement) nothing changes.
func backToPrevious(e *v1.Instance) {
	prev := e.GetMove().GetPrevious()
	if prev == nil {
		return
	}
	if ep := e.GetReservation().GetEpoch(); ep > prev.GetEpoch() {
		e.Move.AbandonedEpoch = ep
		e.MaxEpoch = max(e.GetMaxEpoch(), ep)
	}
	e.Reservation = prev
	e.Move.Previous = nil
	e.AgentAttributes = nil
	// The new berth's failures say nothing of the old one.
	e.LaunchNotBefore = nil
	e.ConsecutiveFailures = 0
}

// setHealthyBy records by when the move's new task must be healthy.
func (p *planner) setHealthyBy(e *v1.Instance) {
	e.Move.HealthyBy = timestamppb.New(p.now.Add(appmodel.MoveTimeout(p.st.Apps[e.GetAppId()])))
	p.changed[e.GetId()] = true
}

// failMove ends a move as failed.
func (p *planner) failMove(i *v1.Instance, recordID, reason string) {
	e := p.edit(i.GetId())
	if e == nil || e.GetMove() == nil {
		return
	}
	e.Move.Error = fmt.Sprintf("%s: %s", recordID, reason)
	p.setStep(e, stepFailed, e.Move.Error)
}

// tickMoveInstance measures the downtime of a moved instance once its new
// task runs, releases the old berth once it is healthy, and abandons the
// move when the new task is not healthy by its deadline.
func (p *planner) tickMoveInstance(i *v1.Instance, a *v1.App) {
	m := i.GetMove()
	if m == nil || a == nil {
		return
	}
	switch m.GetStep() {
	case stepAbandon:
		p.tickAbandon(i, a)
		return
	case stepLaunch, stepHealthy:
	default:
		return
	}
	if m.GetHealthyBy() == nil {
		// A move that reached its launch before deadlines were recorded.
		p.setHealthyBy(p.edit(i.GetId()))
		i = p.inst(i.GetId())
	}
	if t := i.GetTask(); t.GetState() == stRunning && t.GetAgentId() == i.GetReservation().GetAgentId() && p.moveRunning(i, a) {
		return
	}
	if by := i.GetMove().GetHealthyBy().AsTime(); !p.now.Before(by) {
		p.abandonMove(i, a)
	}
}

// moveRunning records the new task's start (downtime) and ends the move
// once the task is healthy. It returns true when the move is done.
func (p *planner) moveRunning(i *v1.Instance, a *v1.App) bool {
	t := i.GetTask()
	e := p.edit(i.GetId())
	if e.Move.RunningAt == nil {
		e.Move.RunningAt = t.GetStartedAt()
		if e.Move.RunningAt == nil {
			e.Move.RunningAt = p.ts()
		}
		if s := e.Move.GetStoppedAt(); s != nil {
			e.Move.DowntimeMs = uint64(e.Move.RunningAt.AsTime().Sub(s.AsTime()) / time.Millisecond)
		}
		e.Move.ToAgent = e.GetReservation().GetAgentId()
		p.setStep(e, stepHealthy, fmt.Sprintf("task %s runs on agent %s, downtime %s", t.GetId(), t.GetAgentId(),
			(time.Duration(e.Move.DowntimeMs)*time.Millisecond).String()))
	}
	if !p.available(e, a) {
		return false
	}
	prev := e.Move.GetPrevious()
	e.Move.Previous = nil
	if n := p.moveSourceBytes(e.GetMove()); n > 0 {
		e.Move.Bytes = n // the leader records a backup's totals after it ended
	}
	msg := "new berth healthy"
	if prev != nil {
		msg += fmt.Sprintf("; the old berth on agent %s (epoch %d) is released and destroyed when offered", prev.GetAgentId(), prev.GetEpoch())
	}
	p.setStep(e, stepDone, msg)
	return true
}

// abandonMove gives up a move whose new task was not healthy in time: a
// move with an old berth goes back to it (the new task is killed first);
// a replacement stops there and says so.
func (p *planner) abandonMove(i *v1.Instance, a *v1.App) {
	e := p.edit(i.GetId())
	res := e.GetReservation()
	why := fmt.Sprintf("the task on the new berth (agent %s, epoch %d) was not healthy within %s", res.GetAgentId(), res.GetEpoch(),
		appmodel.MoveTimeout(a))
	prev := e.Move.GetPrevious()
	if prev == nil {
		e.Move.Error = why + "; a replacement has no old berth to go back to: the instance stays on its new berth (the restored data) " +
			"and relaunches there; replace it again from another backup, or wipe it"
		p.setStep(e, stepFailed, e.Move.Error)
		return
	}
	e.Move.Error = why + fmt.Sprintf("; back to the old berth on agent %s (epoch %d)", prev.GetAgentId(), prev.GetEpoch())
	p.setStep(e, stepAbandon, e.Move.Error)
	p.tickAbandon(e, a)
}

// tickAbandon kills the task on an abandoned move's new berth and, once it
// is gone, puts the instance back on its old berth. An unreachable task is
// waited for: it may come back, and the old berth must not run beside it.
func (p *planner) tickAbandon(i *v1.Instance, a *v1.App) {
	if t := i.GetTask(); taskLive(t) {
		if t.GetState() != stUnreachable {
			p.kill(t, killBackup, killGrace(a)) // a planned stop, as for a copy: no backoff
		}
		return
	}
	e := p.edit(i.GetId())
	backToPrevious(e)
	p.setStep(e, stepFailed, e.Move.GetError())
}

// moveSourceBytes is the size of the backup a move restored from.
func (p *planner) moveSourceBytes(m *v1.Move) uint64 {
	r := p.backup(m.GetId() + "-restore") // a migration's restore
	if r == nil {
		r = p.backup(m.GetId())
	}
	return p.backup(r.GetSourceBackupId()).GetBytes()
}

// newMoveRestore is the restore record of a replacement from a backup.
func newMoveRestore(a *v1.App, i *v1.Instance, src *v1.Backup, id string, now time.Time) *v1.Backup {
	r := appmodel.NewRestore(a, i, src, id, now)
	r.Move = true
	r.MigrationId = id
	r.FromAgent = i.GetReservation().GetAgentId()
	return r
}

// latestBackup returns the instance's newest succeeded backup, or nil.
func (p *planner) latestBackup(instanceID string) *v1.Backup {
	var best *v1.Backup
	for _, id := range p.sortedBackupIDs() {
		b := p.backup(id)
		if b.GetInstanceId() != instanceID || b.GetKind() != v1.BackupKind_BACKUP_KIND_BACKUP ||
			b.GetState() != v1.BackupState_BACKUP_STATE_SUCCEEDED {
			continue
		}
		if best == nil || b.GetCreatedAt().AsTime().After(best.GetCreatedAt().AsTime()) {
			best = b
		}
	}
	return best
}

// replaceFromBackup starts the replacement of an instance whose berth is
// lost, when its app's policy asks for it and it has a backup. It returns
// true when it did.
func (p *planner) replaceFromBackup(e *v1.Instance, a *v1.App, why string) bool {
	if !a.GetBackup().GetReplaceFromBackup() || p.activeOp(e.GetId()) != nil || goalOf(e) != v1.Goal_GOAL_RUNNING {
		return false
	}
	src := p.latestBackup(e.GetId())
	if src == nil {
		p.event(&v1.Event{Type: "instance_move_event", AppId: a.GetId(), InstanceId: e.GetId(),
			Message: "replace from backup: no succeeded backup of the instance; it starts on an empty berth"})
		return false
	}
	r := newMoveRestore(a, e, src, p.cfg.NewID(), p.now)
	r.Replace = true
	p.putBackupRecord(r)
	p.event(&v1.Event{Type: "instance_move_event", AppId: a.GetId(), InstanceId: e.GetId(),
		Message: fmt.Sprintf("replace from backup %s of %s (%s): the writes since are lost", src.GetId(),
			src.GetCreatedAt().AsTime().UTC().Format(time.RFC3339), why)})
	return true
}
