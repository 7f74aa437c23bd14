package scheduler

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestResidentLifecycle walks the seed scenario transition by transition:
// add → reserve+create+launch in one ACCEPT → running → stop (berth kept) →
// start (same agent and volume) → restart with changed env → crash
// relaunch → wipe (fresh berth) → remove (nothing left).
func TestResidentLifecycle(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := residentApp("/db/pg", "v1", 1)
	h.store.putApp(app, "d1")

	// Tick: the level-triggered reconciler creates the instance.
	h.tick()
	inst := h.only("/db/pg")
	if goalOf(inst) != v1.Goal_GOAL_RUNNING || resState(inst) != v1.ReservationState_RESERVATION_STATE_NONE || !inst.Resident {
		t.Fatalf("new instance: %v", inst)
	}
	if !strings.HasPrefix(inst.Id, "db_pg.instance-") {
		t.Fatalf("instance id %q", inst.Id)
	}

	// Offer: one ACCEPT [RESERVE, CREATE, LAUNCH], committed as PENDING first.
	d := h.offers()
	if got := acceptOps(d); !reflect.DeepEqual(got, [][]string{{"RESERVE", "CREATE", "LAUNCH"}}) {
		t.Fatalf("accept ops %v", got)
	}
	inst = h.only("/db/pg")
	if resState(inst) != v1.ReservationState_RESERVATION_STATE_PENDING || inst.Reservation.AgentId != "A1" {
		t.Fatalf("reservation after accept: %v", inst.Reservation)
	}
	if want := h.now.Add(20 * time.Second); !inst.Reservation.PendingUntil.AsTime().Equal(want) {
		t.Fatalf("pending_until %v, want %v", inst.Reservation.PendingUntil.AsTime(), want)
	}
	pid := inst.Reservation.Volumes[0].PersistenceId
	if !strings.HasPrefix(pid, "db_pg#data#") {
		t.Fatalf("persistence id %q", pid)
	}
	if inst.Task.Id != inst.Id+"._app.1" || inst.Task.State != stStaging {
		t.Fatalf("task %v", inst.Task)
	}
	ti := h.master.launched[0]
	env := map[string]string{}
	for _, v := range ti.Command.Environment.Variables {
		env[v.Name] = v.GetValue()
	}
	if env["PORT0"] == "" || env["PORT"] != env["PORT0"] || env["PORT_PG"] != env["PORT0"] || env["HOST"] != "host1" ||
		env["MESOS_TASK_ID"] != inst.Task.Id || env["MARATHON_APP_ID"] != "/db/pg" || env["MARATHON_APP_VERSION"] != "v1" {
		t.Fatalf("env %v", env)
	}

	// Statuses: STARTING/RUNNING from the executor confirm the reservation.
	h.deliver()
	inst = h.only("/db/pg")
	if resState(inst) != v1.ReservationState_RESERVATION_STATE_RESERVED || inst.Task.State != stRunning || inst.Task.StartedAt == nil {
		t.Fatalf("after running: %v", inst)
	}
	if h.master.acked[inst.Task.Id] != 2 {
		t.Fatalf("acks %d", h.master.acked[inst.Task.Id])
	}
	h.tick()
	if h.store.deployment("d1").Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED || !h.hasEvent("deployment_success") {
		t.Fatalf("deployment d1: %v", h.store.deployment("d1"))
	}

	// Stop: goal Stopped, KILL, reservation and volume kept.
	h.store.putApp(withInstances(app, "v2", 0), "d2")
	d = h.tick()
	inst = h.only("/db/pg")
	if goalOf(inst) != v1.Goal_GOAL_STOPPED || !reflect.DeepEqual(callTypes(d), []string{"KILL"}) {
		t.Fatalf("stop: goal %v calls %v", inst.Goal, callTypes(d))
	}
	h.deliver()
	h.settle()
	inst = h.only("/db/pg")
	if taskLive(inst.Task) || resState(inst) != v1.ReservationState_RESERVATION_STATE_RESERVED {
		t.Fatalf("stopped instance: %v", inst)
	}
	if res := h.master.reservations(); len(res) != 1 || !strings.Contains(res[0], pid) {
		t.Fatalf("reservations after stop: %v", res)
	}
	if h.store.deployment("d2").Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment d2: %v", h.store.deployment("d2"))
	}

	// Start: the stopped instance is reused on the same berth.
	h.store.putApp(withInstances(app, "v3", 1), "d3")
	h.tick()
	d = h.offers()
	if got := acceptOps(d); !reflect.DeepEqual(got, [][]string{{"LAUNCH"}}) {
		t.Fatalf("start ops %v", got)
	}
	inst2 := h.only("/db/pg")
	if inst2.Id != inst.Id || inst2.Task.Id != inst.Id+"._app.2" || inst2.Reservation.Volumes[0].PersistenceId != pid {
		t.Fatalf("restarted instance %v", inst2)
	}
	launchedVol := ""
	for _, r := range h.master.launched[1].Resources {
		if r.Disk != nil && r.Disk.Persistence != nil {
			launchedVol = r.Disk.Persistence.ID
		}
	}
	if launchedVol != pid {
		t.Fatalf("relaunch volume %q, want %q", launchedVol, pid)
	}
	h.deliver()
	h.settle()
	if h.store.deployment("d3").Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment d3: %v", h.store.deployment("d3"))
	}

	// Restart with a changed env: kill first, then the new version on the
	// same berth.
	v4 := withInstances(app, "v4", 1)
	v4.Env = appmodel.Env(map[string]string{"MODE": "new"})
	h.store.putApp(v4, "d4")
	d = h.tick()
	if !reflect.DeepEqual(callTypes(d), []string{"KILL"}) {
		t.Fatalf("upgrade calls %v", callTypes(d))
	}
	h.deliver()
	if i := h.only("/db/pg"); i.LaunchNotBefore != nil || i.ConsecutiveFailures != 0 {
		t.Fatalf("upgrade kill counted as failure: %v", i)
	}
	h.settle()
	inst3 := h.only("/db/pg")
	if inst3.Task.Id != inst.Id+"._app.3" || inst3.AppVersion != "v4" || inst3.Task.State != stRunning {
		t.Fatalf("upgraded instance %v", inst3)
	}
	if got := lastEnv(h)["MODE"]; got != "new" {
		t.Fatalf("MODE=%q", got)
	}
	if h.store.deployment("d4").Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment d4: %v", h.store.deployment("d4"))
	}

	// Crash: goal unchanged, relaunch on the same berth after backoff.
	h.master.crash(inst3.Task.Id)
	h.deliver()
	inst4 := h.only("/db/pg")
	if inst4.ConsecutiveFailures != 1 || inst4.LaunchNotBefore == nil || !inst4.LaunchNotBefore.AsTime().Equal(h.now.Add(time.Second)) {
		t.Fatalf("backoff after crash: %v", inst4)
	}
	if d = h.offers(); len(acceptOps(d)) != 0 {
		t.Fatalf("launched during backoff: %v", acceptOps(d))
	}
	h.advance(time.Second)
	h.offers()
	h.deliver()
	inst4 = h.only("/db/pg")
	if inst4.Task.Id != inst.Id+"._app.4" || inst4.Task.State != stRunning || inst4.Reservation.Volumes[0].PersistenceId != pid {
		t.Fatalf("relaunch after crash: %v", inst4)
	}

	// Plain kill (rpc sets kill_requested_at): relaunch at once; the failure
	// count is not raised (nor reset: the task did not run long enough).
	killed := proto.Clone(inst4).(*v1.Instance)
	killed.Task.KillRequestedAt = inst4.Task.UpdatedAt
	h.store.putInstance(killed)
	if d = h.tick(); !reflect.DeepEqual(callTypes(d), []string{"KILL"}) {
		t.Fatalf("plain kill calls %v", callTypes(d))
	}
	h.deliver()
	h.settle()
	inst5 := h.only("/db/pg")
	if inst5.Task.Id != inst.Id+"._app.5" || inst5.Reservation.Volumes[0].PersistenceId != pid || inst5.ConsecutiveFailures != 1 {
		t.Fatalf("after plain kill: %v", inst5)
	}

	// Wipe: goal Decommissioned → KILL → DESTROY+UNRESERVE, and a fresh
	// instance with a new persistence id replaces it.
	wiped := proto.Clone(inst5).(*v1.Instance)
	wiped.Goal = v1.Goal_GOAL_DECOMMISSIONED
	h.store.putInstance(wiped)
	h.tick()
	h.deliver()
	d = h.offers()
	ops := acceptOps(d)
	if len(ops) != 1 || !reflect.DeepEqual(ops[0][:2], []string{"DESTROY", "UNRESERVE"}) {
		t.Fatalf("wipe ops %v", ops)
	}
	if still := h.store.instance(wiped.Id) != nil; still {
		t.Fatalf("wiped instance not forgotten")
	}
	h.deliver()
	h.settle()
	fresh := h.only("/db/pg")
	if fresh.Id == inst.Id || fresh.Reservation.Volumes[0].PersistenceId == pid || fresh.Task.State != stRunning {
		t.Fatalf("replacement %v", fresh)
	}

	// Remove: all instances decommissioned, killed, destroyed, forgotten.
	h.store.deleteApp("/db/pg", "d5")
	h.settle()
	if n := len(h.instancesOf("/db/pg")); n != 0 {
		t.Fatalf("%d instances left", n)
	}
	if res := h.master.reservations(); len(res) != 0 {
		t.Fatalf("reservations leaked: %v", res)
	}
	if live := h.master.liveTasks(); len(live) != 0 {
		t.Fatalf("tasks left: %v", live)
	}
	if h.store.deployment("d5").Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("removal deployment: %v", h.store.deployment("d5"))
	}
	a := h.master.agents["A1"]
	if a.cpus != 4 || a.mem != 1024 || a.disk != 1000 || rangesSize(a.ports) != 11 {
		t.Fatalf("agent resources not all back: %+v", a)
	}
}

func lastEnv(h *harness) map[string]string {
	ti := h.master.launched[len(h.master.launched)-1]
	env := map[string]string{}
	for _, v := range ti.Command.Environment.Variables {
		env[v.Name] = v.GetValue()
	}
	return env
}
