package scheduler

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// checkedStatelessApp is a stateless app with a leader-run TCP health
// check, so that "up" means running and healthy.
func checkedStatelessApp(id, version string, instances int32) *v1.App {
	a := statelessApp(id, version, instances)
	a.HealthChecks = []*v1.HealthCheck{{Protocol: proto.String("TCP")}}
	return a
}

func withStrategy(a *v1.App, minHealth, maxOver float64) *v1.App {
	a.UpgradeStrategy = &v1.UpgradeStrategy{MinimumHealthCapacity: proto.Float64(minHealth), MaximumOverCapacity: proto.Float64(maxOver)}
	return a
}

// changed returns a new version of a with a different configuration (a
// restart), keeping its instance count.
func changed(a *v1.App, version string) *v1.App {
	c := withInstances(a, version, a.GetInstances())
	c.Env = appmodel.Env(map[string]string{"VERSION": version})
	return c
}

// upHealthy counts the app's tasks that really run on the fake master and
// that Berth knows healthy: what serves traffic.
func upHealthy(h *harness, appID string) int {
	live := map[string]bool{}
	for _, id := range h.master.liveTasks() {
		live[id] = true
	}
	n := 0
	for _, i := range h.instancesOf(appID) {
		if live[i.GetTask().GetId()] && i.GetTask().GetHealthy() {
			n++
		}
	}
	return n
}

// byVersion counts the app's goal-Running instances per configuration:
// those still running the given old version, and the others.
func byVersion(h *harness, appID, oldVersion string) (old, fresh int) {
	for _, i := range h.instancesOf(appID) {
		if goalOf(i) != v1.Goal_GOAL_RUNNING {
			continue
		}
		if taskLive(i.Task) && i.AppVersion == oldVersion {
			old++
		} else {
			fresh++
		}
	}
	return old, fresh
}

// markHealthy reports a passing health check for every running task of
// the app whose health is not known yet, one decision each.
func (h *harness) markHealthy(appID string) int {
	n := 0
	for _, i := range h.instancesOf(appID) {
		if i.GetTask().GetState() == stRunning && i.GetTask().Healthy == nil {
			h.decide(HealthResult{TaskID: i.Task.Id, Healthy: true})
			n++
		}
	}
	return n
}

// markOneHealthy reports a passing health check for one running task whose
// health is not known yet; false if there is none.
func (h *harness) markOneHealthy(appID string) bool {
	for _, i := range h.instancesOf(appID) {
		if i.GetTask().GetState() == stRunning && i.GetTask().Healthy == nil {
			h.decide(HealthResult{TaskID: i.Task.Id, Healthy: true})
			return true
		}
	}
	return false
}

// launchPending lets the scheduler place waiting instances and delivers
// the status updates.
func (h *harness) launchPending() {
	h.offers()
	h.deliver()
}

func countCalls(d Decision, typ string) int {
	n := 0
	for _, c := range callTypes(d) {
		if c == typ {
			n++
		}
	}
	return n
}

func deploymentStatus(h *harness, id string) v1.DeploymentStatus {
	return h.store.deployment(id).GetStatus()
}

// startHealthy deploys app and brings all its instances up and healthy.
func startHealthy(t *testing.T, h *harness, app *v1.App) {
	t.Helper()
	h.store.putApp(app, "d-start")
	h.settle()
	h.markHealthy(app.Id)
	h.settle()
	if got := upHealthy(h, app.Id); got != int(app.GetInstances()) {
		t.Fatalf("%d healthy after start, want %d", got, app.GetInstances())
	}
	if deploymentStatus(h, "d-start") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("start deployment %v", h.store.deployment("d-start"))
	}
}

