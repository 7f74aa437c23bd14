package scheduler

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// batchScenario builds, deterministically, a cluster with many tasks in
// mixed states and the status updates the master has queued for it: a new
// resident app being placed (STARTING then RUNNING, confirming berths), a
// stateless scale-down (TASK_KILLED, instances forgotten), a crash, the
// answers to an explicit reconciliation in flight, and a few more: RUNNING
// (healthy) then FAILED for one task, a status for a task forgotten earlier
// in the same run, unknown tasks (live and terminal), a repeated state and
// TASK_GONE_BY_OPERATOR for a resident task.
func batchScenario(t *testing.T) (*harness, []mesos.TaskStatus) {
	h := newHarness(t)
	for n := 0; n < 10; n++ {
		h.master.addAgent(fmt.Sprintf("A%d", n), fmt.Sprintf("host%d", n), 8, 4096, 10000, 31000, 31100, nil)
	}
	h.store.putApp(residentApp("/db", "v1", 10), "d1")
	h.store.putApp(statelessApp("/web", "v1", 30), "d2")
	h.settle()

	h.store.putApp(residentApp("/db2", "v1", 10), "d3")
	h.store.putApp(withInstances(statelessApp("/web", "v1", 30), "v2", 25), "d4")
	h.tick()   // creates /db2's instances, kills 5 of /web's
	h.offers() // launches /db2
	dbs := h.instancesOf("/db")
	h.master.crash(dbs[0].GetTask().GetId())
	h.decide(Subscribed{FrameworkID: h.store.frameworkID()}) // explicit + implicit reconciliation

	statuses := append([]mesos.TaskStatus(nil), h.master.pending...)
	h.master.pending = nil
	uuid := 0
	st := func(taskID, agentID string, state mesos.TaskState, healthy *bool) mesos.TaskStatus {
		uuid++
		src := mesos.SOURCE_EXECUTOR
		return mesos.TaskStatus{TaskID: mesos.TaskID{Value: taskID}, AgentID: &mesos.AgentID{Value: agentID},
			State: &state, Source: &src, Healthy: healthy, UUID: []byte(fmt.Sprintf("extra-%d", uuid))}
	}
	var web, killed *v1.Instance
	for _, i := range h.instancesOf("/web") {
		if goalOf(i) == v1.Goal_GOAL_RUNNING && web == nil {
			web = i
		}
		if goalOf(i) == v1.Goal_GOAL_DECOMMISSIONED && killed == nil {
			killed = i
		}
	}
	if web == nil || killed == nil {
		t.Fatalf("scenario: want a running and a decommissioned /web instance")
	}
	wt, kt, gone := web.GetTask(), killed.GetTask(), dbs[1].GetTask()
	statuses = append(statuses,
		st(wt.GetId(), wt.GetAgentId(), mesos.TASK_RUNNING, proto.Bool(true)),
		st(wt.GetId(), wt.GetAgentId(), mesos.TASK_FAILED, nil),
		st(kt.GetId(), kt.GetAgentId(), mesos.TASK_RUNNING, nil), // forgotten by its TASK_KILLED above
		st("ghost-1", "A0", mesos.TASK_RUNNING, nil),
		st("ghost-2", "A1", mesos.TASK_FINISHED, nil),
		st(dbs[2].GetTask().GetId(), dbs[2].GetTask().GetAgentId(), mesos.TASK_RUNNING, nil),
		st(gone.GetId(), gone.GetAgentId(), mesos.TASK_GONE_BY_OPERATOR, nil),
	)
	return h, statuses
}

// outcome is what a run of status updates committed, sent and published.
type outcome struct {
	commits   int
	instances map[string]*v1.Instance
	early     []*scheduler.Call // Decision.Early, in order
	calls     []*scheduler.Call
	events    []*v1.Event
	reports   []ReconciliationReport
	kills     map[string]killRecord
	recon     reconTracker
}

