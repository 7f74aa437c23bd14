package fsm

import (
	"slices"
	"sort"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Backups and restores of instances' volumes: their records live in the
// backups table so that a new leader resumes or fails them (never loses
// track of a berth whose task was stopped for a copy).

func init() {
	registerCommand(v1.CommandType_COMMAND_TYPE_BACKUP_PUT, "", applyBackupPut)
	registerCommand(v1.CommandType_COMMAND_TYPE_BACKUP_DELETE, "", applyBackupDelete)
}

// BackupActive is true for a backup or restore that still holds its
// instance (its app task is kept stopped, or its copy task runs).
func BackupActive(b *v1.Backup) bool {
	s := b.GetState()
	return s == v1.BackupState_BACKUP_STATE_PENDING || s == v1.BackupState_BACKUP_STATE_RUNNING
}

func applyBackupPut(tx *txn, e logEntry, cmd *v1.BackupPutCommand) (string, error) {
	if t := cmd.GetIfLeaderTerm(); t != 0 && t != e.term {
		return cmd.GetRequestId(), refuse(ErrConflict, "backup update decided in term %d reached the log in term %d", t, e.term)
	}
	for _, b := range cmd.GetBackups() {
		if len(cmd.GetExpectStates()) > 0 {
			cur, err := tx.First(tableBackups, "id", b.GetId())
			if err != nil {
				return cmd.GetRequestId(), err
			}
			state := v1.BackupState_BACKUP_STATE_UNSPECIFIED
			if cur != nil {
				state = cur.(*v1.Backup).GetState()
			}
			if !slices.Contains(cmd.GetExpectStates(), state) {
				return cmd.GetRequestId(), refuse(ErrConflict, "backup %s is %s, expected one of %v", b.GetId(), state, cmd.GetExpectStates())
			}
		}
		if err := putBackup(tx, b); err != nil {
			return cmd.GetRequestId(), err
		}
	}
	return cmd.GetRequestId(), nil
}

// putBackup stores a backup record under the rules every writer meets:
// a finished backup keeps its outcome, and an instance has at most one
// backup or restore in progress.
func putBackup(tx *txn, b *v1.Backup) error {
	switch {
	case b.GetId() == "":
		return refuse(ErrInvalid, "backup id is empty")
	case b.GetAppId() == "" || b.GetInstanceId() == "":
		return refuse(ErrInvalid, "backup %s: app_id and instance_id must be set", b.GetId())
	case b.GetKind() != v1.BackupKind_BACKUP_KIND_BACKUP && b.GetKind() != v1.BackupKind_BACKUP_KIND_RESTORE:
		return refuse(ErrInvalid, "backup %s: unknown kind %s", b.GetId(), b.GetKind())
	case b.GetState() < v1.BackupState_BACKUP_STATE_PENDING || b.GetState() > v1.BackupState_BACKUP_STATE_FAILED:
		return refuse(ErrInvalid, "backup %s: unknown state %s", b.GetId(), b.GetState())
	case b.GetState() == v1.BackupState_BACKUP_STATE_RUNNING && b.GetTaskId() == "" && b.GetContainerId() == "":
		return refuse(ErrInvalid, "backup %s: a running copy needs its task_id (a copy task) or container_id (an online copy)", b.GetId())
	case b.GetContainerId() != "" && (b.GetParentContainerId() == "" || b.GetAgentId() == ""):
		return refuse(ErrInvalid, "backup %s: an online copy's container_id needs its parent_container_id and agent_id", b.GetId())
	}
	raw, err := tx.First(tableBackups, "id", b.GetId())
	if err != nil {
		return err
	}
	if raw != nil {
		cur := raw.(*v1.Backup)
		if !BackupActive(cur) && cur.GetState() != b.GetState() {
			return refuse(ErrConflict, "backup %s already ended (%s)", b.GetId(), cur.GetState())
		}
		if cur.GetInstanceId() != b.GetInstanceId() || cur.GetKind() != b.GetKind() {
			return refuse(ErrConflict, "backup %s belongs to instance %s", b.GetId(), cur.GetInstanceId())
		}
	}
	if BackupActive(b) {
		others, err := tx.Get(tableBackups, "instance", b.GetInstanceId())
		if err != nil {
			return err
		}
		for o := others.Next(); o != nil; o = others.Next() {
			if ob := o.(*v1.Backup); ob.GetId() != b.GetId() && BackupActive(ob) {
				return refuse(ErrConflict, "instance %s already has %s %s in progress", b.GetInstanceId(), kindWord(ob), ob.GetId())
			}
		}
	}
	return tx.Insert(tableBackups, b)
}

func kindWord(b *v1.Backup) string {
	if b.GetKind() == v1.BackupKind_BACKUP_KIND_RESTORE {
		return "restore"
	}
	return "backup"
}

func applyBackupDelete(tx *txn, _ logEntry, cmd *v1.BackupDeleteCommand) (string, error) {
	for _, id := range cmd.GetIds() {
		raw, err := tx.First(tableBackups, "id", id)
		if err != nil {
			return cmd.GetRequestId(), err
		}
		if raw == nil {
			continue // already gone: a retried prune
		}
		if BackupActive(raw.(*v1.Backup)) {
			return cmd.GetRequestId(), refuse(ErrConflict, "backup %s is in progress", id)
		}
		if err := tx.Delete(tableBackups, raw); err != nil {
			return cmd.GetRequestId(), err
		}
	}
	return cmd.GetRequestId(), nil
}

// Backup returns one backup or restore record, or nil.
func (s *Snapshot) Backup(id string) (*v1.Backup, error) {
	return first[*v1.Backup](s, tableBackups, "id", id)
}

// Backups returns every backup and restore record, newest first.
func (s *Snapshot) Backups() ([]*v1.Backup, error) {
	bs, err := all[*v1.Backup](s, tableBackups, "id")
	if err != nil {
		return nil, err
	}
	sortBackups(bs)
	return bs, nil
}

// BackupsByInstance returns an instance's records, newest first.
func (s *Snapshot) BackupsByInstance(instanceID string) ([]*v1.Backup, error) {
	bs, err := all[*v1.Backup](s, tableBackups, "instance", instanceID)
	if err != nil {
		return nil, err
	}
	sortBackups(bs)
	return bs, nil
}

func sortBackups(bs []*v1.Backup) {
	sort.SliceStable(bs, func(i, j int) bool {
		a, b := bs[i].GetCreatedAt().AsTime(), bs[j].GetCreatedAt().AsTime()
		if !a.Equal(b) {
			return a.After(b)
		}
		return bs[i].GetId() > bs[j].GetId()
	})
}
