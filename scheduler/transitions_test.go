package scheduler

import (
	"reflect"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Removing an app whose instances are stopped needs no kill: the berths
// are destroyed and unreserved at the next offer.
func TestRemoveStoppedApp(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := residentApp("/pg", "v1", 2)
	h.store.putApp(app, "")
	h.settle()
	h.store.putApp(withInstances(app, "v2", 0), "")
	h.settle()
	if n := len(h.master.reservations()); n != 2 {
		t.Fatalf("%d berths kept, want 2", n)
	}
	h.store.deleteApp("/pg", "d")
	if d := h.tick(); len(d.Calls) != 1 || d.Calls[0].Type != scheduler.Call_REVIVE {
		t.Fatalf("remove of stopped instances: calls %v (want a revive only)", callTypes(d))
	}
	d := h.offers()
	if ops := acceptOps(d); !reflect.DeepEqual(ops, [][]string{{"DESTROY", "UNRESERVE"}}) {
		t.Fatalf("ops %v", ops)
	}
	h.settle()
	if len(h.instancesOf("/pg")) != 0 || len(h.master.reservations()) != 0 || h.store.deployment("d").Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("after removal: %d instances, %v, %v", len(h.instancesOf("/pg")), h.master.reservations(), h.store.deployment("d"))
	}
}

// Stopping an instance while its first launch is still staging kills it;
// the berth is kept once confirmed.
func TestStopWhileStaging(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := residentApp("/pg", "v1", 1)
	h.store.putApp(app, "")
	h.tick()
	h.offers()
	pending := h.master.pending
	h.master.pending = nil // statuses not delivered yet
	h.store.putApp(withInstances(app, "v2", 0), "")
	if d := h.tick(); !reflect.DeepEqual(callTypes(d), []string{"KILL"}) {
		t.Fatalf("calls %v", callTypes(d))
	}
	h.master.pending = append(pending, h.master.pending...)
	h.deliver()
	h.settle()
	i := h.only("/pg")
	if goalOf(i) != v1.Goal_GOAL_STOPPED || taskLive(i.Task) || resState(i) != v1.ReservationState_RESERVATION_STATE_RESERVED {
		t.Fatalf("stopped while staging: %v", i)
	}
}

// A KILL that had no effect is sent again after the retry interval.
func TestKillIsRetried(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := statelessApp("/web", "v1", 1)
	h.store.putApp(app, "")
	h.settle()
	h.store.putApp(withInstances(app, "v2", 0), "")
	h.dropCalls = true // the KILL is lost
	h.tick()
	h.dropCalls = false
	if d := h.tick(); len(d.Calls) != 0 {
		t.Fatalf("resent at once: %v", callTypes(d))
	}
	h.advance(34 * time.Second) // retry interval 30s + grace 3s
	if d := h.tick(); !reflect.DeepEqual(callTypes(d), []string{"KILL"}) {
		t.Fatalf("retry calls %v", callTypes(d))
	}
	h.deliver()
	h.settle()
	if n := len(h.instancesOf("/web")); n != 0 {
		t.Fatalf("%d instances left", n)
	}
}

// A task stuck in TASK_STAGING past the staging timeout is reconciled and
// killed; the instance then relaunches.
func TestStagingTimeout(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(statelessApp("/web", "v1", 1), "")
	h.tick()
	h.dropCalls = true
	h.offers() // the LAUNCH never reaches the master
	h.dropCalls = false
	h.master.rescindAll() // the driver declines offers whose ACCEPT failed
	h.advance(6 * time.Minute)
	d := h.tick()
	if got := callTypes(d); !reflect.DeepEqual(got, []string{"RECONCILE"}) {
		t.Fatalf("calls %v, want the master asked first", got)
	}
	h.deliver() // the master does not know the task: TASK_GONE
	h.advance(2 * time.Second)
	h.settle()
	if i := h.only("/web"); i.Task.State != stRunning || i.Incarnation != 2 {
		t.Fatalf("after staging timeout: %v", i)
	}
}

// A task the master still reports as staging past the staging timeout
// (stuck on its agent) is killed once the master says so; the instance
// then relaunches.
func TestStagingTimeoutKillsATaskTheMasterReportsStaging(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.tick()
	h.offers()
	// The agent never starts it: no update, the master keeps it staging.
	i := h.only("/pg")
	h.master.pending = nil
	h.master.agents[i.Reservation.AgentId].tasks[i.Task.Id].state = mesos.TASK_STAGING
	h.advance(6 * time.Minute)
	if got := callTypes(h.tick()); !reflect.DeepEqual(got, []string{"RECONCILE"}) {
		t.Fatalf("calls %v, want the master asked first", got)
	}
	h.deliver() // TASK_STAGING from the master → KILL
	if h.master.agents[i.Reservation.AgentId].tasks[i.Task.Id].state != mesos.TASK_KILLED {
		t.Fatalf("stuck task not killed: %v", h.master.log)
	}
	h.advance(2 * time.Second)
	h.settle()
	if i := h.only("/pg"); i.Task.State != stRunning || i.Incarnation != 2 {
		t.Fatalf("after staging timeout: %v", i)
	}
}