// runStatuses decides statuses in consecutive batches of at most size
// (StatusUpdate for a batch of one), committing each plan.
func runStatuses(h *harness, statuses []mesos.TaskStatus, size int) outcome {
	var o outcome
	for len(statuses) > 0 {
		n := min(size, len(statuses))
		var in Input = StatusUpdates{Statuses: statuses[:n]}
		if n == 1 {
			in = StatusUpdate{Status: statuses[0]}
		}
		statuses = statuses[n:]
		d := Decide(h.state(), in, h.now, h.cfg)
		if d.Plan != nil {
			if err := h.store.commit(d.Plan); err != nil {
				h.t.Fatalf("plan refused: %v", err)
			}
			h.snaps.committed(h.store, d.Plan)
			o.commits++
		}
		o.early = append(o.early, d.Early...)
		o.calls = append(o.calls, d.Calls...)
		o.events = append(o.events, d.Events...)
		if d.Reconciliation != nil {
			o.reports = append(o.reports, *d.Reconciliation)
		}
	}
	o.instances = map[string]*v1.Instance{}
	for _, i := range h.store.instances() {
		// The log index of the last write differs with the number of
		// commits; the content must not.
		i = proto.Clone(i).(*v1.Instance)
		i.ModifyIndex = 0
		o.instances[i.GetId()] = i
	}
	o.kills = h.mem.kills
	o.recon = h.mem.recon
	return o
}

func TestStatusBatchEquivalence(t *testing.T) {
	ref, statuses := batchScenario(t)
	want := runStatuses(ref, statuses, 1)

	// The scenario must exercise what batching could get wrong.
	perTask := map[string]int{}
	for _, s := range statuses {
		perTask[s.TaskID.Value]++
	}
	multi := 0
	for _, n := range perTask {
		if n > 1 {
			multi++
		}
	}
	count := func(typ string) int {
		n := 0
		for _, e := range want.events {
			if e.Type == typ {
				n++
			}
		}
		return n
	}
	kinds := map[scheduler.Call_Type]int{}
	for _, c := range append(want.early, want.calls...) {
		kinds[c.Type]++
	}
	if len(statuses) < 100 || multi < 20 || want.commits < 15 || len(want.reports) != 1 ||
		count("instance_changed_event") < 10 || count("status_update_event") < 20 ||
		kinds[scheduler.Call_ACKNOWLEDGE] < 30 || kinds[scheduler.Call_KILL] < 2 {
		t.Fatalf("scenario too weak: %d statuses, %d tasks with several, %d commits, %d reports, %d changed, %d status events, calls %v",
			len(statuses), multi, want.commits, len(want.reports), count("instance_changed_event"), count("status_update_event"), kinds)
	}

	for _, size := range []int{len(statuses), 512, 7, 2} {
		t.Run(fmt.Sprintf("batch%d", size), func(t *testing.T) {
			h, again := batchScenario(t)
			if !reflect.DeepEqual(again, statuses) {
				t.Fatal("scenario is not deterministic")
			}
			got := runStatuses(h, again, size)
			if wantCommits := (len(statuses) + size - 1) / size; got.commits > wantCommits {
				t.Errorf("%d commits for batches of %d, want at most %d", got.commits, size, wantCommits)
			}
			if len(got.instances) != len(want.instances) {
				t.Errorf("%d instances, want %d", len(got.instances), len(want.instances))
			}
			for id, w := range want.instances {
				if g := got.instances[id]; !proto.Equal(g, w) {
					t.Errorf("instance %s:\n got %v\nwant %v", id, g, w)
				}
			}
			// Acknowledgements that need no commit keep their order among
			// themselves, as the other calls do.
			if !reflect.DeepEqual(got.early, want.early) {
				t.Errorf("early calls:\n got %v\nwant %v", got.early, want.early)
			}
			if len(got.calls) != len(want.calls) {
				t.Fatalf("%d calls, want %d", len(got.calls), len(want.calls))
			}
			for n := range want.calls {
				if !reflect.DeepEqual(got.calls[n], want.calls[n]) {
					t.Errorf("call %d:\n got %v\nwant %v", n, got.calls[n], want.calls[n])
				}
			}
			if len(got.events) != len(want.events) {
				t.Fatalf("%d events, want %d", len(got.events), len(want.events))
			}
			for n := range want.events {
				if !proto.Equal(got.events[n], want.events[n]) {
					t.Errorf("event %d:\n got %v\nwant %v", n, got.events[n], want.events[n])
				}
			}
			if !reflect.DeepEqual(got.reports, want.reports) {
				t.Errorf("reports %v, want %v", got.reports, want.reports)
			}
			if !reflect.DeepEqual(got.kills, want.kills) || !reflect.DeepEqual(got.recon, want.recon) {
				t.Errorf("memory differs: kills %v recon %v, want %v %v", got.kills, got.recon, want.kills, want.recon)
			}
		})
	}
}

