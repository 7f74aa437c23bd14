package scheduler

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// signalling is an Observer that reports each decision on a channel.
type signalling struct {
	recorder
	decided chan string
}

func (s *signalling) Decided(kind string, _ time.Duration) { s.decided <- kind }

// commitRequest is one call of Deps.Commit, answered by the test.
type commitRequest struct {
	plan  *v1.SchedulerPlanCommand
	reply chan error
}

// pipelineRig is a driver loop over a harness store whose commits the test
// answers one by one, in any order.
type pipelineRig struct {
	t       *testing.T
	h       *harness
	l       *loop
	out     *sender
	obs     *signalling
	commits chan commitRequest
	cancel  context.CancelFunc
}

func newPipelineRig(t *testing.T, h *harness) *pipelineRig {
	r := &pipelineRig{t: t, h: h, commits: make(chan commitRequest),
		obs: &signalling{recorder: recorder{ops: map[string]int{}}, decided: make(chan string, 16)}}
	var applyMu sync.Mutex // the FSM applies one entry at a time
	deps := Deps{
		Store: func() Store { return h.store },
		Commit: func(ctx context.Context, plan *v1.SchedulerPlanCommand) error {
			req := commitRequest{plan: plan, reply: make(chan error, 1)}
			select {
			case r.commits <- req:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case err := <-req.reply:
				if err != nil {
					return err
				}
				applyMu.Lock()
				defer applyMu.Unlock()
				return h.store.commit(plan)
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		SetFrameworkID: func(context.Context, string) error { return nil },
		Observer:       r.obs,
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	t.Cleanup(cancel)
	s := New(h.cfg, deps)
	r.out = newSender(ctx, nil, "fw-1", s.log)
	r.l = &loop{s: s, ctx: ctx, out: r.out}
	return r
}

// nextCommit waits for the next commit request.
func (r *pipelineRig) nextCommit() commitRequest {
	r.t.Helper()
	select {
	case req := <-r.commits:
		return req
	case <-time.After(time.Minute):
		r.t.Fatal("no commit requested")
		return commitRequest{}
	}
}

// decided waits for the next decision.
func (r *pipelineRig) decided() {
	r.t.Helper()
	select {
	case <-r.obs.decided:
	case <-time.After(time.Minute):
		r.t.Fatal("no decision made")
	}
}

// checkSent asserts invariant 1 for every call queued so far.
func (r *pipelineRig) checkSent() {
	r.t.Helper()
	for _, c := range r.out.queued() {
		r.h.checkWriteAhead(c)
	}
}

// twoDecisions submits in1, whose plan starts committing, then in2,
// decided on top of it, and returns the two commit requests (unanswered)
// in the order they were made.
func (r *pipelineRig) twoDecisions(in1, in2 Input) (commitRequest, commitRequest) {
	r.t.Helper()
	r.l.submit(in1)
	r.decided()
	first := r.nextCommit()
	r.l.submit(in2)
	r.decided()
	return first, r.nextCommit()
}

// acceptedOffers returns the offers of the ACCEPTs queued.
func acceptedOffers(cs []*scheduler.Call) map[string]bool {
	out := map[string]bool{}
	for _, c := range cs {
		if c.Type == scheduler.Call_ACCEPT {
			for _, o := range c.Accept.OfferIDs {
				out[o.Value] = true
			}
		}
	}
	return out
}

// twoOfferRounds sets up an app of 8 resident instances on two agents of
// 4 each, and returns one offer of each agent.
func twoOfferRounds(t *testing.T) (*harness, mesos.Offer, mesos.Offer) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 2, 512, 1000, 31000, 31003, nil)
	h.master.addAgent("A2", "host2", 2, 512, 1000, 31100, 31103, nil)
	app := residentApp("/db", "v1", 8)
	h.store.putApp(app, "d1")
	h.tick()
	if n := len(h.instancesOf("/db")); n != 8 {
		t.Fatalf("%d instances, want 8", n)
	}
	os := h.master.makeOffers()
	if len(os) != 2 {
		t.Fatalf("%d offers, want 2", len(os))
	}
	if os[0].AgentID.Value != "A1" {
		os[0], os[1] = os[1], os[0]
	}
	return h, os[0], os[1]
}

// The next decision is made while the plan in flight commits, on top of
// it (it places the instances the first did not), and its plan commits
// beside the first; its calls go out only once both committed, even when
// its own commit is done first.
func TestPipelineDecidesOnTopOfThePlanInFlight(t *testing.T) {
	h, o1, o2 := twoOfferRounds(t)
	r := newPipelineRig(t, h)
	r.l.beside = true

	first, next := r.twoDecisions(Offers{Offers: []mesos.Offer{o1}}, Offers{Offers: []mesos.Offer{o2}})
	if n := len(first.plan.GetPutInstances()); n != 4 {
		t.Fatalf("first plan places %d instances, want 4", n)
	}
	// Decided on top of the first: the other four instances.
	mustPlaceTheOthers(t, first.plan, next.plan)
	next.reply <- nil
	// The second committed first: still nothing of it may go out.
	waitFor(t, func() bool { return hasBerth(h.store.instance(next.plan.GetPutInstances()[0].GetId())) })
	if n := len(acceptedOffers(r.out.queued())); n != 0 {
		t.Fatalf("%d ACCEPTs queued before the first plan committed", n)
	}
	first.reply <- nil
	r.l.flush()
	if acc := acceptedOffers(r.out.queued()); !acc[o1.ID.Value] || !acc[o2.ID.Value] {
		t.Fatalf("accepted %v, want both offers", acc)
	}
	r.checkSent()
	select {
	case k := <-r.obs.decided:
		t.Fatalf("a third decision (%s): the second was decided again", k)
	default:
	}
}

// waitFor polls cond (a goroutine of the pipeline is to finish).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(time.Millisecond) {
		if time.Since(start) > time.Minute {
			t.Fatal("condition not reached")
		}
	}
}

