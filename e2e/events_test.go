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
	// Another app's events must not pass the --app filter.
	mustCLI(t, api, "app", "add", writeFile(t, "other.json", `{"id":"/other","cmd":"sleep 1000","cpus":0.01,"mem":8}`), "--wait")
	mustCLI(t, api, "app", "scale", "/sleep", "2", "--wait")
	eventually(t, time.Minute, "the scale-up's deployment event", func() bool {
		return strings.Count(events.out.String(), "deployment_success app=/sleep") >= 2
	})
	if out := events.out.String(); strings.Contains(out, "app=/other") {
		t.Fatalf("--app filter let other apps' events through:\n%s", out)
	}
}
