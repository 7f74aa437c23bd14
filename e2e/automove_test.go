package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Automatic moves end to end on `berth dev --agents 3`, with a small app
// whose data is a file in its volume rather than PostgreSQL: the first
// start writes data/marker (with the agent it ran on); every start
// appends to data/starts.

// markerApp is a resident app that keeps its first agent's name in its
// volume; extra is spliced into the definition.
func markerApp(id, extra string) string {
	return `{"id": "` + id + `", "instances": 1, "cpus": 0.05, "mem": 16,
		"cmd": "[ -f data/marker ] || echo \"first started on $HOST\" > data/marker; echo \"$HOST\" >> data/starts; exec sleep 100000",
		"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 1}}]}` + extra + `}`
}

type moveTaskJSON struct {
	agentTaskJSON
	Healthy *bool
	Move    struct{ ID, Kind, Step, FromAgent, ToAgent, Error, DowntimeMs string }
}

func movesByInstance(t *testing.T, api, app string) map[string]moveTaskJSON {
	t.Helper()
	var res struct{ Tasks []moveTaskJSON }
	cliJSON(t, api, &res, "task", "list", "--app", app)
	out := map[string]moveTaskJSON{}
	for _, tk := range res.Tasks {
		out[tk.InstanceID] = tk
	}
	return out
}

// onlyTask waits for the app's one instance to run and returns it.
func onlyTask(t *testing.T, api, app string, accept func(moveTaskJSON) bool) moveTaskJSON {
	t.Helper()
	var got moveTaskJSON
	eventually(t, 4*time.Minute, app+" running", func() bool {
		ts := movesByInstance(t, api, app)
		if len(ts) != 1 {
			return false
		}
		for _, tk := range ts {
			got = tk
		}
		return got.State == "TASK_RUNNING" && (accept == nil || accept(got))
	})
	return got
}

// volumeDir is where mesos-local keeps a berth's volume under berth dev's
// data directory.
func volumeDir(dataDir string, tk agentTaskJSON) string {
	return mesosVolumeDir(filepath.Join(dataDir, "mesos"), tk)
}

// mesosVolumeDir is where mesos-local keeps a berth's volume under its
// work directory.
func mesosVolumeDir(workDir string, tk agentTaskJSON) string {
	return filepath.Join(workDir, "agents", tk.AgentID, "volumes", "roles", "berth", tk.LocalVolumes[0].PersistenceID)
}

func readVolumeFile(t *testing.T, dataDir string, tk agentTaskJSON, name string) string {
	t.Helper()
	var b []byte
	eventually(t, time.Minute, name+" in the volume of "+tk.ID, func() bool {
		var err error
		b, err = os.ReadFile(filepath.Join(volumeDir(dataDir, tk), name))
		return err == nil && len(b) > 0
	})
	return string(b)
}

// maintenanceStatus is mesos-local's GET_MAINTENANCE_STATUS, as JSON text.
func maintenanceStatus(t *testing.T, mesosAddr string) string {
	t.Helper()
	resp, err := http.Post("http://"+mesosAddr+"/api/v1", "application/json", strings.NewReader(`{"type":"GET_MAINTENANCE_STATUS"}`))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func devWithAgents(t *testing.T) (dataDir, api, mesosAddr string) {
	t.Helper()
	dataDir = traversableTempDir(t)
	api, mesosAddr = freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", dataDir, "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "3")
	waitAPI(t, api)
	eventually(t, time.Minute, "three agents", func() bool { return len(agentsByID(t, api)) == 3 })
	return dataDir, api, mesosAddr
}

