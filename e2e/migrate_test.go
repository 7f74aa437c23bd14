package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// rowsAt counts berth_seed's rows of the PostgreSQL of a task, on its
// agent's own loopback address (berth dev --agents N).
func rowsAt(t *testing.T, tk taskJSON) int {
	t.Helper()
	n := -1
	eventually(t, 2*time.Minute, fmt.Sprintf("PostgreSQL on %s:%d", tk.Host, tk.Ports[0]), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable", tk.Host, tk.Ports[0]))
		if err != nil {
			return false
		}
		defer c.Close(ctx)
		return c.QueryRow(ctx, "SELECT count(*) FROM berth_seed").Scan(&n) == nil
	})
	return n
}

func execAt(t *testing.T, tk taskJSON, sql string) {
	t.Helper()
	ctx := context.Background()
	var c *pgx.Conn
	eventually(t, 2*time.Minute, "PostgreSQL accepting connections", func() bool {
		var err error
		c, err = pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable", tk.Host, tk.Ports[0]))
		return err == nil
	})
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// pgOnAgents starts berth dev with three agents and the PostgreSQL example
// app, edited by edit, and returns the API address and its healthy task.
func pgOnAgents(t *testing.T, edit func(def string) string, extra ...string) (string, taskJSON) {
	t.Helper()
	requirePostgres(t)
	dataDir := traversableTempDir(t)
	api, mesosAddr := freePort(t), freePort(t)
	args := append([]string{"dev", "--data-dir", dataDir, "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "3"}, extra...)
	startProc(t, "dev", args...)
	waitAPI(t, api)
	def, err := os.ReadFile("../deploy/examples/postgres.json")
	if err != nil {
		t.Fatal(err)
	}
	mustCLI(t, api, "app", "add", writeFile(t, "pg.json", edit(string(def))), "--wait")
	first := waitHealthy(t, api, "/postgres", nil)
	execAt(t, first, "CREATE TABLE berth_seed (id int primary key, note text)")
	execAt(t, first, "INSERT INTO berth_seed SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g")
	return api, first
}

// reservedDisk is the disk an agent has reserved (berth list -o json).
func reservedDisk(t *testing.T, api, agentID string) (float64, bool) {
	t.Helper()
	var res struct {
		Agents []struct {
			ID       string
			Reserved struct{ Disk float64 }
		}
	}
	cliJSON(t, api, &res, "agent", "list")
	for _, a := range res.Agents {
		if a.ID == agentID {
			return a.Reserved.Disk, true
		}
	}
	return 0, false
}

var downtimeRE = regexp.MustCompile(`downtime ([0-9.]+(ms|s|m[0-9.]*s?))`)

// TestMigratePostgres: `berth instance migrate --wait` moves PostgreSQL
// (an app without a backup target: the copy goes through berth dev's
// migration target) to another agent with every row; the old berth is
// destroyed (no reservation left on the old agent) and the downtime is
// reported.
func TestMigratePostgres(t *testing.T) {
	api, first := pgOnAgents(t, func(def string) string { return def })
	start := time.Now()
	out := mustCLI(t, api, "instance", "migrate", first.InstanceID, "--wait")
	t.Logf("berth instance migrate --wait (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	m := downtimeRE.FindStringSubmatch(out[strings.LastIndex(out, "done:"):])
	if !strings.Contains(out, "done: instance "+first.InstanceID) || m == nil {
		t.Fatalf("migrate output:\n%s", out)
	}
	t.Logf("migration downtime (stop → new task running): %s", m[1])
	moved := waitHealthy(t, api, "/postgres", func(tk taskJSON) bool { return tk.AgentID != first.AgentID })
	if persistenceID(t, moved) == persistenceID(t, first) {
		t.Fatalf("same volume after the migration: %+v", moved)
	}
	if n := rowsAt(t, moved); n != 20000 {
		t.Fatalf("after the migration: %d rows, want 20000", n)
	}
	eventually(t, 2*time.Minute, "the old berth destroyed", func() bool {
		d, ok := reservedDisk(t, api, first.AgentID)
		return ok && d == 0
	})
	if tk := tasksByInstance(t, api, "/postgres")[first.InstanceID]; tk.BerthEpoch != "2" {
		t.Fatalf("berth epoch %q after the migration, want 2", tk.BerthEpoch)
	}
}

// TestReplacePostgresFromBackupOnGone: an app with replaceFromBackup; its
// agent is marked gone: the instance is restored from its latest backup
// onto another agent, with the backup's rows (the writes since are lost).
func TestReplacePostgresFromBackupOnGone(t *testing.T) {
	target := backupTargetDir(t, traversableTempDir(t))
	api, first := pgOnAgents(t, func(def string) string {
		return strings.Replace(def, `"instances": 1,`, `"instances": 1, "backup": {"target": "file://`+target+`", "replaceFromBackup": true},`, 1)
	})
	backupDone(t, api, "/postgres")
	after := waitHealthy(t, api, "/postgres", func(tk taskJSON) bool { return tk.ID != first.ID })
	execAt(t, after, "INSERT INTO berth_seed SELECT g, 'lost' FROM generate_series(20001, 20500) g")

	mustCLI(t, api, "agent", "gone", first.AgentID)
	replaced := waitHealthy(t, api, "/postgres", func(tk taskJSON) bool { return tk.AgentID != first.AgentID })
	if n := rowsAt(t, replaced); n != 20000 {
		t.Fatalf("after the replacement: %d rows, want the backup's 20000", n)
	}
	tk := tasksByInstance(t, api, "/postgres")[first.InstanceID]
	if tk.BerthEpoch != "2" {
		t.Fatalf("berth epoch %q after the replacement, want 2", tk.BerthEpoch)
	}
	out := mustCLI(t, api, "task", "list", "--app", "/postgres")
	t.Logf("task list after the replacement:\n%s", out)
}

// TestAutoMigratePostgresOffMaintenance is the end to end: on
// berth dev --agents 3, PostgreSQL with 100,000 rows and a backup target,
// backed up once; maintenance is scheduled (an hour ahead) on its agent:
// PostgreSQL runs on another agent with every row, the old berth is
// destroyed, the inverse offer accepted, and the downtime is measured. The
// migration copies through the app's own target, so only what changed
// since the backup is uploaded while PostgreSQL is stopped.
func TestAutoMigratePostgresOffMaintenance(t *testing.T) {
	target := backupTargetDir(t, traversableTempDir(t))
	api, first := pgOnAgents(t, func(def string) string {
		return strings.Replace(def, `"instances": 1,`, `"instances": 1, "backup": {"target": "file://`+target+`"},`, 1)
	})
	execAt(t, first, "INSERT INTO berth_seed SELECT g, repeat(md5(g::text), 8) FROM generate_series(20001, 100000) g")
	b := backupDone(t, api, "/postgres")
	t.Logf("backup before the maintenance: %+v", b)
	first = waitHealthy(t, api, "/postgres", func(tk taskJSON) bool { return tk.ID != first.ID })
	execAt(t, first, "INSERT INTO berth_seed SELECT g, 'after the backup' FROM generate_series(100001, 100500) g")

	start := time.Now()
	mustCLI(t, api, "agent", "maintenance", "schedule", first.AgentID, "--start", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "--duration", "1h")
	var moved moveTaskJSON
	eventually(t, 5*time.Minute, "PostgreSQL migrated off the maintenance", func() bool {
		moved = movesByInstance(t, api, "/postgres")[first.InstanceID]
		return moved.AgentID != first.AgentID && moved.Move.Step == "done" && moved.State == "TASK_RUNNING"
	})
	t.Logf("maintenance scheduled → PostgreSQL migrated and healthy: %s, downtime %s ms", time.Since(start).Round(100*time.Millisecond), moved.Move.DowntimeMs)
	healthy := waitHealthy(t, api, "/postgres", func(tk taskJSON) bool { return tk.AgentID == moved.AgentID })
	if n := rowsAt(t, healthy); n != 100500 {
		t.Fatalf("after the migration: %d rows, want 100500", n)
	}
	eventually(t, 2*time.Minute, "the old berth destroyed", func() bool {
		d, ok := reservedDisk(t, api, first.AgentID)
		return ok && d == 0
	})
	if moved.BerthEpoch != "2" || moved.Move.Kind != "migrate" {
		t.Fatalf("moved %+v", moved)
	}
	for _, bk := range listBackups(t, api, "/postgres") {
		if bk.ID != b.ID {
			t.Logf("the migration's copy: %s bytes, %s chunks, %s new", bk.Bytes, bk.ChunksTotal, bk.ChunksNew)
		}
	}
}