// With Marathon's stateless defaults (minimumHealthCapacity 1,
// maximumOverCapacity 1) an upgrade starts every new instance first and
// kills an old one each time a new one becomes healthy: the app never has
// fewer than its 2 instances up.
func TestStatelessUpgradeStartsNewInstancesFirst(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := checkedStatelessApp("/web", "v1", 2)
	startHealthy(t, h, app)
	h.check = func() {
		if n := upHealthy(h, "/web"); n < 2 {
			t.Fatalf("only %d instances up and healthy during the upgrade", n)
		}
	}

	h.store.putApp(changed(app, "v2"), "d2")
	// Step 1: two new instances are created, nothing is killed.
	d := h.tick()
	if n := countCalls(d, "KILL"); n != 0 {
		t.Fatalf("killed %d before any new instance was up", n)
	}
	if old, fresh := byVersion(h, "/web", "v1"); old != 2 || fresh != 2 {
		t.Fatalf("after the first tick: %d old, %d new; want 2 and 2", old, fresh)
	}
	// Step 2: they launch; running but not yet healthy, so still no kill.
	h.launchPending()
	if d := h.tick(); countCalls(d, "KILL") != 0 {
		t.Fatalf("killed an old instance while the new ones are not healthy: %v", callTypes(d))
	}
	// Step 3: one new instance becomes healthy: exactly one old one goes.
	h.markOneHealthy("/web")
	d = h.tick()
	if n := countCalls(d, "KILL"); n != 1 {
		t.Fatalf("%d kills after one new instance became healthy, want 1", n)
	}
	h.deliver()
	if old, fresh := byVersion(h, "/web", "v1"); old != 1 || fresh != 2 {
		t.Fatalf("after the first replacement: %d old, %d new", old, fresh)
	}
	if deploymentStatus(h, "d2") != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
		t.Fatalf("deployment finished early: %v", h.store.deployment("d2"))
	}
	// Step 4: the second new instance becomes healthy: the last old one goes.
	h.markOneHealthy("/web")
	d = h.tick()
	if n := countCalls(d, "KILL"); n != 1 {
		t.Fatalf("%d kills after the second new instance became healthy, want 1", n)
	}
	h.settle()
	if old, fresh := byVersion(h, "/web", "v1"); old != 0 || fresh != 2 || len(h.instancesOf("/web")) != 2 {
		t.Fatalf("after the upgrade: %d old, %d new, %d instances", old, fresh, len(h.instancesOf("/web")))
	}
	for _, i := range h.instancesOf("/web") {
		if i.AppVersion != "v2" || !i.Task.GetHealthy() {
			t.Fatalf("instance after upgrade: %v", i)
		}
	}
	if deploymentStatus(h, "d2") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment %v", h.store.deployment("d2"))
	}
	if len(h.master.reservations()) != 0 {
		t.Fatalf("stateless upgrade reserved: %v", h.master.reservations())
	}
}

// minimumHealthCapacity 1 and maximumOverCapacity 0 leave no room, so a
// non-resident app gets one instance of over-capacity: one new instance at
// a time, never fewer than 2 up, never more than 3 goal-Running.
func TestStatelessUpgradeOneExtraWhenMinHealthyEqualsMaxCapacity(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := withStrategy(checkedStatelessApp("/web", "v1", 2), 1, 0)
	startHealthy(t, h, app)
	h.check = func() {
		if n := upHealthy(h, "/web"); n < 2 {
			t.Fatalf("only %d up and healthy", n)
		}
		if old, fresh := byVersion(h, "/web", "v1"); old+fresh > 3 {
			t.Fatalf("%d goal-Running instances, over capacity 3", old+fresh)
		}
	}
	h.store.putApp(changed(app, "v2"), "d2")
	h.tick()
	if old, fresh := byVersion(h, "/web", "v1"); old != 2 || fresh != 1 {
		t.Fatalf("first tick: %d old, %d new; want one extra instance", old, fresh)
	}
	for round := 0; round < 10 && deploymentStatus(h, "d2") == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING; round++ {
		h.launchPending()
		h.markOneHealthy("/web")
		h.tick()
		h.deliver()
		h.tick()
	}
	if deploymentStatus(h, "d2") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment %v", h.store.deployment("d2"))
	}
	if old, fresh := byVersion(h, "/web", "v1"); old != 0 || fresh != 2 {
		t.Fatalf("after the upgrade: %d old, %d new", old, fresh)
	}
}

// minimumHealthCapacity 0.5 and maximumOverCapacity 0 with 4 instances:
// 2 old instances are killed at once and 2 new ones started in their
// place (4 in all); the other 2 go as the new ones become healthy.
func TestStatelessUpgradeKillsDownToMinHealthyWithoutOverCapacity(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := withStrategy(checkedStatelessApp("/web", "v1", 4), 0.5, 0)
	startHealthy(t, h, app)
	h.check = func() {
		if n := upHealthy(h, "/web"); n < 2 {
			t.Fatalf("only %d up and healthy, minHealthy is 2", n)
		}
	}
	h.store.putApp(changed(app, "v2"), "d2")
	d := h.tick()
	if n := countCalls(d, "KILL"); n != 2 {
		t.Fatalf("%d kills in the first tick, want 2", n)
	}
	if old, fresh := byVersion(h, "/web", "v1"); old != 2 || fresh != 2 {
		t.Fatalf("first tick: %d old, %d new; want 2 and 2", old, fresh)
	}
	h.deliver()
	h.launchPending()
	h.markHealthy("/web")
	h.settle()
	h.markHealthy("/web")
	h.settle()
	if old, fresh := byVersion(h, "/web", "v1"); old != 0 || fresh != 4 {
		t.Fatalf("after the upgrade: %d old, %d new", old, fresh)
	}
	if deploymentStatus(h, "d2") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment %v", h.store.deployment("d2"))
	}
}

