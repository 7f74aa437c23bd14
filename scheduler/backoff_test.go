package scheduler

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// Marathon keys its launch delay by the app's configuration version
// (core/launchqueue/impl/RateLimiter.scala) and resets it when a new
// version is deployed: an instance waiting out its backoff after a crash
// launches the new configuration at the next offer. A pure scale keeps the
// delay.
func TestNewVersionResetsBackoff(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := residentApp("/pg", "v1", 1)
	app.BackoffSeconds = proto.Float64(200)
	h.store.putApp(app, "d1")
	h.settle()
	h.master.crash(h.only("/pg").Task.Id)
	h.deliver()
	if i := h.only("/pg"); i.LaunchNotBefore == nil || !i.LaunchNotBefore.AsTime().Equal(h.now.Add(200*time.Second)) || i.ConsecutiveFailures != 1 {
		t.Fatalf("backoff after the crash: %v", i)
	}

	// A scale (same configuration) keeps the delay.
	h.store.putApp(withInstances(app, "v2", 1), "d2")
	h.settle()
	if i := h.only("/pg"); i.LaunchNotBefore == nil || taskLive(i.Task) {
		t.Fatalf("a scale-only version cleared the backoff or launched: %v", i)
	}

	// A new configuration clears it: launched at once, as v3.
	h.store.putApp(changed(app, "v3"), "d3")
	h.settle()
	i := h.only("/pg")
	if i.LaunchNotBefore != nil || i.ConsecutiveFailures != 0 || i.Task.GetState() != stRunning || i.Task.GetAppVersion() != "v3" {
		t.Fatalf("after the new version: %v", i)
	}
}
