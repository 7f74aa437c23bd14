package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/fsm"
	"github.com/berth-dev/berth/mesoslocal"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// cluster is an in-process Berth without Raft: an FSM applied directly,
// mesos-local, and the scheduler under test.
type cluster struct {
	t       *testing.T
	workDir string
	ml      *mesoslocal.Cluster
	f       *fsm.FSM
	mu      sync.Mutex
	index   uint64
	events  []*v1.Event
	cancel  context.CancelFunc
	done    chan error

	// afterApply, when set (under mu), runs after every entry applied
	// without error, with mu held: e.g. to check a bound at every moment.
	afterApply func()
	// observer, when set before startScheduler, is the scheduler's
	// Deps.Observer (the metrics benchmarks).
	observer Observer
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("BERTH_TEST_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startCluster(t *testing.T, agents int, resources string, simulate bool) *cluster {
	t.Helper()
	return startClusterWith(t, agents, resources, simulate, 100*time.Millisecond)
}

func startClusterWith(t *testing.T, agents int, resources string, simulate bool, allocation time.Duration) *cluster {
	t.Helper()
	c := &cluster{t: t, f: fsm.New(testLogger(t))}
	if !simulate {
		c.workDir = t.TempDir()
	}
	ml, err := mesoslocal.New(mesoslocal.Config{
		Listen: "127.0.0.1:0", WorkDir: c.workDir, Agents: agents, AgentResources: resources,
		Simulate: simulate, Logger: testLogger(t), AllocationInterval: allocation,
		KillGracePeriod: 2 * time.Second,
		// Close stops the tasks: the test starts no process it leaves behind.
		KillTasksOnClose: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ml.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.ml = ml
	t.Cleanup(func() { _ = ml.Close() })
	return c
}

func (c *cluster) apply(typ v1.CommandType, msg proto.Message) error {
	data, err := fsm.Encode(typ, msg)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index++
	res := c.f.Apply(&raft.Log{Index: c.index, Type: raft.LogCommand, Data: data}).(*fsm.ApplyResult)
	if res.Err == nil && c.afterApply != nil {
		c.afterApply()
	}
	return res.Err
}

func (c *cluster) deps() Deps {
	return Deps{
		Store: func() Store { return liveStore{c.f.State()} },
		Commit: func(ctx context.Context, plan *v1.SchedulerPlanCommand) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return c.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, plan)
		},
		SetFrameworkID: func(ctx context.Context, id string) error {
			return c.apply(v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: id})
		},
		Publish: func(e *v1.Event) {
			c.mu.Lock()
			c.events = append(c.events, e)
			c.mu.Unlock()
		},
		Observer: c.observer,
	}
}

func (c *cluster) startScheduler(cfg Config) {
	c.t.Helper()
	cfg.MesosMaster = c.ml.URL()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(c.t)
	}
	if cfg.RefuseSeconds == 0 {
		cfg.RefuseSeconds = time.Second
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	s := New(cfg, c.deps())
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan error, 1)
	go func() { c.done <- s.Run(ctx) }()
	c.t.Cleanup(c.stopScheduler)
}

func (c *cluster) stopScheduler() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	select {
	case err := <-c.done:
		if err != nil {
			c.t.Errorf("scheduler Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		c.t.Errorf("scheduler did not stop within 30s of cancel")
	}
	c.cancel = nil
}

// waitFor polls cond until it holds or the deadline passes.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			is := fsm.NewTestReader(c.t, c.f.State).Instances()
			if len(is) > 3 {
				is = is[:3]
			}
			c.t.Fatalf("timed out after %v waiting for %s\n%d instances, first: %v", timeout, what, len(fsm.NewTestReader(c.t, c.f.State).Instances()), is)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) createApp(a *v1.App, deploymentID string) {
	c.t.Helper()
	err := c.apply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: a, Deployment: &v1.Deployment{
		Id: deploymentID, Version: a.GetVersion(), AffectedApps: []string{a.GetId()}, Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING,
	}})
	if err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) updateApp(a *v1.App, deploymentID string) {
	c.t.Helper()
	err := c.apply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{App: a, Deployment: &v1.Deployment{
		Id: deploymentID, Version: a.GetVersion(), AffectedApps: []string{a.GetId()}, Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING,
	}})
	if err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) deleteApp(id, deploymentID string) {
	c.t.Helper()
	err := c.apply(v1.CommandType_COMMAND_TYPE_APP_DELETE, &v1.AppDeleteCommand{AppId: id, Deployment: &v1.Deployment{
		Id: deploymentID, AffectedApps: []string{id}, Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING,
	}})
	if err != nil {
		c.t.Fatal(err)
	}
}

