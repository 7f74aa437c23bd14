package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// taskJSON is Marathon's task JSON as `berth task list -o json` prints it.
type taskJSON struct {
	ID           string   `json:"id"`
	AppID        string   `json:"appId"`
	InstanceID   string   `json:"instanceId"`
	Host         string   `json:"host"`
	AgentID      string   `json:"agentId"`
	State        string   `json:"state"`
	Healthy      *bool    `json:"healthy"`
	StartedAt    string   `json:"startedAt"`
	Ports        []uint32 `json:"ports"`
	LocalVolumes []struct {
		ContainerPath string `json:"containerPath"`
		PersistenceID string `json:"persistenceId"`
	} `json:"localVolumes"`
}

func tasks(t *testing.T, api, app string) []taskJSON {
	t.Helper()
	var out struct{ Tasks []taskJSON }
	cliJSON(t, api, &out, "task", "list", "--app", app)
	return out.Tasks
}

// waitHealthy waits until the app has exactly one instance whose task is
// running and healthy, and returns it.
func waitHealthy(t *testing.T, api, app string, accept func(taskJSON) bool) taskJSON {
	t.Helper()
	var got taskJSON
	eventually(t, 4*time.Minute, app+" to be running and healthy", func() bool {
		ts := tasks(t, api, app)
		if len(ts) != 1 {
			return false
		}
		tk := ts[0]
		if tk.State != "TASK_RUNNING" || tk.Healthy == nil || !*tk.Healthy || len(tk.Ports) == 0 {
			return false
		}
		if accept != nil && !accept(tk) {
			return false
		}
		got = tk
		return true
	})
	return got
}

func persistenceID(t *testing.T, tk taskJSON) string {
	t.Helper()
	if len(tk.LocalVolumes) != 1 || tk.LocalVolumes[0].PersistenceID == "" {
		t.Fatalf("task %s: want one local volume, got %+v", tk.ID, tk.LocalVolumes)
	}
	return tk.LocalVolumes[0].PersistenceID
}

func pgConnect(t *testing.T, port uint32) *pgx.Conn {
	t.Helper()
	var conn *pgx.Conn
	eventually(t, time.Minute, fmt.Sprintf("PostgreSQL on port %d", port), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
		if err != nil {
			return false
		}
		conn = c
		return true
	})
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func countRows(t *testing.T, port uint32) int {
	t.Helper()
	conn := pgConnect(t, port)
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM berth_seed").Scan(&n); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return n
}

// requirePostgres skips when PostgreSQL is not installed, except on CI where
// .ci/run installs it and a skip would hide a broken install.
func requirePostgres(t *testing.T) {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	_, userErr := user.Lookup("postgres")
	if len(matches) > 0 && userErr == nil && os.Geteuid() == 0 {
		return
	}
	msg := "needs PostgreSQL in /usr/lib/postgresql, a postgres user, and root (tasks run as user postgres)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// traversableTempDir returns a temp dir that other users (postgres) can
// enter: tasks run as another user below it.
func traversableTempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	// Only the directories below the temp root: never the root itself
	// (TMPDIR may be spelt "/tmp/", and /tmp must keep its sticky 1777).
	root := filepath.Clean(os.TempDir())
	for p := d; strings.HasPrefix(p, root+string(filepath.Separator)); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// volumeDirs lists persistent volume directories under the dev data dir.
func volumeDirs(t *testing.T, dataDir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dataDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() && strings.Contains(p, "#") && filepath.Base(filepath.Dir(filepath.Dir(p))) == "roles" {
			out = append(out, p)
			return filepath.SkipDir
		}
		return nil
	})
	return out
}

// mesosState calls mesos-local's operator API GET_STATE.
func mesosState(t *testing.T, mesosAddr string) map[string]any {
	t.Helper()
	resp, err := http.Post("http://"+mesosAddr+"/api/v1", "application/json", bytes.NewBufferString(`{"type":"GET_STATE"}`))
	if err != nil {
		t.Fatalf("GET_STATE: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET_STATE: %s: %s", resp.Status, body)
	}
	var st map[string]any
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("GET_STATE: %v", err)
	}
	return st
}

