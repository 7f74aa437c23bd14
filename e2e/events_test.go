package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestEventStreamCLI follows `berth events` while an app is deployed on
// `berth dev`: the status updates and the deployment's success arrive.
func TestEventStreamCLI(t *testing.T) {
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr)
	waitAPI(t, api)
	events := startProc(t, "events", "--addr", api, "events", "--app", "/sleep")
	eventually(t, time.Minute, "the event stream to attach", func() bool {
		return strings.Contains(events.out.String(), "event_stream_attached")
	})
	mustCLI(t, api, "app", "add", testdata(t, "marathon/sleep-app.json"), "--wait")
	eventually(t, time.Minute, "status and deployment events", func() bool {
		out := events.out.String()
		return strings.Contains(out, "status_update_event app=/sleep") &&
			strings.Contains(out, "state=TASK_RUNNING") &&
			strings.Contains(out, "deployment_success app=/sleep")
	})
	if out := events.out.String(); strings.Contains(out, "app=/other") {
		t.Fatalf("--app filter let other apps' events through:\n%s", out)
	}
}