// A task whose updates are queued behind a status backlog longer than the
// staging timeout (the 100,000-instance benchmark's leader was minutes
// behind its master) is not killed: the master, asked, answers that it
// runs, and the queued updates then arrive.
func TestStagingTimeoutUnderStatusBacklogKillsNothing(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 3), "")
	h.tick()
	h.offers() // launched: STARTING and RUNNING are queued, not delivered
	before := map[string]string{}
	for _, i := range h.instancesOf("/pg") {
		if i.Task.State != stStaging {
			t.Fatalf("task %s, want staging until its updates arrive", i.Task.State)
		}
		before[i.Id] = i.Task.Id
	}
	asked := 0
	for range 3 { // well past the timeout, and past a KILL's retry interval
		h.advance(3 * time.Minute)
		for _, c := range h.tick().Calls {
			switch c.Type {
			case scheduler.Call_KILL:
				t.Fatalf("KILL of %s while the master has it running", c.Kill.TaskID.Value)
			case scheduler.Call_RECONCILE:
				if n := len(c.Reconcile.Tasks); n != len(before) {
					t.Fatalf("RECONCILE of %d tasks, want one call for all %d", n, len(before))
				}
				asked++
			}
		}
	}
	if asked == 0 {
		t.Fatal("the master was never asked about the tasks staging past the timeout")
	}
	h.deliver() // the backlog: STARTING, RUNNING, then the master's answers
	h.settle()
	if n := len(h.master.liveTasks()); n != len(before) {
		t.Fatalf("%d live tasks in the master, want %d", n, len(before))
	}
	for _, got := range h.instancesOf("/pg") {
		if got.Task.Id != before[got.Id] || got.Task.State != stRunning || got.Incarnation != 1 {
			t.Fatalf("after the backlog: %v, want task %s running, incarnation 1", got, before[got.Id])
		}
	}
	for _, c := range h.sent {
		if c.Type == scheduler.Call_KILL {
			t.Fatalf("KILL of %s sent", c.Kill.TaskID.Value)
		}
	}
}

// Wiping an instance on an unreachable agent forgets it at once; if its
// task comes back it is killed as unknown, and its berth is collected when
// the agent offers it again. A fresh instance replaces it meanwhile.
func TestWipeOnUnreachableAgent(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.master.addAgent("A2", "host2", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.settle()
	old := h.only("/pg")
	h.master.partition(old.Reservation.AgentId)
	h.deliver()
	wiped := proto.Clone(h.only("/pg")).(*v1.Instance)
	wiped.Goal = v1.Goal_GOAL_DECOMMISSIONED
	h.store.putInstance(wiped)
	h.tick()
	if ok := h.store.instance(old.Id) != nil; ok {
		t.Fatalf("wiped unreachable instance kept")
	}
	h.settle()
	fresh := h.only("/pg")
	if fresh.Id == old.Id || fresh.Task.State != stRunning || fresh.Reservation.AgentId == old.Reservation.AgentId {
		t.Fatalf("replacement %v", fresh)
	}
	// The agent comes back with the old task running.
	a := h.master.agents[old.Reservation.AgentId]
	a.gone = false
	a.tasks[old.Task.Id].state = mesos.TASK_RUNNING
	h.master.status(old.Task.Id, a.id, mesos.TASK_RUNNING, mesos.SOURCE_AGENT, true)
	h.deliver() // unknown live task → KILL
	h.deliver()
	h.settle()
	if live := h.master.liveTasks(); len(live) != 1 || live[0] != fresh.Task.Id {
		t.Fatalf("live tasks %v", live)
	}
	if r := h.master.reservations(); len(r) != 1 {
		t.Fatalf("old berth not collected: %v", r)
	}
}

// New work triggers a REVIVE; while an instance waits for its backoff,
// offers are declined with a filter no longer than the wait.
func TestReviveAndShortDeclineDuringBackoff(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := residentApp("/pg", "v1", 1)
	app.BackoffSeconds = proto.Float64(3)
	h.store.putApp(app, "")
	d := h.tick()
	if got := callTypes(d); len(got) == 0 || got[len(got)-1] != "REVIVE" {
		t.Fatalf("new instance: calls %v", got)
	}
	if d := h.tick(); len(d.Calls) != 0 {
		t.Fatalf("revived again without new demand: %v", callTypes(d))
	}
	h.settle()
	h.master.crash(h.only("/pg").Task.Id)
	h.deliver()
	d = h.offers()
	if len(d.Calls) != 1 || d.Calls[0].Type != scheduler.Call_DECLINE {
		t.Fatalf("calls %v", callTypes(d))
	}
	if rs := d.Calls[0].Decline.Filters.GetRefuseSeconds(); rs != 3 {
		t.Fatalf("decline filter %vs, want the 3s backoff", rs)
	}
}

// A deployment's step is marked current when work starts, and the
// deployment succeeds once the app converged.
func TestDeploymentProgress(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	h.store.putApp(statelessApp("/web", "v1", 1), "d1")
	steps := proto.Clone(h.store.deployment("d1")).(*v1.Deployment)
	steps.Steps = []*v1.DeploymentStep{{Actions: []*v1.DeploymentAction{{Action: "StartApplication", App: "/web"}}}}
	h.store.putDeployment(steps)
	h.tick()
	if d := h.store.deployment("d1"); d.CurrentStep != 1 || d.Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING || !h.hasEvent("deployment_info") {
		t.Fatalf("after first tick: %v", d)
	}
	h.settle()
	if d := h.store.deployment("d1"); d.CurrentStep != 1 || d.Status != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED || d.FinishedAt == nil {
		t.Fatalf("after convergence: %v", d)
	}
}
