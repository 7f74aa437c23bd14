package rpc

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/berth-dev/berth/backup"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Staging copies (docs/MIGRATION.md): a migration of an app without a
// backup target copies the volume to the server's --migration-target.
// That copy serves the move alone, and the app's retention does not apply
// to another target, so the leader deletes it once the move has ended:
// completed (the new berth healthy, the old one released) or given up
// (failed or abandoned; the instance is back on its old berth). The
// manifest goes first, then the record, then the chunks no other manifest
// references (backup.Target.GC, skipped while a backup to the target is in
// progress; a later deletion collects them). A migration through the
// app's own target is an ordinary backup of the app, kept by its
// retention.

// pruneStaging deletes the staging copies of moves that ended.
func (s *Server) pruneStaging(ctx context.Context) error {
	st := s.store().Snapshot()
	all, err := st.Backups()
	if err != nil {
		return err
	}
	active := map[string]bool{}
	for _, r := range all {
		if fsm.BackupActive(r) {
			active[r.GetId()] = true
		}
	}
	byTarget := map[string][]*v1.Backup{}
	for _, r := range all {
		if active[r.GetId()] || active[r.GetId()+"-restore"] || !stagingCopy(st, r) || !stagingMoveEnded(st, r) {
			continue
		}
		byTarget[r.GetTarget()] = append(byTarget[r.GetTarget()], r)
	}
	targets := make([]string, 0, len(byTarget))
	for t := range byTarget {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	var errs []error
	for _, t := range targets {
		ids, gc, err := s.deleteBackups(ctx, st, byTarget[t])
		if err != nil {
			errs = append(errs, fmt.Errorf("staging copies in %s: %w", t, err))
			continue
		}
		s.log.Info("deleted the staging copies of ended moves", "target", t, "backups", ids, "chunks_deleted", gcDeleted(gc))
	}
	return errors.Join(errs...)
}

// stagingCopy is true for a migration's copy that is not in its app's own
// backup target (or whose app is gone).
func stagingCopy(st *fsm.Snapshot, r *v1.Backup) bool {
	if r.GetKind() != v1.BackupKind_BACKUP_KIND_BACKUP || !r.GetMigrate() {
		return false
	}
	app, err := st.App(r.GetAppId())
	if err != nil {
		return false
	}
	return app == nil || r.GetTarget() != app.GetBackup().GetTarget()
}

// stagingMoveEnded is true when the move a copy was made for is over: its
// instance is gone, has moved on to another move, or its move is done or
// failed.
func stagingMoveEnded(st *fsm.Snapshot, r *v1.Backup) bool {
	inst, err := st.Instance(r.GetInstanceId())
	if err != nil {
		return false
	}
	m := inst.GetMove()
	if inst == nil || m.GetId() != r.GetMigrationId() {
		return true
	}
	return m.GetStep() == "done" || m.GetStep() == "failed"
}

// gcDeleted is how many chunks a collection deleted (none when it was
// skipped).
func gcDeleted(gc *backup.GCResult) int {
	if gc == nil {
		return 0
	}
	return gc.Deleted
}