// Scheduled maintenance (a window an hour ahead) on the agent of a
// resident app without a backup target: the instance is migrated, through
// berth dev's migration target, to another agent with its data, long
// before the window; the old berth is destroyed, the staging copy deleted,
// and the framework's answer to the agent's inverse offer is ACCEPT.
func TestAutoMigrateOffScheduledMaintenance(t *testing.T) {
	dataDir, api, mesosAddr := devWithAgents(t)
	mustCLI(t, api, "app", "add", "--wait", writeFile(t, "keeper.json", markerApp("/keeper", "")))
	first := onlyTask(t, api, "/keeper", nil)
	marker := readVolumeFile(t, dataDir, first.agentTaskJSON, "marker")
	if !strings.HasPrefix(marker, "first started on 127.0.0.") {
		t.Fatalf("marker %q", marker)
	}

	window := time.Now().Add(time.Hour).UTC()
	scheduled := time.Now()
	mustCLI(t, api, "agent", "maintenance", "schedule", first.AgentID, "--start", window.Format(time.RFC3339), "--duration", "1h")
	moved := onlyTask(t, api, "/keeper", func(tk moveTaskJSON) bool {
		return tk.AgentID != first.AgentID && tk.Move.Step == "done"
	})
	t.Logf("maintenance scheduled → migrated and healthy on %s: %s (downtime %s ms)", moved.AgentID, time.Since(scheduled).Round(100*time.Millisecond), moved.Move.DowntimeMs)
	if moved.Move.Kind != "migrate" || moved.BerthEpoch != "2" || moved.InstanceID != first.InstanceID {
		t.Fatalf("after the migration: %+v", moved)
	}
	if got := readVolumeFile(t, dataDir, moved.agentTaskJSON, "marker"); got != marker {
		t.Fatalf("marker on the new berth %q, want %q", got, marker)
	}
	if starts := readVolumeFile(t, dataDir, moved.agentTaskJSON, "starts"); !strings.HasPrefix(starts, first.Host+"\n") || !strings.Contains(starts, moved.Host+"\n") {
		t.Fatalf("starts on the new berth %q (first on %s, now on %s)", starts, first.Host, moved.Host)
	}
	eventually(t, 2*time.Minute, "the old berth destroyed", func() bool {
		d, ok := reservedDisk(t, api, first.AgentID)
		_, err := os.Stat(volumeDir(dataDir, first.agentTaskJSON))
		return ok && d == 0 && os.IsNotExist(err)
	})
	eventually(t, 2*time.Minute, "the inverse offer accepted", func() bool {
		return strings.Contains(maintenanceStatus(t, mesosAddr), `"ACCEPT"`)
	})
	eventually(t, time.Minute, "the staging copy deleted", func() bool {
		ids, _ := os.ReadDir(filepath.Join(dataDir, "migration", "manifests"))
		return len(ids) == 0
	})
	if !time.Now().Before(window) {
		t.Fatalf("the move ended after the maintenance window started (%s)", window)
	}
}