// putInstance commits an instance change the way the rpc layer does for
// kill and wipe.
func (c *cluster) putInstance(i *v1.Instance) {
	c.t.Helper()
	if err := c.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{i}}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) instances(appID string) []*v1.Instance {
	return fsm.NewTestReader(c.t, c.f.State).InstancesByApp(appID)
}

func (c *cluster) deploymentDone(id string) bool {
	d := fsm.NewTestReader(c.t, c.f.State).Deployment(id)
	return d != nil && d.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED
}

// volumeFile reads a file in a persistent volume on mesos-local's disk.
func (c *cluster) volumeFile(pid, name string) (string, bool) {
	matches, _ := filepath.Glob(filepath.Join(c.workDir, "agents", "*", "volumes", "roles", "berth", pid, name))
	if len(matches) == 0 {
		return "", false
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		return "", false
	}
	return string(b), true
}

// reservedOnAgents asks mesos-local's operator API (GET_AGENTS) for
// dynamically reserved resources left on any agent.
func (c *cluster) reservedOnAgents() []string {
	c.t.Helper()
	call := &master.Call{Type: master.Call_GET_AGENTS}
	body, err := call.Marshal()
	if err != nil {
		c.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, c.ml.URL()+"/api/v1", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Accept", "application/x-protobuf")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET_AGENTS: %s: %s", resp.Status, raw)
	}
	var out master.Response
	if err := out.Unmarshal(raw); err != nil {
		c.t.Fatalf("GET_AGENTS: %v", err)
	}
	var reserved []string
	for _, a := range out.GetGetAgents().GetAgents() {
		for _, r := range a.TotalResources {
			if !isUnreserved(&r) {
				reserved = append(reserved, fmt.Sprintf("%s: %s", a.AgentInfo.GetID().GetValue(), mesos.Resources{r}))
			}
		}
	}
	return reserved
}

func (c *cluster) opsFor(op string) []mesoslocal.OperationRecord {
	var out []mesoslocal.OperationRecord
	for _, r := range c.ml.Operations() {
		if r.Op == op {
			out = append(out, r)
		}
	}
	return out
}

func runningTask(i *v1.Instance) bool {
	return goalOf(i) == v1.Goal_GOAL_RUNNING && i.GetTask().GetState() == stRunning
}

