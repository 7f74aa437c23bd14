package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// marathonPython is the Python with the Debian package python3-marathon.
const marathonPython = "/usr/bin/python3"

// requireMarathonClient skips when python3-marathon is not installed,
// except on CI where .ci/run installs it and a skip would hide a broken
// install.
func requireMarathonClient(t *testing.T) {
	t.Helper()
	if exec.Command(marathonPython, "-c", "import marathon").Run() == nil {
		return
	}
	msg := "needs the Debian package python3-marathon (apt-get install -y python3-marathon)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// runMarathonClient runs e2e/marathon_client.py against a /v2 API.
func runMarathonClient(t *testing.T, api, appID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, marathonPython, "marathon_client.py", "http://"+api, appID)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "OK") {
		t.Fatalf("python-marathon flow against %s failed (%v):\n%s", api, err, out)
	}
	t.Logf("python-marathon:\n%s", out)
}

// TestMarathonClientDev runs a Marathon client library someone else wrote
// (python-marathon) against `berth dev`: create, list, label selector,
// tasks, scale to 0 and back on the same berth, restart, kill, events,
// errors (422, 404, 409) and delete.
func TestMarathonClientDev(t *testing.T) {
	requireMarathonClient(t)
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr)
	waitAPI(t, api)
	runMarathonClient(t, api, "/pg-dev")
}

// TestMarathonClientCluster runs the same flow against a 3-server cluster
// through a follower: writes are forwarded to the leader, the event stream
// relays the leader's.
func TestMarathonClientCluster(t *testing.T) {
	requireMarathonClient(t)
	c := startCluster(t, 3)
	leader := c.stableLeader()
	follower := c.others(leader)[0]
	runMarathonClient(t, follower.api, "/pg-ha")
}