// A plan that fails to commit takes down what was decided on top of it:
// nothing of that decision is sent, even though its own plan committed,
// the memory is dropped (reconciliation will tell about the launches it
// recorded), and its input is decided again on the state as it is.
func TestPipelineFailedPlanDiscardsTheDecisionOnTop(t *testing.T) {
	h, o1, o2 := twoOfferRounds(t)
	r := newPipelineRig(t, h)
	r.l.beside = true

	first, next := r.twoDecisions(Offers{Offers: []mesos.Offer{o1}}, Offers{Offers: []mesos.Offer{o2}})
	next.reply <- nil
	first.reply <- errors.New("compare-and-set refused")
	done := make(chan struct{})
	go func() { defer close(done); r.l.flush() }()
	r.decided() // the second input, decided again
	again := r.nextCommit()
	queued := r.out.queued()
	if acc := acceptedOffers(queued); len(acc) != 0 {
		t.Fatalf("ACCEPTs %v queued: the first plan failed and the second input's new plan is not committed", acc)
	}
	mustDecline(t, queued, o1)
	again.reply <- nil
	<-done
	for _, c := range r.out.queued() {
		if c.Type != scheduler.Call_ACCEPT {
			continue
		}
		if c.Accept.OfferIDs[0].Value != o2.ID.Value {
			t.Fatalf("ACCEPT of %v, want %s only", c.Accept.OfferIDs, o2.ID.Value)
		}
		for _, id := range callInstances(c) {
			for _, i := range next.plan.GetPutInstances() {
				if i.GetId() == id {
					t.Fatalf("ACCEPT names %s, placed by the discarded decision", id)
				}
			}
		}
	}
	r.checkSent()
	if !r.l.s.mem.reconcileNow {
		t.Fatal("no reconciliation asked for after the failed commit")
	}
}