// TestIntegrationResidentLifecycle runs the seed lifecycle against a real
// mesos-local: persistent data survives stop/start and crashes, wipe gives
// a new volume, and removal leaves no reservation behind.
func TestIntegrationResidentLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mesos-local")
	}
	c := startCluster(t, 1, "cpus:4;mem:2048;disk:4000;ports:[31000-31100]", false)
	c.startScheduler(Config{ReservationTimeout: 20 * time.Second})
	c.waitFor("framework id committed", 30*time.Second, func() bool { return fsm.NewTestReader(c.t, c.f.State).FrameworkID() != "" })
	fid := fsm.NewTestReader(c.t, c.f.State).FrameworkID()

	app := &v1.App{
		Id: "/db/pg", Version: proto.String("2025-01-01T00:00:00Z"), Cmd: proto.String(`echo "$MESOS_TASK_ID" >> data/runs && exec sleep 3600`),
		Instances: proto.Int32(1), Cpus: proto.Float64(0.1), Mem: proto.Float64(32), Disk: proto.Float64(1),
		PortDefinitions: []*v1.PortDefinition{{Port: proto.Int32(0), Name: proto.String("pg")}},
		Container: &v1.Container{Type: proto.String("MESOS"), Volumes: []*v1.Volume{{
			ContainerPath: "data", Mode: proto.String("RW"), Persistent: &v1.PersistentVolume{Size: proto.Float64(10)},
		}}},
	}
	c.createApp(app, "d-create")
	c.waitFor("instance running with a confirmed berth", 60*time.Second, func() bool {
		is := c.instances("/db/pg")
		return len(is) == 1 && runningTask(is[0]) && resState(is[0]) == v1.ReservationState_RESERVATION_STATE_RESERVED
	})
	c.waitFor("create deployment succeeded", 30*time.Second, func() bool { return c.deploymentDone("d-create") })
	inst := c.instances("/db/pg")[0]
	pid := inst.GetReservation().GetVolumes()[0].GetPersistenceId()
	agent := inst.GetReservation().GetAgentId()
	c.waitFor("first run written to the volume", 30*time.Second, func() bool {
		s, _ := c.volumeFile(pid, "runs")
		return strings.Count(s, "\n") == 1
	})
	if recs := c.opsFor("RESERVE"); len(recs) == 0 || recs[0].FrameworkID != fid {
		t.Fatalf("RESERVE records %v", recs)
	}

	// Stop keeps the reservation and volume.
	stopped := proto.Clone(app).(*v1.App)
	stopped.Instances = proto.Int32(0)
	stopped.Version = proto.String("2025-01-01T00:00:01Z")
	c.updateApp(stopped, "d-stop")
	c.waitFor("stop deployment succeeded", 60*time.Second, func() bool { return c.deploymentDone("d-stop") })
	inst = c.instances("/db/pg")[0]
	if goalOf(inst) != v1.Goal_GOAL_STOPPED || taskLive(inst.GetTask()) || resState(inst) != v1.ReservationState_RESERVATION_STATE_RESERVED {
		t.Fatalf("stopped instance %v", inst)
	}
	if r := c.reservedOnAgents(); len(r) == 0 {
		t.Fatalf("reservation gone after stop")
	}

	// Start: same agent, same persistence id, data intact.
	started := proto.Clone(app).(*v1.App)
	started.Version = proto.String("2025-01-01T00:00:02Z")
	c.updateApp(started, "d-start")
	c.waitFor("start deployment succeeded", 60*time.Second, func() bool { return c.deploymentDone("d-start") })
	inst = c.instances("/db/pg")[0]
	if inst.GetReservation().GetAgentId() != agent || inst.GetReservation().GetVolumes()[0].GetPersistenceId() != pid || inst.GetIncarnation() != 2 {
		t.Fatalf("restarted elsewhere: %v", inst)
	}
	c.waitFor("second run appended to the same volume", 30*time.Second, func() bool {
		s, _ := c.volumeFile(pid, "runs")
		return strings.Count(s, "\n") == 2
	})

	// Plain kill (as rpc's KillTask without wipe): relaunched on the berth.
	killed := proto.Clone(inst).(*v1.Instance)
	killed.Task.KillRequestedAt = timestamppb.Now()
	c.putInstance(killed)
	c.waitFor("relaunch after kill", 60*time.Second, func() bool {
		is := c.instances("/db/pg")
		return len(is) == 1 && is[0].GetIncarnation() == 3 && runningTask(is[0])
	})
	c.waitFor("third run on the same volume", 30*time.Second, func() bool {
		s, _ := c.volumeFile(pid, "runs")
		return strings.Count(s, "\n") == 3
	})

	// Wipe: the berth is destroyed and a fresh instance gets a new volume.
	inst = c.instances("/db/pg")[0]
	wiped := proto.Clone(inst).(*v1.Instance)
	wiped.Goal = v1.Goal_GOAL_DECOMMISSIONED
	c.putInstance(wiped)
	c.waitFor("replacement instance running", 90*time.Second, func() bool {
		is := c.instances("/db/pg")
		return len(is) == 1 && is[0].GetId() != inst.GetId() && runningTask(is[0]) &&
			resState(is[0]) == v1.ReservationState_RESERVATION_STATE_RESERVED
	})
	fresh := c.instances("/db/pg")[0]
	if np := fresh.GetReservation().GetVolumes()[0].GetPersistenceId(); np == pid {
		t.Fatalf("wipe kept persistence id %s", pid)
	}
	destroyed := false
	for _, r := range c.opsFor("DESTROY") {
		for _, p := range r.PersistenceIDs {
			if p == pid {
				destroyed = true
			}
		}
	}
	if !destroyed {
		t.Fatalf("no DESTROY of %s: %v", pid, c.opsFor("DESTROY"))
	}

	// Remove: DESTROY + UNRESERVE, nothing reserved left, instance forgotten.
	c.deleteApp("/db/pg", "d-remove")
	c.waitFor("app instances forgotten", 90*time.Second, func() bool { return len(c.instances("/db/pg")) == 0 })
	c.waitFor("removal deployment succeeded", 30*time.Second, func() bool { return c.deploymentDone("d-remove") })
	c.waitFor("no reserved resources left", 30*time.Second, func() bool { return len(c.reservedOnAgents()) == 0 })
	if len(c.opsFor("UNRESERVE")) < 2 {
		t.Fatalf("UNRESERVE records %v", c.opsFor("UNRESERVE"))
	}
}

