package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFirstRunWithDefaults follows the README as a newcomer does: `berth dev`
// with its default (relative) data dir, started from a fresh directory, then
// the PostgreSQL example to healthy. The relative default once reached tasks
// as a relative MESOS_SANDBOX, which no longer resolved inside the sandbox.
func TestFirstRunWithDefaults(t *testing.T) {
	requirePostgres(t)
	work := traversableTempDir(t)
	api, mesosAddr := freePort(t), freePort(t)
	// Only the addresses differ from the README's command: this test may
	// run beside others. (The agent's resources are the tests' own.)
	startProcIn(t, work, "dev", "dev", "--api-addr", api, "--mesos-listen", mesosAddr)
	waitAPI(t, api)

	example, err := filepath.Abs("../deploy/examples/postgres.json")
	if err != nil {
		t.Fatal(err)
	}
	mustCLI(t, api, "app", "add", example, "--wait")
	tk := waitHealthy(t, api, "/postgres", nil)
	conn := pgConnect(t, tk.Ports[0])
	var one int
	if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("query PostgreSQL: %v", err)
	}

	// State went to the default data dir under the working directory, and
	// the volume lives there.
	dataDir := filepath.Join(work, "berth-dev-data")
	if _, err := os.Stat(dataDir); err != nil {
		t.Fatalf("default data dir: %v", err)
	}
	vols := volumeDirs(t, dataDir)
	if len(vols) != 1 {
		t.Fatalf("volumes under %s: %v", dataDir, vols)
	}
	if _, err := os.Stat(filepath.Join(vols[0], "data", "PG_VERSION")); err != nil {
		t.Fatalf("PostgreSQL data on the volume: %v", err)
	}
	mustCLI(t, api, "app", "remove", "/postgres", "--wait")
	// The agent destroys the volume when the DESTROY the remove sent
	// reaches it, right after the deployment ends.
	eventually(t, 2*time.Minute, "the volume to be destroyed", func() bool {
		return len(volumeDirs(t, dataDir)) == 0
	})
}

// TestTaskUserCannotReachDataDir: a data dir under a directory the task's
// user cannot enter makes the deployment fail with a reason that names the
// directory and the fix, not an empty stderr.
func TestTaskUserCannotReachDataDir(t *testing.T) {
	requirePostgres(t)
	private := filepath.Join(traversableTempDir(t), "private")
	if err := os.Mkdir(private, 0o700); err != nil { // postgres cannot enter it
		t.Fatal(err)
	}
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--api-addr", api, "--mesos-listen", mesosAddr, "--data-dir", filepath.Join(private, "data"))
	waitAPI(t, api)
	r := cli(t, api, "app", "add", "../deploy/examples/postgres.json", "--wait")
	if r.err == nil {
		t.Fatalf("app add succeeded under a private dir:\n%s", r.stdout)
	}
	want := "user postgres cannot enter " + private + " (mode 0700"
	if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "--data-dir") {
		t.Fatalf("want an error naming %q and --data-dir, got:\n%s", want, r.stderr)
	}
}
