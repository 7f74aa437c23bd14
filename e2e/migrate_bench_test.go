package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMigrateDowntimeBySize measures migration downtime (the app's task
// stopped → its new task running on the other agent) for volumes of
// BERTH_BENCH_MIGRATE_MB (comma-separated MB, e.g. "10,100,500") of
// random (incompressible) data, on berth dev --agents 2. Skipped unless
// set: it is a measurement for BENCHMARKS.md, not a check.
func TestMigrateDowntimeBySize(t *testing.T) {
	sizes := os.Getenv("BERTH_BENCH_MIGRATE_MB")
	if sizes == "" {
		t.Skip("set BERTH_BENCH_MIGRATE_MB=10,100,500 to measure")
	}
	dataDir := traversableTempDir(t)
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", dataDir, "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "2")
	waitAPI(t, api)
	for _, mb := range strings.Split(sizes, ",") {
		app := "/blob" + mb
		mustCLI(t, api, "app", "add", writeFile(t, "blob"+mb+".json", blobApp(app, mustAtoi(t, mb))), "--wait")
		first := waitHealthy(t, api, app, nil)
		start := time.Now()
		out := mustCLI(t, api, "instance", "migrate", first.InstanceID, "--wait")
		total := time.Since(start)
		done := out[strings.LastIndex(out, "done:"):]
		m := downtimeRE.FindStringSubmatch(done)
		if m == nil {
			t.Fatalf("migrate output:\n%s", out)
		}
		t.Logf("%s MB: downtime %s, whole migration %s (%s)", mb, m[1], total.Round(100*time.Millisecond), strings.TrimSpace(done))
		mustCLI(t, api, "app", "remove", app)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
		t.Fatalf("size %q: %v", s, err)
	}
	return n
}

// blobApp is a resident app whose first start writes mb MB of random
// (incompressible) bytes to data/blob in its volume; it is healthy once
// the file is complete.
func blobApp(id string, mb int) string {
	return fmt.Sprintf(`{"id": %q, "instances": 1, "cpus": 0.2, "mem": 64, "disk": 0,
  "cmd": "test -f data/blob || { head -c %dM /dev/urandom > data/blob.tmp && sync && mv data/blob.tmp data/blob; }; sleep 100000",
  "healthChecks": [{"protocol": "COMMAND", "command": {"value": "test -f data/blob"}, "intervalSeconds": 1, "gracePeriodSeconds": 300}],
  "container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": %d}}]}}`,
		id, mb, mb+64)
}