// TestIntegrationStatelessScale scales a stateless app 1 → 3 → 0: no
// reservations are made and ended instances are forgotten.
func TestIntegrationStatelessScale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mesos-local")
	}
	c := startCluster(t, 2, "cpus:2;mem:1024;disk:1000;ports:[31000-31100]", false)
	c.startScheduler(Config{})
	app := &v1.App{
		Id: "/web", Version: proto.String("2025-01-01T00:00:00Z"), Cmd: proto.String("exec sleep 3600"),
		Instances: proto.Int32(1), Cpus: proto.Float64(0.1), Mem: proto.Float64(16),
		PortDefinitions: []*v1.PortDefinition{{Port: proto.Int32(0)}},
	}
	c.createApp(app, "d1")
	c.waitFor("one instance running", 60*time.Second, func() bool {
		is := c.instances("/web")
		return len(is) == 1 && runningTask(is[0]) && c.deploymentDone("d1")
	})
	three := proto.Clone(app).(*v1.App)
	three.Instances = proto.Int32(3)
	three.Version = proto.String("2025-01-01T00:00:01Z")
	c.updateApp(three, "d2")
	c.waitFor("three instances running", 60*time.Second, func() bool {
		n := 0
		for _, i := range c.instances("/web") {
			if runningTask(i) {
				n++
			}
		}
		return n == 3 && c.deploymentDone("d2")
	})
	zero := proto.Clone(app).(*v1.App)
	zero.Instances = proto.Int32(0)
	zero.Version = proto.String("2025-01-01T00:00:02Z")
	c.updateApp(zero, "d3")
	c.waitFor("all instances forgotten", 60*time.Second, func() bool { return len(c.instances("/web")) == 0 && c.deploymentDone("d3") })
	if r := c.opsFor("RESERVE"); len(r) != 0 {
		t.Fatalf("stateless app reserved resources: %v", r)
	}
	if r := c.reservedOnAgents(); len(r) != 0 {
		t.Fatalf("reserved: %v", r)
	}
}

