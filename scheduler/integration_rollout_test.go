package scheduler

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestIntegrationStatelessRollingUpgrade upgrades a stateless app of 2
// instances (Marathon's defaults: minimumHealthCapacity 1,
// maximumOverCapacity 1) on mesos-local. Its tasks are small HTTP servers
// with a leader-run HTTP health check, and a readiness check that passes
// only once the task wrote a "ready" file, a moment after it started. At
// every committed state during the upgrade at least 2 instances are meant
// to run (goal Running: none of them is being killed), run and are
// healthy; new instances start before old ones are killed; the deployment
// succeeds with 2 new instances.
func TestIntegrationStatelessRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mesos-local")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("needs python3 for a tiny HTTP server")
	}
	// A port range of its own: processes of other tests' clusters may still
	// hold ports in the common range.
	c := startCluster(t, 1, "cpus:2;mem:1024;disk:1000;ports:[32700-32800]", false)
	c.startScheduler(Config{})
	app := &v1.App{
		Id: "/web", Version: proto.String("2025-01-01T00:00:00Z"),
		Cmd:       proto.String(`(sleep 1; touch ready) & exec python3 -m http.server "$PORT0" --bind 127.0.0.1`),
		Instances: proto.Int32(2), Cpus: proto.Float64(0.1), Mem: proto.Float64(32),
		PortDefinitions: []*v1.PortDefinition{{Port: proto.Int32(0), Name: proto.String("http")}},
		HealthChecks: []*v1.HealthCheck{{
			Protocol: proto.String("HTTP"), Path: proto.String("/"), PortIndex: proto.Int32(0), GracePeriodSeconds: proto.Int32(60),
			IntervalSeconds: proto.Int32(1), TimeoutSeconds: proto.Int32(2), MaxConsecutiveFailures: proto.Int32(3),
		}},
		ReadinessChecks: []*v1.ReadinessCheck{{
			Name: proto.String("ready-file"), Protocol: proto.String("HTTP"), Path: proto.String("/ready"), PortName: proto.String("http"),
			IntervalSeconds: proto.Int32(1), TimeoutSeconds: proto.Int32(2), HttpStatusCodesForReady: []int32{200},
		}},
	}
	c.createApp(app, "d1")
	c.waitFor("2 instances running, healthy and ready; deployment done", 90*time.Second, func() bool {
		return upAndServing(c.instances("/web"), app.GetVersion()) == 2 && c.deploymentDone("d1")
	})

	// Watch every committed state from now on.
	var (
		violation string
		maxGoal   int
		commits   int
	)
	c.mu.Lock()
	c.afterApply = func() {
		is := fsm.NewTestReader(c.t, c.f.State).InstancesByApp("/web")
		commits++
		if n := upAndServing(is, ""); n < 2 && violation == "" {
			violation = fmt.Sprintf("commit %d: only %d instances running, healthy and not being killed: %v", commits, n, is)
		}
		goal := 0
		for _, i := range is {
			if goalOf(i) == v1.Goal_GOAL_RUNNING {
				goal++
			}
		}
		maxGoal = max(maxGoal, goal)
	}
	c.mu.Unlock()

	v2 := proto.Clone(app).(*v1.App)
	v2.Version = proto.String("2025-01-01T00:00:01Z")
	v2.Env = appmodel.Env(map[string]string{"COLOR": "blue"})
	c.updateApp(v2, "d2")
	c.waitFor("upgrade deployment done", 120*time.Second, func() bool { return c.deploymentDone("d2") })

	c.mu.Lock()
	c.afterApply = nil
	gotViolation, gotMax, gotCommits := violation, maxGoal, commits
	c.mu.Unlock()
	if gotViolation != "" {
		t.Fatal(gotViolation)
	}
	if gotMax != 4 {
		t.Fatalf("at most %d goal-Running instances during the upgrade; want 4 (2 new started before any old one was killed)", gotMax)
	}
	is := c.instances("/web")
	if len(is) != 2 || upAndServing(is, v2.GetVersion()) != 2 {
		t.Fatalf("after the upgrade (%d commits watched): %v", gotCommits, is)
	}
	for _, i := range is {
		if !i.GetTask().GetReady() {
			t.Fatalf("new task not ready: %v", i)
		}
	}
}

// upAndServing counts goal-Running instances whose task runs and is
// healthy (and ready, when it runs version); version "" counts any version.
func upAndServing(is []*v1.Instance, version string) int {
	n := 0
	for _, i := range is {
		t := i.GetTask()
		if goalOf(i) != v1.Goal_GOAL_RUNNING || t.GetState() != stRunning || !t.GetHealthy() {
			continue
		}
		if version != "" && (i.GetAppVersion() != version || !t.GetReady()) {
			continue
		}
		n++
	}
	return n
}

// TestIntegrationAcceptedResourceRoles runs on a mesos-local agent whose
// cpus and mem are mostly statically reserved for the framework's role: a
// stateless app accepting ["berth"] runs there on the reserved resources
// (mesos-local checks that the task's resources are offered ones); an app
// with the default (unreserved only) does not fit.
func TestIntegrationAcceptedResourceRoles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mesos-local")
	}
	c := startCluster(t, 1, "cpus:0.05;mem:16;disk:100;ports:[32900-32901];cpus(berth):1;mem(berth):256;ports(berth):[32910-32919]", false)
	c.startScheduler(Config{})
	reserved := &v1.App{
		Id: "/reserved", Version: proto.String("2025-01-01T00:00:00Z"), Cmd: proto.String("exec sleep 3600"),
		Instances: proto.Int32(2), Cpus: proto.Float64(0.1), Mem: proto.Float64(32),
		PortDefinitions:       []*v1.PortDefinition{{Port: proto.Int32(0)}},
		AcceptedResourceRoles: []string{"berth"},
	}
	plain := proto.Clone(reserved).(*v1.App)
	plain.Id = "/plain"
	plain.AcceptedResourceRoles = nil
	c.createApp(reserved, "d-reserved")
	c.createApp(plain, "d-plain")
	c.waitFor("the reserved-role app running", 60*time.Second, func() bool {
		n := 0
		for _, i := range c.instances("/reserved") {
			if runningTask(i) {
				n++
			}
		}
		return n == 2 && c.deploymentDone("d-reserved")
	})
	for _, i := range c.instances("/reserved") {
		if p := i.GetTask().GetPorts(); len(p) != 1 || p[0] < 32910 || p[0] > 32919 {
			t.Fatalf("task ports %v not from the reserved range", p)
		}
	}
	for _, i := range c.instances("/plain") {
		if taskLive(i.GetTask()) {
			t.Fatalf("an app accepting only unreserved resources runs: %v", i)
		}
	}
	if d := fsm.NewTestReader(c.t, c.f.State).Deployment("d-plain"); d.GetStatus() != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
		t.Fatalf("d-plain %v", d)
	}
	if r := c.opsFor("RESERVE"); len(r) != 0 {
		t.Fatalf("stateless apps reserved resources: %v", r)
	}
}