// reservedResources returns every dynamically reserved resource or volume
// that mesos-local's agents still hold.
func reservedResources(t *testing.T, mesosAddr string) []string {
	t.Helper()
	st := mesosState(t, mesosAddr)
	var out []string
	agents, _ := dig(st, "get_state", "get_agents", "agents").([]any)
	for _, a := range agents {
		for _, key := range []string{"total_resources", "offered_resources", "allocated_resources"} {
			rs, _ := dig(a, key).([]any)
			for _, r := range rs {
				m, _ := r.(map[string]any)
				if m["reservations"] != nil || m["reservation"] != nil || m["disk"] != nil {
					b, _ := json.Marshal(m)
					out = append(out, string(b))
				}
			}
		}
	}
	return out
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// postmasterPID reads the PID of PostgreSQL from its data directory.
func postmasterPID(t *testing.T, dataDir, pid string) int {
	t.Helper()
	var found int
	eventually(t, time.Minute, "postmaster.pid of "+pid, func() bool {
		for _, d := range volumeDirs(t, dataDir) {
			if filepath.Base(d) != pid {
				continue
			}
			b, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid"))
			if err != nil {
				return false
			}
			n, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
			if err != nil {
				return false
			}
			found = n
			return true
		}
		return false
	})
	return found
}

// TestSeedPostgresLifecycle is the seed scenario: PostgreSQL on a persistent
// volume under `berth dev`, through stop, start, restart with a changed env,
// a crash, a wipe and removal, with a real database and real data.
func TestSeedPostgresLifecycle(t *testing.T) {
	requirePostgres(t)
	dataDir := traversableTempDir(t)
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", dataDir, "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "1")
	waitAPI(t, api)

	appFile := "../deploy/examples/postgres.json"
	mustCLI(t, api, "app", "add", appFile, "--wait")
	first := waitHealthy(t, api, "/postgres", nil)
	pid := persistenceID(t, first)
	agent := first.AgentID

	conn := pgConnect(t, first.Ports[0])
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE berth_seed (id int primary key, note text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO berth_seed SELECT g, 'row ' || g FROM generate_series(1, 100) g"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	// Stop: the instance stays listed, reserved, with no start time.
	mustCLI(t, api, "app", "stop", "/postgres", "--wait")
	eventually(t, 2*time.Minute, "the stopped instance to be listed without a start time", func() bool {
		ts := tasks(t, api, "/postgres")
		return len(ts) == 1 && ts[0].StartedAt == "" && len(ts[0].LocalVolumes) == 1 && ts[0].LocalVolumes[0].PersistenceID == pid
	})
	table := mustCLI(t, api, "task", "list", "--app", "/postgres")
	if !strings.Contains(table, "APP") || !strings.Contains(table, "STARTED") || !strings.Contains(table, "N/A") {
		t.Fatalf("task list of a stopped instance should show STARTED N/A:\n%s", table)
	}
	if len(reservedResources(t, mesosAddr)) == 0 {
		t.Fatal("stopping the app released its reservation")
	}

	// Start: same agent, same volume, same data.
	mustCLI(t, api, "app", "start", "/postgres", "--wait")
	started := waitHealthy(t, api, "/postgres", nil)
	if started.AgentID != agent || persistenceID(t, started) != pid {
		t.Fatalf("start moved the instance: agent %s→%s, volume %s→%s", agent, started.AgentID, pid, persistenceID(t, started))
	}
	if n := countRows(t, started.Ports[0]); n != 100 {
		t.Fatalf("after start: %d rows, want 100", n)
	}

	// Restart with a changed env: a new version on the same berth.
	def, err := os.ReadFile(appFile)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(def), `"LANG": "C.UTF-8"`, `"LANG": "C.UTF-8", "BERTH_SEED": "changed"`, 1)
	mustCLI(t, api, "app", "update", "/postgres", writeFile(t, "pg2.json", changed), "--wait")
	restarted := waitHealthy(t, api, "/postgres", func(tk taskJSON) bool { return tk.ID != started.ID })
	if restarted.AgentID != agent || persistenceID(t, restarted) != pid {
		t.Fatalf("restart moved the instance: agent %s, volume %s", restarted.AgentID, persistenceID(t, restarted))
	}
	if n := countRows(t, restarted.Ports[0]); n != 100 {
		t.Fatalf("after restart: %d rows, want 100", n)
	}

	// Crash: kill the postgres process; the task is relaunched by itself.
	pgPID := postmasterPID(t, dataDir, pid)
	if err := syscall.Kill(pgPID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill postgres %d: %v", pgPID, err)
	}
	relaunched := waitHealthy(t, api, "/postgres", func(tk taskJSON) bool { return tk.ID != restarted.ID })
	if relaunched.AgentID != agent || persistenceID(t, relaunched) != pid {
		t.Fatalf("relaunch after crash moved the instance")
	}
	if n := countRows(t, relaunched.Ports[0]); n != 100 {
		t.Fatalf("after crash: %d rows, want 100", n)
	}

	// Wipe: a fresh instance with a new, empty volume.
	mustCLI(t, api, "task", "kill", relaunched.ID, "--wipe")
	wiped := waitHealthy(t, api, "/postgres", func(tk taskJSON) bool {
		return len(tk.LocalVolumes) == 1 && tk.LocalVolumes[0].PersistenceID != pid
	})
	conn = pgConnect(t, wiped.Ports[0])
	var table2 *string
	if err := conn.QueryRow(ctx, "SELECT to_regclass('berth_seed')::text").Scan(&table2); err != nil {
		t.Fatal(err)
	}
	if table2 != nil {
		t.Fatal("the wiped instance still has the old data")
	}
	conn.Close(ctx)
	eventually(t, 2*time.Minute, "the wiped volume to be destroyed", func() bool {
		for _, d := range volumeDirs(t, dataDir) {
			if filepath.Base(d) == pid {
				return false
			}
		}
		return true
	})

	// Remove: volume destroyed, reservation released, nothing left.
	mustCLI(t, api, "app", "remove", "/postgres", "--wait")
	eventually(t, 2*time.Minute, "every volume and reservation to be released", func() bool {
		return len(volumeDirs(t, dataDir)) == 0 && len(reservedResources(t, mesosAddr)) == 0 && len(tasks(t, api, "/postgres")) == 0
	})
}