// TestIntegrationHealthKill runs a resident app whose TCP health check
// passes while a marker file is absent from its volume; once the marker is
// written, the leader's checks fail, the task is killed and relaunched on
// the same berth (its goal unchanged).
func TestIntegrationHealthKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mesos-local")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs python3 for a tiny TCP server")
	}
	// A port range of its own: processes of other tests' clusters may still
	// hold ports in the common range.
	c := startCluster(t, 1, "cpus:2;mem:1024;disk:1000;ports:[32500-32600]", false)
	c.startScheduler(Config{})
	// A TCP server on PORT0 that stops accepting once data/sick exists.
	server := `import os,socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT0"]))); s.listen(16); s.settimeout(0.2)
while not os.path.exists("data/sick"):
    try:
        c,_=s.accept(); c.close()
    except socket.timeout:
        pass
s.close()
time.sleep(3600)
`
	app := &v1.App{
		Id: "/hc", Version: proto.String("2025-01-01T00:00:00Z"),
		Cmd:       proto.String("rm -f data/sick; exec python3 -c '" + server + "'"),
		Instances: proto.Int32(1), Cpus: proto.Float64(0.1), Mem: proto.Float64(32),
		PortDefinitions: []*v1.PortDefinition{{Port: proto.Int32(0)}},
		Container: &v1.Container{Type: proto.String("MESOS"), Volumes: []*v1.Volume{{
			ContainerPath: "data", Mode: proto.String("RW"), Persistent: &v1.PersistentVolume{Size: proto.Float64(5)},
		}}},
		HealthChecks: []*v1.HealthCheck{{
			Protocol: proto.String("TCP"), PortIndex: proto.Int32(0), GracePeriodSeconds: proto.Int32(30),
			IntervalSeconds: proto.Int32(1), TimeoutSeconds: proto.Int32(1), MaxConsecutiveFailures: proto.Int32(2),
		}},
	}
	c.createApp(app, "d1")
	c.waitFor("healthy instance and deployment done", 60*time.Second, func() bool {
		is := c.instances("/hc")
		return len(is) == 1 && runningTask(is[0]) && is[0].GetTask().GetHealthy() && c.deploymentDone("d1")
	})
	inst := c.instances("/hc")[0]
	pid := inst.GetReservation().GetVolumes()[0].GetPersistenceId()
	matches, _ := filepath.Glob(filepath.Join(c.workDir, "agents", "*", "volumes", "roles", "berth", pid))
	if len(matches) != 1 {
		t.Fatalf("volume dir for %s: %v", pid, matches)
	}
	if err := os.WriteFile(filepath.Join(matches[0], "sick"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.waitFor("relaunched after failed health checks", 60*time.Second, func() bool {
		is := c.instances("/hc")
		return len(is) == 1 && is[0].GetIncarnation() > inst.GetIncarnation() && runningTask(is[0]) && is[0].GetTask().GetHealthy()
	})
	again := c.instances("/hc")[0]
	if again.GetId() != inst.GetId() || again.GetReservation().GetVolumes()[0].GetPersistenceId() != pid || goalOf(again) != v1.Goal_GOAL_RUNNING {
		t.Fatalf("relaunch left the berth: %v", again)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var kills, healthEvents int
	for _, e := range c.events {
		switch e.GetType() {
		case "unhealthy_instance_kill_event":
			kills++
		case "health_status_changed_event":
			healthEvents++
		}
	}
	if kills == 0 || healthEvents < 3 {
		t.Fatalf("events: %d kills, %d health changes", kills, healthEvents)
	}
}

// operatorCall posts one operator API call to mesos-local.
func (c *cluster) operatorCall(call *master.Call) {
	c.t.Helper()
	body, err := call.Marshal()
	if err != nil {
		c.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, c.ml.URL()+"/api/v1", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Accept", "application/x-protobuf")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		c.t.Fatalf("%s: %s: %s", call.Type, resp.Status, raw)
	}
}

// TestIntegrationFailoverKeepsTasks stops the scheduler (leadership lost)
// and starts a new one on the same state: it resubscribes with the stored
// framework id, reconciles, leaves the running task alone and goes on
// scheduling.
func TestIntegrationFailoverKeepsTasks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mesos-local")
	}
	c := startCluster(t, 1, "cpus:2;mem:1024;disk:1000;ports:[31000-31100]", false)
	c.startScheduler(Config{})
	app := residentApp("/kv", "2025-01-01T00:00:00Z", 1)
	app.Cmd = proto.String("exec sleep 3600")
	app.Cpus = proto.Float64(0.1)
	app.Mem = proto.Float64(16)
	app.Container.Volumes[0].Persistent.Size = proto.Float64(5)
	c.createApp(app, "d1")
	c.waitFor("running", 60*time.Second, func() bool {
		is := c.instances("/kv")
		return len(is) == 1 && runningTask(is[0]) && c.deploymentDone("d1")
	})
	fid := fsm.NewTestReader(c.t, c.f.State).FrameworkID()
	before := c.instances("/kv")[0]
	c.stopScheduler()

	logs := &lockedBuffer{}
	c.startScheduler(Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	// The new leader's explicit reconciliation of the running task ends.
	c.waitFor("reconciliation complete", 60*time.Second, func() bool {
		return strings.Contains(logs.String(), `msg="reconciliation complete" component=scheduler tasks=1 took=`)
	})
	c.mu.Lock()
	var reconciled []string
	for _, e := range c.events {
		if e.Type == EventReconciliationComplete {
			reconciled = append(reconciled, e.Message)
		}
	}
	c.mu.Unlock()
	// The first leader had no task to reconcile; the second had one.
	if len(reconciled) != 2 || !strings.HasPrefix(reconciled[0], "0 tasks reconciled") || !strings.HasPrefix(reconciled[1], "1 tasks reconciled") {
		t.Fatalf("reconciliation_complete events %q, want one for 0 tasks then one for 1", reconciled)
	}
	// Proof that the new leader is subscribed and working: it scales the app
	// up. The first task must not have been touched meanwhile.
	two := proto.Clone(app).(*v1.App)
	two.Instances = proto.Int32(2)
	two.Version = proto.String("2025-01-01T00:00:01Z")
	c.updateApp(two, "d2")
	c.waitFor("second instance running under the new leader", 60*time.Second, func() bool { return c.deploymentDone("d2") })
	after := fsm.NewTestReader(c.t, c.f.State).Instance(before.GetId())
	if after.GetIncarnation() != before.GetIncarnation() || after.GetTask().GetId() != before.GetTask().GetId() || after.GetTask().GetState() != stRunning {
		t.Fatalf("task disturbed by failover: %v", after)
	}
	if got := fsm.NewTestReader(c.t, c.f.State).FrameworkID(); got != fid {
		t.Fatalf("framework id changed from %s to %s", fid, got)
	}
	for _, r := range c.opsFor("LAUNCH") {
		if r.FrameworkID != fid {
			t.Fatalf("launch under framework %s", r.FrameworkID)
		}
	}
	if n := len(c.opsFor("LAUNCH")); n != 2 {
		t.Fatalf("%d launches, want 2", n)
	}
}

// TestIntegrationFrameworkRemoved: once Mesos removed the framework (an
// operator TEARDOWN), the scheduler stops with ErrFrameworkRemoved rather
// than registering a new framework id.
func TestIntegrationFrameworkRemoved(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mesos-local")
	}
	c := startCluster(t, 1, "cpus:2;mem:1024;disk:1000;ports:[31000-31100]", false)
	s := New(Config{MesosMaster: c.ml.URL(), Logger: testLogger(t), TickInterval: 100 * time.Millisecond}, c.deps())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	c.waitFor("framework id committed", 30*time.Second, func() bool { return fsm.NewTestReader(c.t, c.f.State).FrameworkID() != "" })
	fid := fsm.NewTestReader(c.t, c.f.State).FrameworkID()
	c.operatorCall(&master.Call{Type: master.Call_TEARDOWN, Teardown: &master.Call_Teardown{FrameworkID: mesos.FrameworkID{Value: fid}}})
	select {
	case err := <-done:
		if !errors.Is(err, ErrFrameworkRemoved) {
			t.Fatalf("Run returned %v, want ErrFrameworkRemoved", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("scheduler still running 60s after its framework was removed")
	}
	if got := fsm.NewTestReader(c.t, c.f.State).FrameworkID(); got != fid {
		t.Fatalf("framework id changed to %s", got)
	}
}