// DRAIN_AGENT (berth agent drain): an app with backups and
// "replaceFromBackup": true is replaced from its latest backup on another
// agent (a write after the backup is lost, as documented); an app with
// backups but without the opt-in waits on its intact berth, and its notice
// says why.
func TestDrainReplacesFromBackupOnlyWithOptIn(t *testing.T) {
	dataDir, api, _ := devWithAgents(t)
	target := filepath.Join(dataDir, "backups")
	if err := os.Mkdir(target, 0o777); err != nil {
		t.Fatal(err)
	}
	policy := func(replace bool) string {
		r := ""
		if replace {
			r = `, "replaceFromBackup": true`
		}
		return `, "backup": {"target": "file://` + target + `"` + r + `}`
	}
	mustCLI(t, api, "app", "add", "--wait", writeFile(t, "optin.json", markerApp("/optin", policy(true))))
	mustCLI(t, api, "app", "add", "--wait", writeFile(t, "waits.json", markerApp("/waits", policy(false))))
	optin := onlyTask(t, api, "/optin", nil)
	waits := onlyTask(t, api, "/waits", nil)
	backupDone(t, api, "/optin")
	backupDone(t, api, "/waits")
	optin = onlyTask(t, api, "/optin", nil) // relaunched after the backup's stop
	waits = onlyTask(t, api, "/waits", nil)
	optinMarker := readVolumeFile(t, dataDir, optin.agentTaskJSON, "marker")
	// A write after the backup: lost by the replacement.
	if err := os.WriteFile(filepath.Join(volumeDir(dataDir, optin.agentTaskJSON), "after-backup"), []byte("lost\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Without the opt-in: the instance waits on its berth.
	mustCLI(t, api, "agent", "drain", waits.AgentID, "--grace", "2s")
	var last moveTaskJSON
	eventually(t, 2*time.Minute, "the instance without the opt-in to wait", func() bool {
		tk := movesByInstance(t, api, "/waits")[waits.InstanceID]
		if tk.State != last.State || tk.AgentNotice != last.AgentNotice {
			t.Logf("instance without the opt-in: %s %q", tk.State, tk.AgentNotice)
		}
		last = tk
		return last.State == "TASK_KILLED" && strings.HasPrefix(last.AgentNotice, "agent draining") &&
			strings.Contains(last.AgentNotice, "waits on its intact berth") && strings.Contains(last.AgentNotice, "does not opt in to backup.replaceFromBackup")
	})
	drained := time.Now()
	if optin.AgentID != waits.AgentID {
		mustCLI(t, api, "agent", "drain", optin.AgentID, "--grace", "2s")
	}
	replaced := onlyTask(t, api, "/optin", func(tk moveTaskJSON) bool {
		return tk.AgentID != optin.AgentID && tk.AgentID != waits.AgentID && tk.Move.Step == "done"
	})
	t.Logf("drain → replaced from the backup and healthy on %s: %s (downtime %s ms)", replaced.AgentID, time.Since(drained).Round(100*time.Millisecond), replaced.Move.DowntimeMs)
	if replaced.Move.Kind != "replace" || replaced.BerthEpoch != "2" {
		t.Fatalf("replacement: %+v", replaced)
	}
	if got := readVolumeFile(t, dataDir, replaced.agentTaskJSON, "marker"); got != optinMarker {
		t.Fatalf("marker after the replacement %q, want the backup's %q", got, optinMarker)
	}
	if _, err := os.Stat(filepath.Join(volumeDir(dataDir, replaced.agentTaskJSON), "after-backup")); !os.IsNotExist(err) {
		t.Fatalf("a write after the backup survived the replacement: %v", err)
	}

	time.Sleep(5 * time.Second) // offer rounds: the waiting instance stays put
	tk := movesByInstance(t, api, "/waits")[waits.InstanceID]
	if tk.State != "TASK_KILLED" || tk.AgentID != waits.AgentID || tk.BerthEpoch != "1" || tk.Move.Kind != "" {
		t.Fatalf("the instance without the opt-in moved: %+v", tk)
	}
	if got := readVolumeFile(t, dataDir, waits.agentTaskJSON, "marker"); !strings.HasPrefix(got, "first started on "+waits.Host) {
		t.Fatalf("the waiting berth's data: %q", got)
	}
}

// A move whose new task is never healthy is abandoned at the app's
// backup.moveTimeout: here the health check passes only on the agent that
// first wrote the volume's marker, so the migrated task fails it. `berth
// instance migrate --wait` fails saying why; the instance runs again,
// healthy, on its old berth (epoch 1, its data); the new berth is
// destroyed (no disk reserved anywhere else).
func TestMoveNotHealthyInTimeGoesBack(t *testing.T) {
	dataDir, api, _ := devWithAgents(t)
	target := filepath.Join(dataDir, "backups")
	if err := os.Mkdir(target, 0o777); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, api, "app", "add", "--wait", writeFile(t, "picky.json", markerApp("/picky",
		`, "healthChecks": [{"protocol": "COMMAND", "command": {"value": "grep -q \"on $HOST\\$\" data/marker"},
			"gracePeriodSeconds": 3, "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 3}],
		"backup": {"target": "file://`+target+`", "moveTimeout": "20s"}`)))
	healthy := func(tk moveTaskJSON) bool { return tk.Healthy != nil && *tk.Healthy }
	first := onlyTask(t, api, "/picky", healthy)
	marker := readVolumeFile(t, dataDir, first.agentTaskJSON, "marker")

	start := time.Now()
	r := cli(t, api, "instance", "migrate", first.InstanceID, "--wait")
	t.Logf("berth instance migrate --wait (%s): %v\n%s%s", time.Since(start).Round(100*time.Millisecond), r.err, r.stdout, r.stderr)
	if r.err == nil || !strings.Contains(r.stdout+r.stderr, "was not healthy within 20s") {
		t.Fatalf("migrate --wait should fail on the timeout: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	back := onlyTask(t, api, "/picky", func(tk moveTaskJSON) bool { return healthy(tk) && tk.AgentID == first.AgentID })
	if back.BerthEpoch != "1" || back.Move.Step != "failed" || !strings.Contains(back.Move.Error, "back to the old berth on agent "+first.AgentID) ||
		back.LocalVolumes[0].PersistenceID != first.LocalVolumes[0].PersistenceID {
		t.Fatalf("after the abandoned move: %+v", back)
	}
	if got := readVolumeFile(t, dataDir, back.agentTaskJSON, "marker"); got != marker {
		t.Fatalf("marker %q, want %q", got, marker)
	}
	eventually(t, 2*time.Minute, "the abandoned new berth destroyed", func() bool {
		for id := range agentsByID(t, api) {
			if d, ok := reservedDisk(t, api, id); id != first.AgentID && (!ok || d != 0) {
				return false
			}
		}
		return true
	})
}
