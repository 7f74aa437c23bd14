package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// backupJSON is a backup record as `berth backup list -o json` prints it
// (protojson: 64-bit integers are strings).
type backupJSON struct {
	ID             string `json:"id"`
	InstanceID     string `json:"instanceId"`
	Kind           string `json:"kind"`
	State          string `json:"state"`
	Bytes          string `json:"bytes"`
	ChunksTotal    string `json:"chunksTotal"`
	ChunksNew      string `json:"chunksNew"`
	BytesUploaded  string `json:"bytesUploaded"`
	ManifestSha256 string `json:"manifestSha256"`
	Scheduled      bool   `json:"scheduled"`
	SourceBackupID string `json:"sourceBackupId"`
	StartedAt      string `json:"startedAt"`
	FinishedAt     string `json:"finishedAt"`
}

func (b backupJSON) chunksNew() int { n, _ := strconv.Atoi(b.ChunksNew); return n }

func (b backupJSON) bytes() int64 { n, _ := strconv.ParseInt(b.Bytes, 10, 64); return n }

func (b backupJSON) bytesUploaded() int64 {
	n, _ := strconv.ParseInt(b.BytesUploaded, 10, 64)
	return n
}

// took is how long the copy task ran (started → finished), zero when
// either is unknown.
func (b backupJSON) took() time.Duration {
	s, err1 := time.Parse(time.RFC3339Nano, b.StartedAt)
	f, err2 := time.Parse(time.RFC3339Nano, b.FinishedAt)
	if err1 != nil || err2 != nil {
		return 0
	}
	return f.Sub(s)
}

func listBackups(t *testing.T, api, app string) []backupJSON {
	t.Helper()
	var out struct{ Backups []backupJSON }
	cliJSON(t, api, &out, "backup", "list", app)
	return out.Backups
}

// backupDone creates a backup with --wait and returns its record once the
// leader recorded its totals.
func backupDone(t *testing.T, api, app string) backupJSON {
	t.Helper()
	before := map[string]bool{}
	for _, b := range listBackups(t, api, app) {
		before[b.ID] = true
	}
	mustCLI(t, api, "backup", "create", app, "--wait")
	var got backupJSON
	eventually(t, 2*time.Minute, "the new backup's totals", func() bool {
		for _, b := range listBackups(t, api, app) {
			if !before[b.ID] && b.State == "BACKUP_STATE_SUCCEEDED" && b.ManifestSha256 != "" {
				got = b
				return true
			}
		}
		return false
	})
	return got
}

// TestBackupRestorePostgres: PostgreSQL on `berth dev` backed up to a
// file:// target (the copy task is the berth binary fetched from the
// server), an incremental backup uploads fewer chunks, and a restore of the
// first backup brings back exactly its rows.
func TestBackupRestorePostgres(t *testing.T) {
	requirePostgres(t)
	dataDir := traversableTempDir(t)
	target := backupTargetDir(t, dataDir)
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", dataDir, "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "1")
	waitAPI(t, api)

	def, err := os.ReadFile("../deploy/examples/postgres.json")
	if err != nil {
		t.Fatal(err)
	}
	withBackup := strings.Replace(string(def), `"instances": 1,`, `"instances": 1, "backup": {"target": "file://`+target+`", "retention": {"keep": 5}},`, 1)
	mustCLI(t, api, "app", "add", writeFile(t, "pg-backup.json", withBackup), "--wait")
	first := waitHealthy(t, api, "/postgres", nil)

	ctx := context.Background()
	conn := pgConnect(t, first.Ports[0])
	if _, err := conn.Exec(ctx, "CREATE TABLE berth_seed (id int primary key, note text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO berth_seed SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	b1 := backupDone(t, api, "/postgres")
	if b1.InstanceID != first.InstanceID || b1.chunksNew() == 0 {
		t.Fatalf("first backup %+v", b1)
	}
	afterBackup := waitHealthy(t, api, "/postgres", func(tk taskJSON) bool { return tk.ID != first.ID })
	if afterBackup.AgentID != first.AgentID || persistenceID(t, afterBackup) != persistenceID(t, first) {
		t.Fatalf("the backup moved the instance: %+v", afterBackup)
	}
	if n := countRows(t, afterBackup.Ports[0]); n != 20000 {
		t.Fatalf("after the backup: %d rows, want 20000", n)
	}

	conn = pgConnect(t, afterBackup.Ports[0])
	if _, err := conn.Exec(ctx, "INSERT INTO berth_seed SELECT g, 'later' FROM generate_series(20001, 21000) g"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	b2 := backupDone(t, api, "/postgres")
	t.Logf("full backup: %s chunks, %s new, %s bytes; incremental: %s chunks, %s new", b1.ChunksTotal, b1.ChunksNew, b1.Bytes, b2.ChunksTotal, b2.ChunksNew)
	if b2.chunksNew() >= b1.chunksNew() {
		t.Fatalf("the incremental backup uploaded %d chunks, the full one %d", b2.chunksNew(), b1.chunksNew())
	}

	if out := mustCLI(t, api, "backup", "verify", b1.ID); !strings.Contains(out, "0 missing, 0 corrupt") {
		t.Fatalf("verify: %s", out)
	}

	before := waitHealthy(t, api, "/postgres", nil)
	mustCLI(t, api, "restore", "/postgres", "--instance", first.InstanceID, "--backup", b1.ID, "--wait")
	restored := waitHealthy(t, api, "/postgres", func(tk taskJSON) bool { return tk.ID != before.ID })
	if restored.AgentID != first.AgentID || persistenceID(t, restored) != persistenceID(t, first) {
		t.Fatalf("the restore moved the instance: %+v", restored)
	}
	if n := countRows(t, restored.Ports[0]); n != 20000 {
		t.Fatalf("after restoring the first backup: %d rows, want 20000", n)
	}

	// A schedule and a retention of two: the leader starts a backup on its
	// own, then prunes the oldest. A policy change relaunches nothing.
	scheduled := strings.Replace(withBackup, `"retention": {"keep": 5}`, `"schedule": "@every 1m", "retention": {"keep": 2}`, 1)
	mustCLI(t, api, "app", "update", "/postgres", writeFile(t, "pg-scheduled.json", scheduled), "--wait")
	if ts := tasks(t, api, "/postgres"); len(ts) != 1 || ts[0].ID != restored.ID {
		t.Fatalf("the policy change relaunched the task: %+v", ts)
	}
	eventually(t, 4*time.Minute, "a scheduled backup and the retention of two", func() bool {
		bs := listBackups(t, api, "/postgres")
		sched := false
		for _, b := range bs {
			sched = sched || (b.Scheduled && b.State == "BACKUP_STATE_SUCCEEDED" && b.ManifestSha256 != "")
		}
		return sched && len(bs) == 2 && bs[0].ID != b1.ID && bs[1].ID != b1.ID
	})
	manifests, err := os.ReadDir(filepath.Join(target, "manifests"))
	if err != nil || len(manifests) != 2 {
		t.Fatalf("manifests after pruning: %v, %v", manifests, err)
	}
}

// backupTargetDir makes a directory for a file:// backup target under
// parent, writable by the copy task (it runs as the app's user, e.g.
// postgres).
func backupTargetDir(t *testing.T, parent string) string {
	t.Helper()
	target := filepath.Join(parent, "backups")
	if err := os.Mkdir(target, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(target, 0o777); err != nil { // against the umask
		t.Fatal(err)
	}
	return target
}
