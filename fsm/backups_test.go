package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

var backupEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func backupRecord(id, inst string, state v1.BackupState, minute int) *v1.Backup {
	b := &v1.Backup{Id: id, AppId: "/db", InstanceId: inst, Kind: v1.BackupKind_BACKUP_KIND_BACKUP, State: state,
		Target: "file:///b", CreatedAt: timestamppb.New(backupEpoch.Add(time.Duration(minute) * time.Minute))}
	if state == v1.BackupState_BACKUP_STATE_RUNNING {
		b.TaskId = "db.instance-" + inst + "._backup." + id
	}
	return b
}

func putBackups(bs ...*v1.Backup) *v1.BackupPutCommand { return &v1.BackupPutCommand{Backups: bs} }

const (
	bPending   = v1.BackupState_BACKUP_STATE_PENDING
	bRunning   = v1.BackupState_BACKUP_STATE_RUNNING
	bSucceeded = v1.BackupState_BACKUP_STATE_SUCCEEDED
	bFailed    = v1.BackupState_BACKUP_STATE_FAILED
	cmdPut     = v1.CommandType_COMMAND_TYPE_BACKUP_PUT
	cmdDelete  = v1.CommandType_COMMAND_TYPE_BACKUP_DELETE
)

func TestBackupLifecycle(t *testing.T) {
	a := newApplier(t)
	a.mustApply(cmdPut, putBackups(backupRecord("b1", "i1", bPending, 1)))
	// One backup or restore per instance at a time.
	restore := backupRecord("r1", "i1", bPending, 2)
	restore.Kind = v1.BackupKind_BACKUP_KIND_RESTORE
	if res := a.apply(cmdPut, putBackups(restore)); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("second operation on i1: %v, want ErrConflict", res.Err)
	}
	a.mustApply(cmdPut, putBackups(backupRecord("b2", "i2", bPending, 2))) // another instance is free

	// The scheduler commits the copy task with its plan, then the outcome.
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutBackups: []*v1.Backup{backupRecord("b1", "i1", bRunning, 1)}})
	done := backupRecord("b1", "i1", bSucceeded, 1)
	done.Bytes, done.ChunksTotal, done.ChunksNew = 1000, 10, 3
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutBackups: []*v1.Backup{done}})
	// An ended backup keeps its outcome...
	if res := a.apply(cmdPut, putBackups(backupRecord("b1", "i1", bFailed, 1))); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("failing a succeeded backup: %v, want ErrConflict", res.Err)
	}
	// ...but takes a verification result.
	verified := proto.Clone(done).(*v1.Backup)
	verified.VerifiedAt = timestamppb.New(backupEpoch)
	a.mustApply(cmdPut, putBackups(verified))
	// Now i1 is free for a restore.
	a.mustApply(cmdPut, putBackups(restore))

	snap := a.f.State().Snapshot()
	got, err := snap.Backup("b1")
	if err != nil || got.GetVerifiedAt() == nil || got.GetChunksNew() != 3 {
		t.Fatalf("b1 = %v, %v", got, err)
	}
	all, _ := snap.Backups()
	if len(all) != 3 || all[0].GetId() != "r1" || all[2].GetId() != "b1" {
		t.Fatalf("backups newest first = %v", ids(all))
	}
	mine, _ := snap.BackupsByInstance("i1")
	if len(mine) != 2 {
		t.Fatalf("i1 has %v", ids(mine))
	}

	// An active record cannot be deleted; an ended one can, twice.
	if res := a.apply(cmdDelete, &v1.BackupDeleteCommand{Ids: []string{"r1"}}); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("delete of an active restore: %v", res.Err)
	}
	a.mustApply(cmdDelete, &v1.BackupDeleteCommand{Ids: []string{"b1"}})
	a.mustApply(cmdDelete, &v1.BackupDeleteCommand{Ids: []string{"b1"}})
	if b, _ := a.f.State().Snapshot().Backup("b1"); b != nil {
		t.Fatalf("b1 still there: %v", b)
	}
}

func ids(bs []*v1.Backup) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.GetId())
	}
	return out
}

func TestBackupPutChecks(t *testing.T) {
	a := newApplier(t)
	for name, tc := range map[string]struct {
		cmd  *v1.BackupPutCommand
		want error
	}{
		"no id":            {putBackups(backupRecord("", "i1", bPending, 0)), ErrInvalid},
		"no instance":      {putBackups(backupRecord("b", "", bPending, 0)), ErrInvalid},
		"running, no task": {putBackups(&v1.Backup{Id: "b", AppId: "/db", InstanceId: "i", Kind: v1.BackupKind_BACKUP_KIND_BACKUP, State: bRunning}), ErrInvalid},
		"no state":         {putBackups(backupRecord("b", "i1", v1.BackupState_BACKUP_STATE_UNSPECIFIED, 0)), ErrInvalid},
		"stale term":       {&v1.BackupPutCommand{Backups: []*v1.Backup{backupRecord("b", "i1", bPending, 0)}, IfLeaderTerm: 7}, ErrConflict},
		"expect new":       {&v1.BackupPutCommand{Backups: []*v1.Backup{backupRecord("x", "i9", bPending, 0)}, ExpectStates: []v1.BackupState{bRunning}}, ErrConflict},
	} {
		if res := a.apply(cmdPut, tc.cmd); !errors.Is(res.Err, tc.want) {
			t.Errorf("%s: err %v, want %v", name, res.Err, tc.want)
		}
	}
	if bs, _ := a.f.State().Snapshot().Backups(); len(bs) != 0 {
		t.Fatalf("refused puts stored %v", ids(bs))
	}
}

// Backup records survive a snapshot and restore, as a new leader needs
// them to resume or fail a backup in progress.
func TestBackupsInSnapshot(t *testing.T) {
	a := newApplier(t)
	a.mustApply(cmdPut, putBackups(backupRecord("b1", "i1", bPending, 1), backupRecord("b2", "i2", bSucceeded, 2)))
	var buf bytes.Buffer
	if err := WriteSnapshot(a.f.State().Snapshot(), &buf); err != nil {
		t.Fatal(err)
	}
	st, err := ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := st.Snapshot().Backups()
	if err != nil || len(bs) != 2 || bs[1].GetState() != bPending {
		t.Fatalf("restored backups %v, %v", ids(bs), err)
	}
}