// minimumHealthCapacity 0: every old instance is replaced at once.
func TestStatelessUpgradeWithZeroMinimumHealthReplacesAll(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := withStrategy(statelessApp("/web", "v1", 2), 0, 0)
	h.store.putApp(app, "")
	h.settle()
	h.store.putApp(changed(app, "v2"), "d2")
	d := h.tick()
	if n := countCalls(d, "KILL"); n != 2 {
		t.Fatalf("%d kills, want 2", n)
	}
	if old, fresh := byVersion(h, "/web", "v1"); old != 0 || fresh != 2 {
		t.Fatalf("%d old, %d new", old, fresh)
	}
	h.settle()
	if deploymentStatus(h, "d2") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED || len(h.instancesOf("/web")) != 2 {
		t.Fatalf("deployment %v, %d instances", h.store.deployment("d2"), len(h.instancesOf("/web")))
	}
}

// An old instance that is not up (here: unhealthy) is replaced at once,
// without waiting: killing it costs no capacity.
func TestStatelessUpgradeReplacesUnhealthyOldInstanceAtOnce(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := checkedStatelessApp("/web", "v1", 2)
	startHealthy(t, h, app)
	sick := h.instancesOf("/web")[0]
	h.decide(HealthResult{TaskID: sick.Task.Id, Healthy: false})
	h.store.putApp(changed(app, "v2"), "d2")
	d := h.tick()
	if n := countCalls(d, "KILL"); n != 1 || goalOf(h.store.instance(sick.Id)) != v1.Goal_GOAL_DECOMMISSIONED {
		t.Fatalf("unhealthy old instance not replaced at once: %d kills, %v", n, h.store.instance(sick.Id))
	}
	if old, fresh := byVersion(h, "/web", "v1"); old != 1 || fresh != 2 {
		t.Fatalf("%d old, %d new", old, fresh)
	}
}

// Scaling down in the middle of an upgrade drops surplus new instances and
// still keeps minHealthy of the new count up until the end.
func TestStatelessUpgradeScaledDownMidway(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := checkedStatelessApp("/web", "v1", 3)
	startHealthy(t, h, app)
	v2 := changed(app, "v2")
	h.store.putApp(v2, "d2")
	h.tick()
	if old, fresh := byVersion(h, "/web", "v1"); old != 3 || fresh != 3 {
		t.Fatalf("%d old, %d new", old, fresh)
	}
	h.store.cancelDeployment("d2")
	h.store.putApp(withInstances(v2, "v3", 1), "d3")
	h.check = func() {
		if n := upHealthy(h, "/web"); n < 1 {
			t.Fatalf("nothing up")
		}
	}
	h.tick()
	if old, fresh := byVersion(h, "/web", "v1"); old != 1 || fresh != 1 {
		t.Fatalf("after the scale down: %d old, %d new; want 1 and 1", old, fresh)
	}
	h.launchPending()
	h.markHealthy("/web")
	h.settle()
	if n := len(h.instancesOf("/web")); n != 1 || deploymentStatus(h, "d3") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("%d instances, deployment %v", n, h.store.deployment("d3"))
	}
}

// A scale-only change restarts nothing: the instances get the new version
// recorded.
func TestStatelessScaleOnlyDoesNotRestart(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := checkedStatelessApp("/web", "v1", 2)
	startHealthy(t, h, app)
	before := len(h.master.launched)
	h.store.putApp(withInstances(app, "v2", 3), "d2")
	h.settle()
	h.markHealthy("/web")
	h.settle()
	if got := len(h.master.launched) - before; got != 1 {
		t.Fatalf("%d launches for a scale from 2 to 3, want 1", got)
	}
	for _, i := range h.instancesOf("/web") {
		if i.AppVersion != "v2" || i.Incarnation != 1 {
			t.Fatalf("instance %v", i)
		}
	}
	if deploymentStatus(h, "d2") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment %v", h.store.deployment("d2"))
	}
}

func TestCapacityBounds(t *testing.T) {
	for _, tc := range []struct {
		instances          int32
		minHealth, maxOver float64
		resident           bool
		minHealthy, maxCap int
	}{
		{2, 1, 1, false, 2, 4},
		{2, 1, 0, false, 2, 2},
		{4, 0.5, 0, false, 2, 4},
		{10, 0.7, 0.3, false, 7, 13},
		{3, 0.5, 0.1, false, 2, 3},
		{4, 0.5, 1, true, 2, 4}, // resident: maximumOverCapacity is always 0
		{0, 1, 1, false, 0, 0},
	} {
		a := withStrategy(statelessApp("/x", "v", tc.instances), tc.minHealth, tc.maxOver)
		if tc.resident {
			a = withStrategy(residentApp("/x", "v", tc.instances), tc.minHealth, tc.maxOver)
		}
		mh, mc := capacityBounds(a)
		if mh != tc.minHealthy || mc != tc.maxCap {
			t.Errorf("%+v: minHealthy %d maxCapacity %d", tc, mh, mc)
		}
	}
}
