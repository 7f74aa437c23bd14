package scheduler

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// readinessUpgrade starts a readiness-gated stateless app of 4 instances
// (upgradeStrategy minimumHealthCapacity 1, maximumOverCapacity 0.5), all
// ready, then deploys v2 (deployment d2) whose readiness check never
// passes. It returns v1 and counts, after every decision from then on,
// the live tasks on the master and how many of them are ready tasks of v1's
// configuration, failing if a ready v1 task is ever lost or more than the
// 6 tasks maxCapacity allows run.
func readinessUpgrade(t *testing.T) (*harness, *v1.App) {
	t.Helper()
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := withStrategy(readyApp("/web", "v1", 4), 1, 0.5)
	h.store.putApp(app, "d1")
	h.settle()
	for _, i := range h.instancesOf("/web") {
		h.decide(ReadinessResult{TaskID: i.Task.Id, Ready: true})
	}
	h.settle()
	if deploymentStatus(h, "d1") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("start deployment %v", h.store.deployment("d1"))
	}
	h.check = func() {
		live, readyOld := liveAndReadyOld(h)
		if readyOld < 4 {
			t.Fatalf("a ready v1 task was killed: %d ready v1 tasks of %d live", readyOld, live)
		}
		if live > 6 {
			t.Fatalf("%d live tasks, beyond maxCapacity 6", live)
		}
	}
	h.advance(time.Minute) // the v2 instances are younger
	h.store.putApp(changed(app, "v2"), "d2")
	h.settle()
	// The upgrade stands still: 2 new tasks (maxCapacity 6) never ready,
	// the 4 old ones kept (minHealthy 4).
	if live, readyOld := liveAndReadyOld(h); live != 6 || readyOld != 4 {
		t.Fatalf("during the upgrade: %d live, %d ready v1", live, readyOld)
	}
	return h, app
}

// liveAndReadyOld counts the app's tasks live on the master, and those of
// them that run v1's configuration (AppVersion v1, or v3 after a rollback
// to it) and passed their readiness check.
func liveAndReadyOld(h *harness) (live, readyOld int) {
	onMaster := map[string]bool{}
	for _, id := range h.master.liveTasks() {
		onMaster[id] = true
	}
	for _, i := range h.instancesOf("/web") {
		if !onMaster[i.GetTask().GetId()] {
			continue
		}
		live++
		if i.GetAppVersion() != "v2" && i.GetTask().GetReady() {
			readyOld++
		}
	}
	return live, readyOld
}

// Cancelling a readiness-gated upgrade without force rolls it back, as
// Marathon's DELETE /v2/deployments/{id} (api/v2/DeploymentsResource.scala;
// docs: "If force is false, a rollback deployment is started"): the rpc
// layer commits v1's definition as v3 with a new deployment and cancels d2
// in the same entry (rpc.rollBack). The never-ready v2 tasks go, the 4
// ready v1 tasks are never touched, and the rollback succeeds with them.
func TestCancelRollsBackReadinessGatedUpgrade(t *testing.T) {
	h, app := readinessUpgrade(t)
	rollback := proto.Clone(app).(*v1.App)
	rollback.Version = proto.String("v3")
	h.store.mustApply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{
		App: rollback, CancelDeployments: []string{"d2"},
		Deployment: &v1.Deployment{Id: "d3", Version: "v3", AffectedApps: []string{"/web"}, Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING},
	})
	h.settle()
	live, readyOld := liveAndReadyOld(h)
	if live != 4 || readyOld != 4 {
		t.Fatalf("after the rollback: %d live, %d ready v1; want 4 and 4", live, readyOld)
	}
	for _, i := range h.instancesOf("/web") {
		if i.GetAppVersion() != "v3" || i.GetIncarnation() > 1 {
			t.Fatalf("instance after the rollback: %v (want the v1 task kept, recorded at v3)", i)
		}
	}
	if s := deploymentStatus(h, "d3"); s != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("rollback deployment %v", h.store.deployment("d3"))
	}
	if s := deploymentStatus(h, "d2"); s != v1.DeploymentStatus_DEPLOYMENT_STATUS_CANCELED {
		t.Fatalf("cancelled deployment %v", h.store.deployment("d2"))
	}
}

// With force the deployment stops where it stands (Marathon's DELETE
// /v2/deployments/{id}?force=true, api/v2/DeploymentsResource.scala:
// "old and new tasks may be left mixed"): the ready v1 tasks are not
// replaced by never-ready v2 ones once no deployment gates readiness. The
// over-capacity tasks go (youngest first: the v2 ones) so that the app
// runs its 4 instances.
func TestForcedCancelStopsWhereItStands(t *testing.T) {
	h, _ := readinessUpgrade(t)
	h.store.cancelDeployment("d2")
	for range 5 {
		h.settle()
		h.advance(10 * time.Second)
	}
	live, readyOld := liveAndReadyOld(h)
	if live != 4 || readyOld != 4 {
		t.Fatalf("after the forced cancel: %d live, %d ready v1; want 4 and 4", live, readyOld)
	}
	// The next deployment rolls out again.
	v4 := changed(h.store.app("/web"), "v4")
	v4.ReadinessChecks = nil
	h.check = nil
	h.store.putApp(v4, "d4")
	h.settle()
	for _, i := range h.instancesOf("/web") {
		if i.GetAppVersion() != "v4" {
			t.Fatalf("after the next deployment: %v", i)
		}
	}
	if s := deploymentStatus(h, "d4"); s != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("next deployment %v", h.store.deployment("d4"))
	}
}
