package rpc_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/backup"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// The backup API end to end on one server, with the scheduler's part
// (running the copy task) played by the test: create, progress and totals
// through the leader's duties, verify, restore, delete and retention.
func TestBackupService(t *testing.T) {
	servers := startCluster(t, 1, clusterOpts{})
	leader := servers[0]
	cl := clientsFor(leader)
	bk := berthv1connect.NewBackupServiceClient(http.DefaultClient, leader.url())
	ctx := ctxFor(t, 60*time.Second)
	targetDir := t.TempDir()
	target := "file://" + targetDir

	app := mustApp(t, `{"id": "/db", "cmd": "sleep 1000", "instances": 0,
		"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 10}}]},
		"backup": {"target": "`+target+`", "retention": {"keep": 1}}}`)
	if _, err := cl.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app})); err != nil {
		t.Fatal(err)
	}
	// No berth yet: nothing to back up.
	_, err := bk.CreateBackup(ctx, connect.NewRequest(&v1.CreateBackupRequest{AppId: "/db"}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	inst := &v1.Instance{Id: "db.instance-1", AppId: "/db", Goal: v1.Goal_GOAL_RUNNING, Resident: true,
		Reservation: &v1.Reservation{InstanceId: "db.instance-1", State: v1.ReservationState_RESERVATION_STATE_RESERVED, AgentId: "A1",
			Volumes: []*v1.LocalVolume{{PersistenceId: "db#data#1", InstanceId: "db.instance-1", ContainerPath: "data", SizeMib: 10, AgentId: "A1"}}}}
	applyDirect(t, leader, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{inst}})

	_, err = bk.CreateBackup(ctx, connect.NewRequest(&v1.CreateBackupRequest{AppId: "/nope"}))
	wantCode(t, err, connect.CodeNotFound)
	res, err := bk.CreateBackup(ctx, connect.NewRequest(&v1.CreateBackupRequest{AppId: "/db", InstanceId: inst.Id, RequestId: "req-1"}))
	if err != nil {
		t.Fatal(err)
	}
	b1 := res.Msg.GetBackups()[0]
	if b1.GetState() != v1.BackupState_BACKUP_STATE_PENDING || b1.GetTarget() != target || b1.GetContainerPath() != "data" {
		t.Fatalf("created %v", b1)
	}
	// A retry finds the first attempt; a second backup of the instance
	// waits for the first to end.
	again, err := bk.CreateBackup(ctx, connect.NewRequest(&v1.CreateBackupRequest{AppId: "/db", InstanceId: inst.Id, RequestId: "req-1"}))
	if err != nil || again.Msg.GetBackups()[0].GetId() != b1.GetId() {
		t.Fatalf("retry: %v, %v", again, err)
	}
	_, err = bk.CreateBackup(ctx, connect.NewRequest(&v1.CreateBackupRequest{AppId: "/db", InstanceId: inst.Id, RequestId: "req-2"}))
	wantCode(t, err, connect.CodeAborted)

	// The copy task runs (here: the backup package on a directory) and
	// reports progress through the target; the leader publishes it.
	events, unsub := leader.broker.Subscribe(ctx)
	defer unsub()
	dutiesCtx, stopDuties := context.WithCancel(ctx)
	defer stopDuties()
	go leader.api.RunBackupDuties(dutiesCtx)
	running := proto.Clone(b1).(*v1.Backup)
	running.State, running.TaskId, running.AgentId = v1.BackupState_BACKUP_STATE_RUNNING, inst.Id+"._backup."+b1.Id, "A1"
	applyDirect(t, leader, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutBackups: []*v1.Backup{running}})
	tg, err := backup.Open(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if err := tg.PutProgress(ctx, b1.Id, backup.Progress{Bytes: 10, TotalBytes: 20, Chunks: 1, NewChunks: 1, Elapsed: time.Second}); err != nil {
		t.Fatal(err)
	}
	progress := waitEvent(t, events, "backup_progress")
	if progress.GetBackup().GetBytes() != 10 || progress.GetRateBytesPerSecond() != 10 {
		t.Errorf("progress event %v", progress)
	}
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "PG_VERSION"), []byte("16\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Backup(ctx, vol, backup.Options{ID: b1.Id}); err != nil {
		t.Fatal(err)
	}
	done := proto.Clone(running).(*v1.Backup)
	done.State = v1.BackupState_BACKUP_STATE_SUCCEEDED
	applyDirect(t, leader, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutBackups: []*v1.Backup{done}})
	// The leader records the totals and the manifest's checksum.
	waitFor(t, 30*time.Second, "backup totals", func() error {
		got, err := bk.GetBackup(ctx, connect.NewRequest(&v1.GetBackupRequest{Id: b1.Id}))
		if err != nil {
			return err
		}
		if got.Msg.GetBackup().GetManifestSha256() == "" || got.Msg.GetBackup().GetBytes() != 3 {
			return fmt.Errorf("backup %v", got.Msg.GetBackup())
		}
		return nil
	})

	ver, err := bk.VerifyBackup(ctx, connect.NewRequest(&v1.VerifyBackupRequest{Id: b1.Id}))
	if err != nil || !ver.Msg.GetOk() || ver.Msg.GetChunks() != 1 || ver.Msg.GetBackup().GetVerifiedAt() == nil {
		t.Fatalf("verify: %v, %v", ver, err)
	}
	list, err := bk.ListBackups(ctx, connect.NewRequest(&v1.ListBackupsRequest{AppId: "/db"}))
	if err != nil || len(list.Msg.GetBackups()) != 1 {
		t.Fatalf("list: %v, %v", list, err)
	}

	// Restore: from a succeeded backup; to another agent than the berth's.
	_, err = bk.Restore(ctx, connect.NewRequest(&v1.RestoreRequest{AppId: "/db", InstanceId: inst.Id, BackupId: b1.Id, ToAgent: inst.GetReservation().GetAgentId()}))
	wantCode(t, err, connect.CodeInvalidArgument)
	// Moves name an instance that exists; a replacement a backup of its own.
	_, err = bk.MigrateInstance(ctx, connect.NewRequest(&v1.MigrateInstanceRequest{}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = bk.MigrateInstance(ctx, connect.NewRequest(&v1.MigrateInstanceRequest{InstanceId: "db.instance-nope"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = bk.MigrateInstance(ctx, connect.NewRequest(&v1.MigrateInstanceRequest{InstanceId: inst.Id, ToAgent: inst.GetReservation().GetAgentId()}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = bk.ReplaceInstance(ctx, connect.NewRequest(&v1.ReplaceInstanceRequest{InstanceId: inst.Id, BackupId: "nope"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = bk.Restore(ctx, connect.NewRequest(&v1.RestoreRequest{AppId: "/db", InstanceId: inst.Id, BackupId: "nope"}))
	wantCode(t, err, connect.CodeNotFound)
	rs, err := bk.Restore(ctx, connect.NewRequest(&v1.RestoreRequest{AppId: "/db", InstanceId: inst.Id, BackupId: b1.Id}))
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Msg.GetRestore()
	if r.GetKind() != v1.BackupKind_BACKUP_KIND_RESTORE || r.GetSourceBackupId() != b1.Id || r.GetManifestSha256() == "" {
		t.Fatalf("restore %v", r)
	}
	// A restore in progress cannot be deleted.
	_, err = bk.DeleteBackup(ctx, connect.NewRequest(&v1.DeleteBackupRequest{Id: r.Id}))
	wantCode(t, err, connect.CodeFailedPrecondition)

	// Deleting the backup removes its manifest and its chunks.
	if _, err := bk.DeleteBackup(ctx, connect.NewRequest(&v1.DeleteBackupRequest{Id: b1.Id})); err != nil {
		t.Fatal(err)
	}
	if ids, _ := tg.Manifests(ctx); len(ids) != 0 {
		t.Fatalf("manifests after delete: %v", ids)
	}
	if _, err := bk.GetBackup(ctx, connect.NewRequest(&v1.GetBackupRequest{Id: b1.Id})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("get after delete: %v", err)
	}

	// The binary the fetcher downloads is this process's executable.
	resp, err := http.Get(leader.url() + "/v1/binary/berth")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	exe, _ := os.Executable()
	info, _ := os.Stat(exe)
	if resp.StatusCode != http.StatusOK || n != info.Size() {
		t.Fatalf("binary: status %d, %d bytes, want %d", resp.StatusCode, n, info.Size())
	}
}

func waitEvent(t *testing.T, events <-chan *v1.Event, typ string) *v1.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.GetType() == typ {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event", typ)
			return nil
		}
	}
}
