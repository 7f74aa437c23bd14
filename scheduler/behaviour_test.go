package scheduler

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func countLive(h *harness, appID string) (live, outdated int) {
	for _, i := range h.instancesOf(appID) {
		if taskLive(i.Task) {
			live++
			if i.AppVersion != h.store.app(appID).GetVersion() {
				outdated++
			}
		}
	}
	return
}

// A restart of a resident app kills first and keeps at least
// ceil(instances × minimumHealthCapacity) instances up: with 4 instances
// and 0.5, at most 2 are down at a time, and all end on their own berths.
func TestUpgradeRespectsMinimumHealthCapacity(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := residentApp("/pg", "v1", 4)
	h.store.putApp(app, "")
	h.settle()
	berths := map[string]string{}
	for _, i := range h.instancesOf("/pg") {
		berths[i.Id] = i.Reservation.Volumes[0].PersistenceId
	}
	v2 := withInstances(app, "v2", 4)
	v2.Env = appmodel.Env(map[string]string{"X": "2"})
	h.store.putApp(v2, "d2")
	d := h.tick()
	kills := 0
	for _, c := range callTypes(d) {
		if c == "KILL" {
			kills++
		}
	}
	if kills != 2 {
		t.Fatalf("first upgrade round killed %d, want 2", kills)
	}
	// Further ticks do not kill more while two are down.
	if d := h.tick(); len(d.Calls) != 0 {
		t.Fatalf("extra calls while at the limit: %v", callTypes(d))
	}
	h.settle()
	for _, i := range h.instancesOf("/pg") {
		if i.AppVersion != "v2" || i.Task.State != stRunning || berths[i.Id] != i.Reservation.Volumes[0].PersistenceId {
			t.Fatalf("after upgrade: %v", i)
		}
	}
	if h.store.deployment("d2").Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment %v", h.store.deployment("d2"))
	}
	// A pure scale change does not restart anything.
	before := len(h.master.launched)
	h.store.putApp(withInstances(v2, "v3", 4), "d3")
	h.settle()
	if len(h.master.launched) != before {
		t.Fatalf("scale-only version restarted tasks")
	}
	for _, i := range h.instancesOf("/pg") {
		if i.AppVersion != "v3" {
			t.Fatalf("instance version not advanced: %v", i.AppVersion)
		}
	}
}

// Scale down stops the youngest instances (resident) and keeps their
// berths; scale up reuses them before creating new ones.
func TestScaleDownStopsYoungestAndScaleUpReuses(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := residentApp("/pg", "v1", 1)
	h.store.putApp(app, "")
	h.settle()
	oldest := h.only("/pg").Id
	h.advance(time.Minute)
	h.store.putApp(withInstances(app, "v2", 3), "")
	h.settle()
	h.store.putApp(withInstances(app, "v3", 1), "")
	h.settle()
	for _, i := range h.instancesOf("/pg") {
		want := v1.Goal_GOAL_STOPPED
		if i.Id == oldest {
			want = v1.Goal_GOAL_RUNNING
		}
		if goalOf(i) != want || resState(i) != v1.ReservationState_RESERVATION_STATE_RESERVED {
			t.Fatalf("instance %s: goal %v reservation %v", i.Id, goalOf(i), resState(i))
		}
	}
	if n := len(h.master.reservations()); n != 3 {
		t.Fatalf("%d reservations, want 3 kept", n)
	}
	h.store.putApp(withInstances(app, "v4", 3), "")
	h.settle()
	if n := len(h.instancesOf("/pg")); n != 3 {
		t.Fatalf("scale up created new instances: %d", n)
	}
	if live, _ := countLive(h, "/pg"); live != 3 {
		t.Fatalf("%d live", live)
	}
	if n := len(h.master.reservations()); n != 3 {
		t.Fatalf("%d reservations after reuse", n)
	}
}

