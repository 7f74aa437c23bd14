package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writerApp is a resident app that writes continuously to its volume: a
// counter into data/a and then data/b (each by rename), so that a copy of
// the files made while it writes is a consistent set only if a == b. While
// data/pause exists it stops between two rounds and says so in
// data/paused: the backup's pre command asks for that, the post command
// ends it.
func writerApp(id, extra string) string {
	return `{"id": "` + id + `", "instances": 1, "cpus": 0.05, "mem": 16,
		"cmd": "i=0; while true; do if [ -e data/pause ]; then touch data/paused; sleep 0.05; continue; fi; rm -f data/paused; i=$((i+1)); echo $i > data/a.tmp && mv data/a.tmp data/a; sleep 0.01; echo $i > data/b.tmp && mv data/b.tmp data/b; done",
		"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 1}}]}` + extra + `}`
}

// An online backup of an app that keeps writing: the task is never
// stopped (the same task before and after), the copy runs inside it
// between the pre and post commands, and restoring the backup gives a
// consistent file set (a == b).
func TestOnlineBackupWhileTheAppWrites(t *testing.T) {
	dataDir := traversableTempDir(t)
	target := filepath.Join(dataDir, "backups")
	if err := os.Mkdir(target, 0o777); err != nil {
		t.Fatal(err)
	}
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", dataDir, "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "2")
	waitAPI(t, api)
	policy := `, "backup": {"target": "file://` + target + `", "consistency": "online",
		"preCommand": "touch pause; while [ ! -e paused ]; do sleep 0.05; done", "postCommand": "rm -f pause"}`
	mustCLI(t, api, "app", "add", "--wait", writeFile(t, "writer.json", writerApp("/writer", policy)))
	first := onlyTask(t, api, "/writer", nil)
	count := func(name string) int {
		n, _ := strconv.Atoi(strings.TrimSpace(readVolumeFile(t, dataDir, first.agentTaskJSON, name)))
		return n
	}
	eventually(t, time.Minute, "the app writing", func() bool { return count("b") > 5 })

	b := backupDone(t, api, "/writer")
	after := onlyTask(t, api, "/writer", nil)
	if after.ID != first.ID || after.AgentID != first.AgentID {
		t.Fatalf("the online backup stopped the task: before %s on %s, after %s on %s", first.ID, first.AgentID, after.ID, after.AgentID)
	}
	before := count("b")
	eventually(t, time.Minute, "the app writing after the backup", func() bool { return count("b") > before })
	if _, err := os.Stat(filepath.Join(volumeDir(dataDir, first.agentTaskJSON), "pause")); err == nil {
		t.Fatal("the post command did not run: data/pause is still there")
	}
	t.Logf("online backup %s: %s bytes, %s chunks; the task %s kept running", b.ID, b.Bytes, b.ChunksTotal, after.ID)

	mustCLI(t, api, "restore", "/writer", "--instance", first.InstanceID, "--backup", b.ID, "--wait")
	restored := onlyTask(t, api, "/writer", func(tk moveTaskJSON) bool { return tk.ID != first.ID })
	// The restored task writes on at once: check the backup itself by
	// restoring it into a directory of our own.
	dir := t.TempDir()
	if out, err := exec.Command(berthBin, "volume", "restore", "--target", "file://"+target, "--backup", b.ID, "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("berth volume restore: %v\n%s", err, out)
	}
	a, err1 := os.ReadFile(filepath.Join(dir, "a"))
	bb, err2 := os.ReadFile(filepath.Join(dir, "b"))
	if err1 != nil || err2 != nil || string(a) != string(bb) || len(a) == 0 {
		t.Fatalf("the online backup is not a consistent set: a=%q b=%q (%v %v)", a, bb, err1, err2)
	}
	t.Logf("restored: a = b = %s; the restored task %s runs", strings.TrimSpace(string(a)), restored.ID)
}

// A migration of PostgreSQL with 100,000 rows: the live copy uploads the
// bulk while PostgreSQL serves, then the task stops for the final copy,
// which uploads only the chunks that changed; the downtime is that delta
// copy, the restore and the start.
func TestMigratePostgresLiveCopy(t *testing.T) {
	api, first := pgOnAgents(t, func(def string) string { return def })
	execAt(t, first, "INSERT INTO berth_seed SELECT g, repeat(md5(g::text), 8) FROM generate_series(20001, 100000) g")
	start := time.Now()
	out := mustCLI(t, api, "instance", "migrate", first.InstanceID, "--wait")
	t.Logf("berth instance migrate --wait (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	m := downtimeRE.FindStringSubmatch(out[strings.LastIndex(out, "done:"):])
	if m == nil {
		t.Fatalf("migrate output has no downtime:\n%s", out)
	}
	// --wait attaches to the events before it asks for the migration, so
	// every step is printed, however short (a poll of the task list alone
	// missed a live copy over within its first second).
	for _, step := range []string{"event: migrate live copy: started", "event: migrate copy: live copy done; stopping the task"} {
		if !strings.Contains(out, step) {
			t.Fatalf("migrate output has no %q: the live copy did not run or did not succeed:\n%s", step, out)
		}
	}
	t.Logf("migration downtime with a live copy (stop → new task running): %s", m[1])
	moved := waitHealthy(t, api, "/postgres", func(tk taskJSON) bool { return tk.AgentID != first.AgentID })
	if n := rowsAt(t, moved); n != 100000 {
		t.Fatalf("after the migration: %d rows, want 100000", n)
	}
}
