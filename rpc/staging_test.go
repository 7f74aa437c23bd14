package rpc_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/backup"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// chunkFiles counts the chunks stored in a file:// target's directory.
func chunkFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "chunks"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return n
}

// The leader deletes a migration's staging copy (in the server's
// migration target, not the app's own) once the move has ended: done
// (the new berth healthy) or given up (failed, abandoned). The manifest
// and record go, then the chunks no other manifest references; a copy
// whose move is still in progress stays, and so does a migration's copy
// in the app's own backup target (its retention applies), on a file://
// target.
func TestStagingCopiesOfEndedMovesArePruned(t *testing.T) {
	servers := startCluster(t, 1, clusterOpts{})
	leader := servers[0]
	cl := clientsFor(leader)
	ctx := ctxFor(t, 90*time.Second)
	stagingDir, ownDir := t.TempDir(), t.TempDir()
	staging, own := "file://"+stagingDir, "file://"+ownDir
	volume := func(files map[string]string) string {
		dir := t.TempDir()
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	shared := strings.Repeat("shared by two staging copies\n", 100)

	type moved struct{ app, backupSection, target, migration string }
	cases := []moved{
		{"/done", "", staging, "m-done"},                                // staging copy, its move completes
		{"/later", "", staging, "m-later"},                              // staging copy sharing a chunk, its move is abandoned later
		{"/own", `, "backup": {"target": "` + own + `"}`, own, "m-own"}, // the app's own target: kept
	}
	var plan v1.SchedulerPlanCommand
	for _, c := range cases {
		app := mustApp(t, `{"id": "`+c.app+`", "cmd": "sleep 1000", "instances": 0,
			"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 10}}]}`+c.backupSection+`}`)
		if _, err := cl.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app})); err != nil {
			t.Fatal(err)
		}
		iid := strings.TrimPrefix(c.app, "/") + ".instance-1"
		plan.PutInstances = append(plan.PutInstances, &v1.Instance{Id: iid, AppId: c.app, Goal: v1.Goal_GOAL_RUNNING, Resident: true,
			Reservation: &v1.Reservation{InstanceId: iid, State: v1.ReservationState_RESERVATION_STATE_RESERVED, AgentId: "A2", Epoch: 2},
			Move:        &v1.Move{Id: c.migration, Kind: "migrate", Step: "wait healthy", FromAgent: "A1", ToAgent: "A2"}})
		tg, err := backup.Open(ctx, c.target)
		if err != nil {
			t.Fatal(err)
		}
		vol := volume(map[string]string{"own": fmt.Sprintf("only in %s\n", c.app), "shared": shared})
		if _, err := tg.Backup(ctx, vol, backup.Options{ID: c.migration, App: c.app, Instance: iid}); err != nil {
			t.Fatal(err)
		}
		tg.Close()
		plan.PutBackups = append(plan.PutBackups, &v1.Backup{Id: c.migration, AppId: c.app, InstanceId: iid, Kind: v1.BackupKind_BACKUP_KIND_BACKUP,
			State: v1.BackupState_BACKUP_STATE_SUCCEEDED, Target: c.target, ContainerPath: "data", Migrate: true, MigrationId: c.migration,
			FromAgent: "A1", TaskId: iid + "._backup." + c.migration, AgentId: "A1"})
	}
	applyDirect(t, leader, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &plan)
	if n := chunkFiles(t, stagingDir); n != 3 {
		t.Fatalf("staging chunks before: %d, want 3 (two own, one shared)", n)
	}

	dutiesCtx, stopDuties := context.WithCancel(ctx)
	defer stopDuties()
	go leader.api.RunBackupDuties(dutiesCtx)
	record := func(id string) *v1.Backup {
		t.Helper()
		r, err := leader.fsm.State().Snapshot().Backup(id)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// The duties ran (the totals are recorded); moves in progress keep
	// their copies.
	waitFor(t, 30*time.Second, "totals recorded", func() error {
		for _, c := range cases {
			if record(c.migration).GetManifestSha256() == "" {
				return fmt.Errorf("no totals on %s", c.migration)
			}
		}
		return nil
	})
	for _, c := range cases {
		if record(c.migration) == nil {
			t.Fatalf("%s deleted while its move is in progress", c.migration)
		}
	}

	setStep := func(app, step string) {
		iid := strings.TrimPrefix(app, "/") + ".instance-1"
		inst, err := leader.fsm.State().Snapshot().Instance(iid)
		if err != nil {
			t.Fatal(err)
		}
		inst = proto.Clone(inst).(*v1.Instance) // the store's copy is shared
		inst.Move.Step = step
		applyDirect(t, leader, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{inst}})
	}
	manifests := func() []string {
		tg, err := backup.OpenExisting(ctx, staging, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tg.Close()
		ids, err := tg.Manifests(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}

	// The first move completes: its copy goes, with the chunk only it used;
	// the shared chunk stays for the copy of the move still in progress.
	setStep("/done", "done")
	setStep("/own", "done")
	waitFor(t, 30*time.Second, "the completed move's staging copy deleted", func() error {
		if record("m-done") != nil {
			return fmt.Errorf("record still there")
		}
		return nil
	})
	if ids := manifests(); len(ids) != 1 || ids[0] != "m-later" {
		t.Fatalf("staging manifests: %v", ids)
	}
	if n := chunkFiles(t, stagingDir); n != 2 {
		t.Fatalf("staging chunks after the first move: %d, want 2", n)
	}

	// The second move is abandoned: its leftover goes too.
	setStep("/later", "failed")
	waitFor(t, 30*time.Second, "the abandoned move's staging copy deleted", func() error {
		if record("m-later") != nil || chunkFiles(t, stagingDir) != 0 {
			return fmt.Errorf("record %v, %d chunks", record("m-later"), chunkFiles(t, stagingDir))
		}
		return nil
	})
	if ids := manifests(); len(ids) != 0 {
		t.Fatalf("staging manifests: %v", ids)
	}
	// The copy in the app's own target is the app's backup: kept.
	if record("m-own") == nil || chunkFiles(t, ownDir) != 2 {
		t.Fatalf("the app's own backup was pruned: %v, %d chunks", record("m-own"), chunkFiles(t, ownDir))
	}
}