// Stateless apps launch on unreserved resources; scale-down decommissions
// and forgets; crashes relaunch (possibly elsewhere).
func TestStatelessScaling(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 1, 1024, 1000, 31000, 31100, nil)
	h.master.addAgent("A2", "host2", 1, 1024, 1000, 31000, 31100, nil)
	app := statelessApp("/web", "v1", 1)
	h.store.putApp(app, "")
	h.settle()
	h.store.putApp(withInstances(app, "v2", 6), "")
	h.settle()
	if live, _ := countLive(h, "/web"); live != 6 {
		t.Fatalf("%d live, want 6 (4 per cpu × 2 agents = 8 fit)", live)
	}
	if len(h.master.reservations()) != 0 {
		t.Fatalf("stateless reserved: %v", h.master.reservations())
	}
	victim := h.instancesOf("/web")[0]
	h.master.crash(victim.Task.Id)
	h.deliver()
	h.advance(2 * time.Second)
	h.settle()
	if got := h.store.instance(victim.Id); got == nil || got.Task.State != stRunning || got.Incarnation != 2 {
		t.Fatalf("stateless relaunch: %v", got)
	}
	h.store.putApp(withInstances(app, "v3", 0), "d3")
	h.settle()
	if n := len(h.instancesOf("/web")); n != 0 {
		t.Fatalf("%d instances left after scale to 0", n)
	}
	if h.store.deployment("d3").Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("d3 %v", h.store.deployment("d3"))
	}
}

// constraintList builds constraints from Marathon's [field, OPERATOR,
// value?] form.
func constraintList(cs ...[]string) []*v1.Constraint {
	var out []*v1.Constraint
	for _, c := range cs {
		con := &v1.Constraint{Field: c[0], Operator: c[1]}
		if len(c) > 2 {
			con.Value = proto.String(c[2])
		}
		out = append(out, con)
	}
	return out
}

func hostsOf(h *harness, appID string) []string {
	var out []string
	for _, i := range h.instancesOf(appID) {
		if taskLive(i.Task) {
			out = append(out, i.Task.Hostname)
		}
	}
	sort.Strings(out)
	return out
}