// Two decisions writing the same instance: the second, decided on the
// first's uncommitted copy, is not committed beside it but decided again
// once the first committed (its compare-and-set would fail otherwise), and
// the store ends as if they had been decided one after the other.
func TestPipelineOverlappingDecisionIsDecidedAgain(t *testing.T) {
	h, o1, _ := twoOfferRounds(t)
	h.decide(Offers{Offers: []mesos.Offer{o1}})
	h.master.pending = nil
	inst := h.store.instance(h.instancesOf("/db")[0].GetId())
	task := inst.GetTask()
	if task.GetState() != stStaging {
		t.Fatalf("instance %s: task %v", inst.GetId(), task)
	}
	r := newPipelineRig(t, h)
	status := func(st mesos.TaskState, uuid string) mesos.TaskStatus {
		src := mesos.SOURCE_EXECUTOR
		return mesos.TaskStatus{TaskID: mesos.TaskID{Value: task.GetId()}, AgentID: &mesos.AgentID{Value: task.GetAgentId()},
			State: &st, Source: &src, UUID: []byte(uuid)}
	}
	r.l.submit(StatusUpdate{Status: status(mesos.TASK_RUNNING, "u-1")})
	r.decided()
	first := r.nextCommit()
	second := make(chan struct{})
	go func() { defer close(second); r.l.submit(StatusUpdate{Status: status(mesos.TASK_FAILED, "u-2")}) }()
	r.decided()
	first.reply <- nil
	r.decided() // decided again: it wrote the instance the first plan wrote
	again := r.nextCommit()
	again.reply <- nil
	<-second
	r.l.flush()
	got := h.store.instance(inst.GetId())
	if got.GetTask().GetState() != "TASK_FAILED" || got.GetTask().GetStartedAt() == nil || got.GetConsecutiveFailures() != 1 {
		t.Fatalf("after RUNNING then FAILED: task %v, failures %d", got.GetTask(), got.GetConsecutiveFailures())
	}
	acks := 0
	for _, c := range r.out.queued() {
		if c.Type == scheduler.Call_ACKNOWLEDGE {
			acks++
		}
	}
	if acks != 2 {
		t.Fatalf("%d acknowledgements, want 2", acks)
	}
}

// A failover mid-pipeline: the session ends (leadership lost) while two
// plans commit, the second decided on top of the first. Their commits
// return, nothing is queued, nothing is decided again, and no goroutine is
// left once abandon returns.
func TestPipelineFailoverMidPipeline(t *testing.T) {
	h, o1, o2 := twoOfferRounds(t)
	r := newPipelineRig(t, h)
	r.l.beside = true

	// Neither commit is answered: leadership is lost meanwhile.
	r.twoDecisions(Offers{Offers: []mesos.Offer{o1}}, Offers{Offers: []mesos.Offer{o2}})
	r.afterLostLeadership()
}

// afterLostLeadership checks a session ended with plans in flight: abandon
// leaves none, nothing was queued, committed or decided after, and the
// next leader places everything from the committed state.
func (r *pipelineRig) afterLostLeadership() {
	t, h := r.t, r.h
	t.Helper()
	r.l.abandon(r.cancel)
	if len(r.l.inflight) != 0 {
		t.Fatal("plans still in flight after abandon")
	}
	if q := r.out.queued(); len(q) != 0 {
		t.Fatalf("%d calls queued after the session ended: %v", len(q), q)
	}
	r.l.submit(Tick{}) // the session is over: decides nothing
	select {
	case k := <-r.obs.decided:
		t.Fatalf("decided (%s) after the session ended", k)
	default:
	}
	for _, i := range h.store.instances() {
		if hasBerth(i) {
			t.Fatalf("instance %s has a berth: nothing was committed", i.GetId())
		}
	}
	// The next leader starts from the committed state and places all.
	h.restart()
	h.settle()
	for _, i := range h.instancesOf("/db") {
		if i.GetTask().GetState() != stRunning {
			t.Fatalf("after the failover: %s %v", i.GetId(), i.GetTask())
		}
	}
}