// The driver batches only consecutive UPDATEs already queued, at most the
// bound, skips HEARTBEATs, and hands back the first other event so that it
// is handled right after the batch.
func TestDrainUpdates(t *testing.T) {
	upd := func(id string) *scheduler.Event {
		st := mesos.TASK_RUNNING
		return &scheduler.Event{Type: scheduler.Event_UPDATE, Update: &scheduler.Event_Update{
			Status: mesos.TaskStatus{TaskID: mesos.TaskID{Value: id}, State: &st}}}
	}
	other := func(typ scheduler.Event_Type) *scheduler.Event { return &scheduler.Event{Type: typ} }
	ids := func(sts []mesos.TaskStatus) string {
		var out []string
		for _, s := range sts {
			out = append(out, s.TaskID.Value)
		}
		return fmt.Sprint(out)
	}
	q := make(chan *scheduler.Event, 16)
	for _, e := range []*scheduler.Event{upd("b"), other(scheduler.Event_HEARTBEAT), upd("c"), other(scheduler.Event_OFFERS), upd("d")} {
		q <- e
	}
	sts, next := drainUpdates(upd("a"), q, 512)
	if ids(sts) != "[a b c]" || next.GetType() != scheduler.Event_OFFERS {
		t.Fatalf("batch %s then %v, want [a b c] then OFFERS", ids(sts), next.GetType())
	}
	// A lone update: nothing queued, nothing waited for.
	sts, next = drainUpdates(<-q, q, 512)
	if ids(sts) != "[d]" || next != nil {
		t.Fatalf("batch %s then %v, want [d] alone", ids(sts), next)
	}
	// Bounded: the rest stays queued, in order.
	for _, id := range []string{"f", "g", "h"} {
		q <- upd(id)
	}
	sts, next = drainUpdates(upd("e"), q, 3)
	if ids(sts) != "[e f g]" || next != nil || len(q) != 1 {
		t.Fatalf("batch %s then %v with %d queued, want [e f g] with 1 queued", ids(sts), next, len(q))
	}
}

// Invariant 1 for a batch: nothing the batch implies (acks, kills) is
// queued for the master before its one plan committed, and nothing at all
// if the commit fails; once committed, every call goes out in order.
func TestLoopStatusBatchWriteAhead(t *testing.T) {
	h, statuses := batchScenario(t)
	store := h.store
	var commits int
	fail := true
	var queuedAtCommit int
	var out *sender
	deps := Deps{
		Store: func() Store { return store },
		Commit: func(_ context.Context, plan *v1.SchedulerPlanCommand) error {
			queuedAtCommit = len(out.queued())
			if fail {
				return errors.New("not leader")
			}
			commits++
			return h.store.commit(plan)
		},
		SetFrameworkID: func(context.Context, string) error { return nil },
	}
	var published int
	deps.Publish = func(*v1.Event) { published++ }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := New(h.cfg, deps)
	out = newSender(ctx, nil, "fw-1", s.log)
	l := &loop{s: s, ctx: ctx, out: out}

	// Only acknowledgements of TASK_STARTING (soft state, see onStatus)
	// may go out before, or without, the commit.
	starting := map[string]bool{}
	for _, st := range statuses {
		if st.GetState() == mesos.TASK_STARTING && len(st.UUID) > 0 {
			starting[string(st.UUID)] = true
		}
	}
	unbound := func(cs []*scheduler.Call) (early, other int) {
		for _, c := range cs {
			if c.Type == scheduler.Call_ACKNOWLEDGE && starting[string(c.Acknowledge.UUID)] {
				early++
			} else {
				other++
			}
		}
		return early, other
	}
	l.apply(StatusUpdates{Statuses: statuses})
	early, other := unbound(out.queued())
	if other != 0 || early == 0 || published != 0 || queuedAtCommit != early {
		t.Fatalf("failed commit: %d calls queued (%d acknowledgements of TASK_STARTING), %d events published, %d queued before commit; want only those acknowledgements",
			early+other, early, published, queuedAtCommit)
	}
	out = newSender(ctx, nil, "fw-1", s.log) // what the failed round sent is gone
	l.out = out

	fail = false
	l.apply(StatusUpdates{Statuses: statuses})
	acks := 0
	for _, c := range out.queued() {
		if c.Type == scheduler.Call_ACKNOWLEDGE {
			acks++
		}
	}
	withUUID := 0
	for _, st := range statuses {
		if len(st.UUID) > 0 {
			withUUID++
		}
	}
	if commits != 1 || queuedAtCommit != early || acks != withUUID || published == 0 {
		t.Fatalf("%d commits, %d calls queued before commit, %d acks for %d acknowledgeable statuses, %d events; want 1, %d, all, some",
			commits, queuedAtCommit, acks, withUUID, published, early)
	}
}