func TestConstraints(t *testing.T) {
	cases := []struct {
		name        string
		constraints [][]string
		instances   int32
		want        []string
	}{
		{"unique hostname", [][]string{{"hostname", "UNIQUE"}}, 4, []string{"host1", "host2", "host3"}},
		// Marathon's "@hostname" is the agent's hostname too (its
		// constraints doc; an attribute of that name is never looked up).
		{"unique @hostname", [][]string{{"@hostname", "UNIQUE"}}, 4, []string{"host1", "host2", "host3"}},
		{"like @hostname", [][]string{{"@hostname", "LIKE", "host[12]"}}, 2, []string{"host1", "host1"}},
		{"cluster rack", [][]string{{"rack", "CLUSTER", "r2"}}, 2, []string{"host3", "host3"}},
		{"like", [][]string{{"hostname", "LIKE", "host[12]"}}, 2, []string{"host1", "host1"}},
		{"unlike", [][]string{{"hostname", "UNLIKE", "host[12]"}}, 1, []string{"host3"}},
		{"max per rack", [][]string{{"rack", "MAX_PER", "1"}}, 3, []string{"host1", "host3"}},
		{"group by rack", [][]string{{"rack", "GROUP_BY", "2"}}, 4, []string{"host1", "host1", "host3", "host3"}},
		{"is", [][]string{{"rack", "IS", "r1"}}, 1, []string{"host1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, map[string]string{"rack": "r1"})
			h.master.addAgent("A2", "host2", 8, 4096, 4000, 31000, 31100, map[string]string{"rack": "r1"})
			h.master.addAgent("A3", "host3", 8, 4096, 4000, 31000, 31100, map[string]string{"rack": "r2"})
			app := residentApp("/c", "v1", tc.instances)
			app.Constraints = constraintList(tc.constraints...)
			h.store.putApp(app, "")
			h.settle()
			if got := hostsOf(h, "/c"); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("hosts %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBadConstraintIsReported(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := residentApp("/c", "v1", 1)
	app.Constraints = constraintList([]string{"hostname", "NEAR", "x"})
	h.store.putApp(app, "")
	h.tick()
	h.offers()
	found := false
	for _, e := range h.events {
		if strings.Contains(e.Message, `unknown operator "NEAR"`) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no event names the bad constraint: %v", h.eventTypes())
	}
}

// An unreachable agent makes its instance wait (no replacement); when the
// operator marks the agent gone, the berth is abandoned and a fresh one is
// made elsewhere.
func TestUnreachableWaitsAndGoneByOperatorReplaces(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.master.addAgent("A2", "host2", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.settle()
	inst := h.only("/pg")
	agent := h.master.agents[inst.Reservation.AgentId]
	h.master.partition(agent.id)
	h.deliver()
	h.advance(time.Hour)
	h.settle()
	got := h.only("/pg")
	if got.Task.State != stUnreachable || got.Incarnation != 1 || got.Reservation.AgentId != agent.id {
		t.Fatalf("instance did not wait: %v", got)
	}
	h.master.markGone(agent.id)
	h.deliver()
	h.advance(5 * time.Second)
	h.settle()
	got = h.only("/pg")
	if got.Id != inst.Id || got.Task.State != stRunning || got.Reservation.AgentId == agent.id ||
		got.Reservation.Volumes[0].PersistenceId == inst.Reservation.Volumes[0].PersistenceId {
		t.Fatalf("after gone by operator: %v", got)
	}
}

// Leader-run health results: health changes are committed only when they
// change; a kill result kills once and the relaunch stays on the berth.
func TestHealthResults(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := residentApp("/pg", "v1", 1)
	app.HealthChecks = []*v1.HealthCheck{{Protocol: proto.String("TCP")}}
	h.store.putApp(app, "d1")
	h.settle()
	if h.store.deployment("d1").Status == v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment succeeded before the instance was healthy")
	}
	inst := h.only("/pg")
	d := h.decide(HealthResult{TaskID: inst.Task.Id, Healthy: true})
	if d.Plan == nil || !h.only("/pg").Task.GetHealthy() {
		t.Fatalf("health not committed")
	}
	if d := h.decide(HealthResult{TaskID: inst.Task.Id, Healthy: true}); d.Plan != nil {
		t.Fatalf("unchanged health committed again")
	}
	h.tick()
	if h.store.deployment("d1").Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment not done once healthy")
	}
	d = h.decide(HealthResult{TaskID: inst.Task.Id, Healthy: false, Kill: true, Message: "TCP refused"})
	if !reflect.DeepEqual(callTypes(d), []string{"KILL"}) || !h.hasEvent("unhealthy_instance_kill_event") {
		t.Fatalf("kill: %v %v", callTypes(d), h.eventTypes())
	}
	if d := h.decide(HealthResult{TaskID: inst.Task.Id, Healthy: false, Kill: true}); len(d.Calls) != 0 {
		t.Fatalf("second kill sent: %v", callTypes(d))
	}
	h.deliver()
	// The kill ends the task TASK_KILLED: Marathon adds no launch delay
	// for a killed task (NotifyRateLimiterStepImpl.scala, limitWorthy has
	// no Killed), so the relaunch follows at once.
	got := h.only("/pg")
	if goalOf(got) != v1.Goal_GOAL_RUNNING || got.ConsecutiveFailures != 0 || got.LaunchNotBefore != nil {
		t.Fatalf("after health kill: %v", got)
	}
	h.settle()
	got = h.only("/pg")
	if got.Incarnation != 2 || got.Reservation.Volumes[0].PersistenceId != inst.Reservation.Volumes[0].PersistenceId {
		t.Fatalf("relaunch after health kill: %v", got)
	}
}

// Mesos-run checks: TaskStatus.healthy is committed on change only.
func TestMesosHealthFromStatus(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := statelessApp("/web", "v1", 1)
	app.HealthChecks = []*v1.HealthCheck{{Protocol: proto.String("MESOS_HTTP"), Path: proto.String("/ping")}}
	h.store.putApp(app, "")
	h.settle()
	ti := h.master.launched[0]
	if ti.HealthCheck == nil || ti.HealthCheck.Type != mesos.HealthCheck_HTTP || ti.HealthCheck.HTTP.GetPath() != "/ping" ||
		ti.HealthCheck.HTTP.Port != h.only("/web").Task.Ports[0] {
		t.Fatalf("health check %v", ti.HealthCheck)
	}
	inst := h.only("/web")
	st, src, yes := mesos.TASK_RUNNING, mesos.SOURCE_EXECUTOR, true
	status := mesos.TaskStatus{TaskID: mesos.TaskID{Value: inst.Task.Id}, State: &st, Source: &src, Healthy: &yes,
		AgentID: &mesos.AgentID{Value: "A1"}, UUID: []byte("0123456789abcdef")}
	if d := h.decide(StatusUpdate{Status: status}); d.Plan == nil || !reflect.DeepEqual(callTypes(d), []string{"ACKNOWLEDGE"}) {
		t.Fatalf("first healthy: %v", callTypes(d))
	}
	if d := h.decide(StatusUpdate{Status: status}); d.Plan != nil {
		t.Fatalf("unchanged health committed")
	}
}

// A task the master rejects as invalid fails the deployment with its
// message; the instance keeps retrying with backoff.
func TestDeploymentFailsOnInvalidTask(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(statelessApp("/web", "v1", 1), "d1")
	h.tick()
	h.offers()
	inst := h.only("/web")
	h.master.pending = nil
	st, src, reason := mesos.TASK_ERROR, mesos.SOURCE_MASTER, mesos.REASON_TASK_INVALID
	msg := "Task uses a DOCKER container, which mesos-local cannot run"
	h.decide(StatusUpdate{Status: mesos.TaskStatus{TaskID: mesos.TaskID{Value: inst.Task.Id}, State: &st, Source: &src, Reason: &reason, Message: &msg}})
	h.tick()
	d := h.store.deployment("d1")
	if d.Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_FAILED || !strings.Contains(d.Message, "DOCKER") || !h.hasEvent("deployment_failed") {
		t.Fatalf("deployment %v", d)
	}
}

func TestTaskInfo(t *testing.T) {
	o := &mesos.Offer{AgentID: mesos.AgentID{Value: "A1"}, Hostname: "h1"}
	a := &v1.App{
		Id: "/grp/app", Version: proto.String("v9"), Args: []string{"/bin/server", "--flag"}, User: proto.String("nobody"),
		Env:                        appmodel.Env(map[string]string{"FOO": "bar", "PORT": "overridden"}),
		TaskKillGracePeriodSeconds: proto.Int32(7), Labels: map[string]string{"team": "db"},
		PortDefinitions: []*v1.PortDefinition{{Port: proto.Int32(10000), Name: proto.String("http")}, {Port: proto.Int32(0)}},
	}
	ti, err := buildTaskInfo(a, "grp_app.instance-x._app.1", o, nil, []uint32{31001, 31002})
	if err != nil {
		t.Fatal(err)
	}
	if ti.Command.GetShell() || ti.Command.GetValue() != "/bin/server" || !reflect.DeepEqual(ti.Command.Arguments, a.Args) || ti.Command.GetUser() != "nobody" {
		t.Fatalf("command %v", ti.Command)
	}
	env := map[string]string{}
	for _, v := range ti.Command.Environment.Variables {
		env[v.Name] = v.GetValue()
	}
	want := map[string]string{"PORT0": "31001", "PORT1": "31002", "PORTS": "31001,31002", "PORT_HTTP": "31001", "PORT_10000": "31001",
		"PORT": "overridden", "FOO": "bar", "HOST": "h1", "MARATHON_APP_ID": "/grp/app", "MARATHON_APP_VERSION": "v9",
		"MARATHON_APP_RESOURCE_CPUS": "1", "MARATHON_APP_RESOURCE_MEM": "128", "MESOS_TASK_ID": "grp_app.instance-x._app.1",
		"MARATHON_APP_LABEL_TEAM": "db"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	if ti.KillPolicy.GetGracePeriod().GetNanoseconds() != int64(7*time.Second) || ti.Name != "grp/app" {
		t.Fatalf("kill policy %v name %q", ti.KillPolicy, ti.Name)
	}

	// An env value that refers to a secret reaches Mesos as a secret
	// reference to the secret's source, never as a value; it overrides a
	// variable Berth would set.
	a.Env["DB_PASS"] = appmodel.EnvSecret("db")
	a.Env["HOST"] = appmodel.EnvSecret("db")
	a.Secrets = map[string]*v1.Secret{"db": {Source: "/prod/db/password"}}
	ti, err = buildTaskInfo(a, "grp_app.instance-x._app.1", o, nil, []uint32{31001, 31002})
	if err != nil {
		t.Fatal(err)
	}
	secrets := 0
	for _, v := range ti.Command.Environment.Variables {
		if v.Name != "DB_PASS" && v.Name != "HOST" {
			continue
		}
		secrets++
		if v.GetType() != mesos.Environment_Variable_SECRET || v.Value != nil ||
			v.Secret.GetType() != mesos.Secret_REFERENCE || v.Secret.GetReference().GetName() != "/prod/db/password" {
			t.Errorf("secret variable %v", v)
		}
	}
	if secrets != 2 {
		t.Errorf("%d secret variables, want 2", secrets)
	}

	d := &v1.App{Id: "/d", Container: &v1.Container{Type: proto.String("DOCKER"), Docker: &v1.Docker{Image: "nginx:1", Network: proto.String("BRIDGE")},
		PortMappings: []*v1.PortMapping{{ContainerPort: proto.Int32(80), HostPort: proto.Int32(0)}}}}
	ti, err = buildTaskInfo(d, "d.instance-y._app.1", o, nil, []uint32{31005})
	if err != nil {
		t.Fatal(err)
	}
	if ti.Container.GetType() != mesos.ContainerInfo_DOCKER || ti.Container.Docker.Image != "nginx:1" ||
		ti.Container.Docker.GetNetwork() != mesos.ContainerInfo_DockerInfo_BRIDGE ||
		len(ti.Container.Docker.PortMappings) != 1 || ti.Container.Docker.PortMappings[0].HostPort != 31005 || ti.Container.Docker.PortMappings[0].ContainerPort != 80 {
		t.Fatalf("docker container %v", ti.Container)
	}
	// A MESOS container pulls a private image with the credentials of its
	// pullConfig secret.
	m := &v1.App{Id: "/m", Cmd: proto.String("serve"), Container: &v1.Container{Type: proto.String("MESOS"),
		Docker: &v1.Docker{Image: "registry.example.com/m:1", PullConfig: &v1.DockerPullConfig{Secret: "reg"}}},
		Secrets: map[string]*v1.Secret{"reg": {Source: "/ci/docker-config"}}}
	ti, err = buildTaskInfo(m, "m.instance-z._app.1", o, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img := ti.Container.GetMesos().GetImage().GetDocker(); img.GetName() != "registry.example.com/m:1" ||
		img.GetConfig().GetType() != mesos.Secret_REFERENCE || img.GetConfig().GetReference().GetName() != "/ci/docker-config" {
		t.Fatalf("mesos image %v", ti.Container.GetMesos().GetImage())
	}
	if _, err := buildTaskInfo(&v1.App{Id: "/empty"}, "x", o, nil, nil); err == nil || !strings.Contains(err.Error(), "cmd, args or container.docker.image") {
		t.Fatalf("empty app error %v", err)
	}
}

func TestFixedPorts(t *testing.T) {
	specs := []appmodel.Port{{Fixed: 31005}, {}}
	ports, _, ok := pickPorts(specs, []mesos.Value_Range{{Begin: 31000, End: 31010}})
	if !ok || ports[0] != 31005 || ports[1] != 31000 {
		t.Fatalf("ports %v ok %v", ports, ok)
	}
	if _, _, ok := pickPorts([]appmodel.Port{{Fixed: 80}}, []mesos.Value_Range{{Begin: 31000, End: 31010}}); ok {
		t.Fatalf("fixed port outside the offer accepted")
	}
}

// Constraints on attributes hold across a failover even for agents that
// make no offers (full): their attributes were recorded at placement.
func TestConstraintAttributesSurviveFailover(t *testing.T) {
	h := newHarness(t)
	// A1 fits exactly one instance (1 cpu, 32 MiB, one port).
	h.master.addAgent("A1", "host1", 1, 32, 0, 31000, 31000, map[string]string{"rack": "r1"})
	app := statelessApp("/u", "v1", 1)
	app.Cpus = proto.Float64(1)
	app.Constraints = constraintList([]string{"rack", "UNIQUE"})
	h.store.putApp(app, "")
	h.settle()
	if got := h.only("/u").AgentAttributes["rack"]; got != "r1" {
		t.Fatalf("recorded rack %q", got)
	}
	// New leader; A1 is full and makes no offer; A2 shares its rack.
	h.mem = NewMemory()
	if os := h.master.makeOffers(); len(os) != 0 {
		t.Fatalf("full agent still offers: %v", os)
	}
	h.master.addAgent("A2", "host2", 4, 4096, 4000, 31000, 31100, map[string]string{"rack": "r1"})
	h.store.putApp(withInstances(app, "v2", 2), "")
	h.settle()
	if got := hostsOf(h, "/u"); !reflect.DeepEqual(got, []string{"host1"}) {
		t.Fatalf("second instance placed in the same rack: %v", got)
	}
}