// The overlay a speculative decision reads is the store with the plan in
// flight applied: its tasks are found by id (the store's task index does
// not know them yet), its deletions and replaced tasks are gone, and once
// it is undone the state under it is as it was.
func TestOverlayAppliesThePlanInFlight(t *testing.T) {
	h, o1, _ := twoOfferRounds(t)
	h.decide(Offers{Offers: []mesos.Offer{o1}})
	st := h.state()
	placed := h.store.instance(h.instancesOf("/db")[0].GetId())
	other := h.store.instance(h.instancesOf("/db")[7].GetId())
	if placed.GetTask().GetId() == "" || hasBerth(other) {
		t.Fatalf("setup: %v / %v", placed.GetTask(), other.GetReservation())
	}
	relaunched := proto.Clone(placed).(*v1.Instance)
	relaunched.Task.Id = placed.GetId() + "._app.2"
	launched := proto.Clone(other).(*v1.Instance)
	launched.Task = &v1.Task{Id: other.GetId() + "._app.1", State: stStaging}
	gone := h.instancesOf("/db")[1].GetId()
	plan := &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{relaunched, launched}, DeleteInstances: []string{gone}}

	before := maps.Clone(st.Instances)
	o, undo := overlay(st, plan, st.Mem.clone())
	if got := o.instanceByTask(launched.Task.Id); got != launched {
		t.Fatalf("task launched by the plan: found %v", got)
	}
	if got := o.instanceByTask(relaunched.Task.Id); got != relaunched {
		t.Fatalf("task relaunched by the plan: found %v", got)
	}
	if got := o.instanceByTask(placed.GetTask().GetId()); got != nil {
		t.Fatalf("the task the plan replaced is still found: %v", got)
	}
	if o.Instances[gone] != nil || len(o.sortedInstanceIDs()) != 7 {
		t.Fatalf("deleted instance still there: %d ids", len(o.sortedInstanceIDs()))
	}
	undo()
	if !maps.Equal(st.Instances, before) {
		t.Fatal("the state under the overlay is not as it was after undo")
	}
	if st.Instances[gone] == nil || st.instanceByTask(placed.GetTask().GetId()) == nil || len(st.sortedInstanceIDs()) != 8 {
		t.Fatal("the state under the overlay changed")
	}
}

// Without commitBeside: the next decision is made while the plan in
// flight commits, on top of it (it places the instances the first did
// not), and is adopted as it was decided once that plan committed: its
// plan commits after the first (never beside it), and its ACCEPT goes out
// only after its own commit.
// heldDecisions submits in1, whose plan starts committing, then in2 in
// the background, decided on top of it and held (without commitBeside);
// it returns in1's commit request (unanswered) and a channel closed when
// in2's submit returns.
func (r *pipelineRig) heldDecisions(in1, in2 Input) (commitRequest, <-chan struct{}) {
	r.t.Helper()
	r.l.submit(in1)
	r.decided()
	first := r.nextCommit()
	second := make(chan struct{})
	go func() { defer close(second); r.l.submit(in2) }()
	r.decided() // decided while the first plan is still committing
	return first, second
}

func TestPipelineHeldDecisionAdoptedAfterTheCommit(t *testing.T) {
	h, o1, o2 := twoOfferRounds(t)
	r := newPipelineRig(t, h)

	first, second := r.heldDecisions(Offers{Offers: []mesos.Offer{o1}}, Offers{Offers: []mesos.Offer{o2}})
	if n := len(first.plan.GetPutInstances()); n != 4 {
		t.Fatalf("first plan places %d instances, want 4", n)
	}
	if n := len(acceptedOffers(r.out.queued())); n != 0 {
		t.Fatalf("%d ACCEPTs queued before the first plan committed", n)
	}
	first.reply <- nil
	next := r.nextCommit()
	// Decided on top of the first: the other four instances.
	mustPlaceTheOthers(t, first.plan, next.plan)
	if acc := acceptedOffers(r.out.queued()); !acc[o1.ID.Value] || acc[o2.ID.Value] {
		t.Fatalf("accepted before the second commit: %v; want %s only", acc, o1.ID.Value)
	}
	r.checkSent()
	next.reply <- nil
	<-second
	r.l.flush()
	if acc := acceptedOffers(r.out.queued()); !acc[o1.ID.Value] || !acc[o2.ID.Value] {
		t.Fatalf("accepted %v, want both offers", acc)
	}
	r.checkSent()
	select {
	case k := <-r.obs.decided:
		t.Fatalf("a third decision (%s): the second was decided again", k)
	default:
	}
}

