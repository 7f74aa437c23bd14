package scheduler

import (
	"fmt"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Online copies (docs/BACKUPS.md "Online backups", docs/MIGRATION.md "The
// live copy"): a backup in "online" consistency, and a migration's live
// copy, run while the app's task keeps running, inside it, as a Mesos
// nested container launched through the agent's operator API (what
// `dcos task exec` does). The task's container is the parent: the nested
// container shares its mounts and lives in its sandbox
// (<task sandbox>/containers/<id>), so it sees the berth's volume where
// the task does and no second task ever holds the volume (invariant 2).
// It dies with the task.
//
//	PENDING   the app's task is RUNNING with a known container: the leader
//	          commits RUNNING with the agent, the parent task and container
//	          and the nested container's id (invariant 1) ...
//	RUNNING   ... then the nested copier (agentcalls.go) sends
//	          LAUNCH_CONTAINER (a repeat of it is accepted by the agent, so
//	          a new leader simply sends it again) and WAIT_CONTAINER; the
//	          exit status comes back as a NestedCopyResult, committed as
//	          SUCCEEDED or FAILED. A container the agent no longer knows (its
//	          task ended, the agent restarted) is decided by the target:
//	          SUCCEEDED only if the backup's manifest is there.
//
// The task is never stopped for an online copy. A PENDING online copy of
// an instance whose task does not run is made as a stop-consistency copy
// task (there is nothing to stop); one whose task is starting waits.

// NestedCopyResult is the outcome of a copy in a nested container, as the
// nested copier found it.
type NestedCopyResult struct {
	BackupID    string
	ContainerID string
	Succeeded   bool
	// Message says why a copy failed.
	Message string
}

func (NestedCopyResult) isInput() {}

// onlineRecord is true for a backup made while the task runs.
func onlineRecord(b *v1.Backup) bool {
	return b.GetKind() == v1.BackupKind_BACKUP_KIND_BACKUP && (b.GetConsistency() == appmodel.BackupOnline || b.GetLive())
}

// nestedCopy is true for a record whose copy runs in a nested container.
func nestedCopy(b *v1.Backup) bool { return b.GetContainerId() != "" }

// nestedContainerID is the id of a record's nested container: a Mesos
// container id value, which must not contain '.' or '/'.
func nestedContainerID(b *v1.Backup) string {
	return "berth-" + kindName(b) + "-" + strings.NewReplacer(".", "-", "/", "-").Replace(b.GetId())
}

// tickOnline drives an active online record. It returns true when it
// handled the record (tickBackups leaves it alone then).
func (p *planner) tickOnline(b *v1.Backup, i *v1.Instance) bool {
	if nestedCopy(b) {
		if b.GetState() == v1.BackupState_BACKUP_STATE_RUNNING && (i == nil || goalOf(i) == v1.Goal_GOAL_DECOMMISSIONED) {
			// The task is killed for the removal and its nested container
			// dies with it: nothing of the copy outlives the task.
			p.failBackup(b.GetId(), "the instance was removed during the online copy")
		}
		return true
	}
	if !onlineRecord(b) || b.GetState() != v1.BackupState_BACKUP_STATE_PENDING || i == nil || !hasBerth(i) {
		return false
	}
	t := i.GetTask()
	if !taskLive(t) {
		if b.GetLive() {
			// Nothing runs to copy beside: the stop copy does it all.
			p.endLiveCopy(b, "skipped: the task does not run")
			return true
		}
		return false // copied by a copy task, as in stop consistency
	}
	if t.GetState() != stRunning || t.GetContainerId() == "" || t.GetAgentId() != i.GetReservation().GetAgentId() ||
		resState(i) != v1.ReservationState_RESERVATION_STATE_RESERVED {
		return true // starting, killing or unreachable: wait, never stop it
	}
	if img := appmodel.RunsInImage(p.st.Apps[i.GetAppId()]); img != "" {
		// A nested container would need the task's image (docs/BACKUPS.md);
		// validation refuses online backups of such apps, so only a
		// migration's live copy gets here.
		if b.GetLive() {
			p.endLiveCopy(b, "skipped: the task runs in container image "+img)
		} else {
			p.failBackup(b.GetId(), "an online copy cannot run beside a task in container image "+img+`: use "consistency": "stop"`)
		}
		return true
	}
	if p.cfg.BinaryURL == "" {
		p.failBackup(b.GetId(), "the scheduler has no URL of the berth binary to fetch (server --advertise-api)")
		return true
	}
	e := p.editBackup(b.GetId())
	if e == nil {
		e = b
	}
	e.State = v1.BackupState_BACKUP_STATE_RUNNING
	e.AgentId = t.GetAgentId()
	e.ParentTaskId = t.GetId()
	e.ParentContainerId = t.GetContainerId()
	e.ContainerId = nestedContainerID(e)
	e.StartedAt = p.ts()
	p.backupEvent(e, fmt.Sprintf("%s running in task %s (nested container %s)", kindName(e), t.GetId(), e.GetContainerId()))
	return true
}

// onNestedCopy records the outcome of a nested copy.
func (p *planner) onNestedCopy(r NestedCopyResult) {
	b := p.backup(r.BackupID)
	if b == nil || b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING || b.GetContainerId() != r.ContainerID {
		return // decided already (a result reported twice, or by another leader)
	}
	if b.GetLive() {
		msg := "done"
		if !r.Succeeded {
			msg = "failed (" + r.Message + "): the stop copy copies everything"
		}
		p.endLiveCopy(b, msg)
		return
	}
	if !r.Succeeded {
		p.failBackup(b.GetId(), r.Message)
		return
	}
	e := p.editBackup(b.GetId())
	e.State = v1.BackupState_BACKUP_STATE_SUCCEEDED
	e.FinishedAt = p.ts()
	p.backupEvent(e, "")
	p.moveCopyEnded(e)
}

// endLiveCopy ends a migration's live copy, whatever its outcome (it only
// warms the target: the stop copy is the one restored): the record is
// PENDING again, for the stop-consistency copy, which stops the task.
func (p *planner) endLiveCopy(b *v1.Backup, outcome string) {
	e := p.editBackup(b.GetId())
	if e == nil {
		e = b
	}
	e.Live = false
	e.State = v1.BackupState_BACKUP_STATE_PENDING
	e.ContainerId, e.ParentContainerId, e.ParentTaskId, e.AgentId = "", "", "", ""
	e.StartedAt = nil
	p.backupEvent(e, "live copy "+outcome+"; the task stops for the final copy of what changed")
	if i := p.inst(b.GetInstanceId()); i != nil && moveOf(i, b) != nil {
		p.setStep(p.edit(i.GetId()), stepCopy, "live copy "+outcome+"; stopping the task for the final copy")
	}
}

// NestedCopyTarget is a nested copy the leader must launch (again) and
// wait for.
type NestedCopyTarget struct {
	BackupID string
	AgentID  string
	// ContainerID is the nested container, with its parent.
	ContainerID mesos.ContainerID
	Command     *mesos.CommandInfo
	// Record is the backup record, for the manifest check.
	Record *v1.Backup
}

// nestedCopyTargets lists the RUNNING nested copies of a state.
func nestedCopyTargets(st *State, binaryURL string) []NestedCopyTarget {
	var out []NestedCopyTarget
	for _, b := range st.Backups {
		if b.GetState() != v1.BackupState_BACKUP_STATE_RUNNING || !nestedCopy(b) {
			continue
		}
		a := st.Apps[b.GetAppId()]
		if a == nil {
			continue
		}
		out = append(out, NestedCopyTarget{
			BackupID: b.GetId(), AgentID: b.GetAgentId(),
			ContainerID: mesos.ContainerID{Value: b.GetContainerId(), Parent: parseContainerID(b.GetParentContainerId())},
			Command:     copyCommand(a, b, nestedVolumeDir(b), binaryURL),
			Record:      b,
		})
	}
	return out
}

// parseContainerID reads Mesos' "parent.child" form of a container id.
func parseContainerID(s string) *mesos.ContainerID {
	var id *mesos.ContainerID
	for _, v := range strings.Split(s, ".") {
		id = &mesos.ContainerID{Value: v, Parent: id}
	}
	return id
}

// nestedVolumeDir is the volume as a nested container sees it: its
// sandbox is <task sandbox>/containers/<id>, the volume is at the task
// sandbox's container path.
func nestedVolumeDir(b *v1.Backup) string {
	return `"$MESOS_SANDBOX"/../../` + shellQuote(b.GetContainerPath())
}

// containerIDOf is the container of a task status in Mesos' "parent.child"
// form, or "".
func containerIDOf(s mesos.TaskStatus) string {
	var parts []string
	for id := s.GetContainerStatus().GetContainerID(); id != nil; id = id.Parent {
		parts = append([]string{id.Value}, parts...)
	}
	return strings.Join(parts, ".")
}
