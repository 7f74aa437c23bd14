package scheduler

import (
	"slices"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// recorder is an Observer that remembers what it was told.
type recorder struct {
	offers                      [3]int
	ops                         map[string]int
	placed                      []time.Duration
	health                      []bool
	finished                    []string
	reconciledTasks, reconMiss  int
	decided, commits, subscribe int
}

func (r *recorder) Decided(string, time.Duration)        { r.decided++ }
func (r *recorder) PlanCommitted(time.Duration, bool)    { r.commits++ }
func (r *recorder) Placed(d time.Duration)               { r.placed = append(r.placed, d) }
func (r *recorder) HealthChecked(h bool)                 { r.health = append(r.health, h) }
func (r *recorder) DeploymentFinished(outcome string)    { r.finished = append(r.finished, outcome) }
func (r *recorder) Subscribed(bool)                      { r.subscribe++ }
func (r *recorder) Resubscribing()                       {}
func (r *recorder) OperationsSent(op string, n int)      { r.ops[op] += n }
func (r *recorder) Reconciled(_ time.Duration, t, m int) { r.reconciledTasks, r.reconMiss = t, m }
func (r *recorder) Offers(received, declined, accepted int) {
	r.offers[0] += received
	r.offers[1] += declined
	r.offers[2] += accepted
}

func labelled(name string, v float64, instanceID string) mesos.Resource {
	key, val := LabelInstanceID, instanceID
	return mesos.Resource{Name: name, Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: v},
		Reservations: []mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(),
			Labels: &mesos.Labels{Labels: []mesos.Label{{Key: key, Value: &val}}}}}}
}

func TestObserveCountsOffersOperationsAndOutcomes(t *testing.T) {
	r := &recorder{ops: map[string]int{}}
	inst := "pg.instance-1"
	cpus := labelled("cpus", 1, inst)
	task := mesos.TaskInfo{TaskID: mesos.TaskID{Value: taskIDFor(inst, 1)}}
	d := Decision{
		Calls: []*scheduler.Call{
			calls.Accept(calls.OfferOperations{calls.OpReserve(cpus), calls.OpCreate(cpus), calls.OpLaunch(task)}.WithOffers(mesos.OfferID{Value: "o1"})),
			calls.Decline(mesos.OfferID{Value: "o2"}, mesos.OfferID{Value: "o3"}),
			calls.Kill(taskIDFor("other.instance-2", 3), "agent"),
		},
		Events:         []*v1.Event{{Type: "deployment_success"}, {Type: "deployment_failed"}, {Type: "status_update_event"}},
		Reconciliation: &ReconciliationReport{Tasks: 4, Missing: 1},
	}
	observe(r, Offers{Offers: make([]mesos.Offer, 3)}, d)
	if r.offers != [3]int{3, 2, 1} {
		t.Errorf("offers received/declined/accepted = %v, want [3 2 1]", r.offers)
	}
	want := map[string]int{"RESERVE": 1, "CREATE": 1, "LAUNCH": 1, "KILL": 1}
	for op, n := range want {
		if r.ops[op] != n {
			t.Errorf("%s sent %d times, want %d (all: %v)", op, r.ops[op], n, r.ops)
		}
	}
	if len(r.ops) != len(want) {
		t.Errorf("operations: %v", r.ops)
	}
	if !slices.Equal(r.finished, []string{"succeeded", "failed"}) || r.reconciledTasks != 4 || r.reconMiss != 1 {
		t.Errorf("deployments %v, reconciliation %d/%d", r.finished, r.reconciledTasks, r.reconMiss)
	}
	if got := callInstances(d.Calls[0]); !slices.Equal(got, []string{inst}) {
		t.Errorf("instances of the ACCEPT: %v", got)
	}
	if got := callInstances(d.Calls[2]); !slices.Equal(got, []string{"other.instance-2"}) {
		t.Errorf("instances of the KILL: %v", got)
	}
	observe(r, HealthResult{Healthy: false}, Decision{})
	if !slices.Equal(r.health, []bool{false}) {
		t.Errorf("health results: %v", r.health)
	}
}

func TestPlacementsTimeTheFirstRunningOnly(t *testing.T) {
	now := time.Unix(1000, 0)
	staged := timestamppb.New(now.Add(-4 * time.Second))
	st := &State{Instances: map[string]*v1.Instance{
		"a.instance-1": {Id: "a.instance-1", Task: &v1.Task{Id: taskIDFor("a.instance-1", 2), State: "TASK_STARTING", StagedAt: staged}},
		"a.instance-2": {Id: "a.instance-2", Task: &v1.Task{Id: taskIDFor("a.instance-2", 1), State: "TASK_RUNNING", StagedAt: staged}},
	}}
	status := func(tid string, s mesos.TaskState) mesos.TaskStatus {
		return mesos.TaskStatus{TaskID: mesos.TaskID{Value: tid}, State: s.Enum()}
	}
	placements := func(st *State, in Input, now time.Time) []time.Duration { return Decide(st, in, now, Config{}).Placed }
	got := placements(st, StatusUpdates{Statuses: []mesos.TaskStatus{
		status(taskIDFor("a.instance-1", 2), mesos.TASK_RUNNING), // first RUNNING: 4s after its launch committed
		status(taskIDFor("a.instance-2", 1), mesos.TASK_RUNNING), // already running: not a placement
		status(taskIDFor("a.instance-1", 1), mesos.TASK_RUNNING), // an older incarnation
		status("not-ours", mesos.TASK_RUNNING),
	}}, now)
	if !slices.Equal(got, []time.Duration{4 * time.Second}) {
		t.Fatalf("placements = %v, want [4s]", got)
	}
	if got := placements(st, StatusUpdate{Status: status(taskIDFor("a.instance-1", 2), mesos.TASK_STAGING)}, now); len(got) != 0 {
		t.Fatalf("a STAGING status counted as a placement: %v", got)
	}
}