// Without commitBeside: a plan that fails to commit takes down what was
// decided on top of it: nothing of that decision is committed or sent,
// its memory is dropped, and its input is decided again on the state as
// it is.
func TestPipelineHeldDecisionDiscardedWhenThePlanFails(t *testing.T) {
	h, o1, o2 := twoOfferRounds(t)
	r := newPipelineRig(t, h)

	first, second := r.heldDecisions(Offers{Offers: []mesos.Offer{o1}}, Offers{Offers: []mesos.Offer{o2}})
	first.reply <- errors.New("compare-and-set refused")
	r.decided() // the second input, decided again
	again := r.nextCommit()
	// On the state without the failed plan: four of the eight instances,
	// any of them (the ones the failed plan had taken are free again).
	if n := len(again.plan.GetPutInstances()); n != 4 {
		t.Fatalf("the second input decided again places %d instances, want 4", n)
	}
	queued := r.out.queued()
	if acc := acceptedOffers(queued); len(acc) != 0 {
		t.Fatalf("ACCEPTs %v queued before the second input's own plan committed", acc)
	}
	mustDecline(t, queued, o1)
	again.reply <- nil
	<-second
	r.l.flush()
	if acc := acceptedOffers(r.out.queued()); len(acc) != 1 || !acc[o2.ID.Value] {
		t.Fatalf("accepted %v, want %s only", acc, o2.ID.Value)
	}
	r.checkSent()
	if !r.l.s.mem.reconcileNow {
		t.Fatal("the memory was not reset after the failed commit")
	}
}

// Without commitBeside, a failover mid-pipeline: the session ends (leadership lost) while one
// plan commits and the next decision waits on top of it. The commit
// returns, nothing more is queued, nothing is decided again, and the
// commit's goroutine is gone when abandon returns.
func TestPipelineFailoverWhileHeld(t *testing.T) {
	h, o1, o2 := twoOfferRounds(t)
	r := newPipelineRig(t, h)

	// The first commit is never answered: leadership is lost meanwhile.
	_, second := r.heldDecisions(Offers{Offers: []mesos.Offer{o1}}, Offers{Offers: []mesos.Offer{o2}})
	r.cancel()
	<-second
	r.afterLostLeadership()
}

// mustDecline fails the test unless calls decline the failed plan's offer o.
func mustDecline(t *testing.T, calls []*scheduler.Call, o mesos.Offer) {
	t.Helper()
	for _, c := range calls {
		if c.Type == scheduler.Call_DECLINE && c.Decline.OfferIDs[0].Value == o.ID.Value {
			return
		}
	}
	t.Fatalf("the failed plan's offer %s was not declined: %v", o.ID.Value, calls)
}

// mustPlaceTheOthers fails the test unless next, decided on top of first,
// places four instances, none of those first places.
func mustPlaceTheOthers(t *testing.T, first, next *v1.SchedulerPlanCommand) {
	t.Helper()
	for _, i := range next.GetPutInstances() {
		for _, j := range first.GetPutInstances() {
			if i.GetId() == j.GetId() {
				t.Fatalf("the second plan places %s again", i.GetId())
			}
		}
	}
	if n := len(next.GetPutInstances()); n != 4 {
		t.Fatalf("second plan places %d instances, want 4", n)
	}
}
