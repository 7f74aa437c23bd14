package scheduler

import (
	"fmt"
	"maps"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The driver decides the next input while the previous plan commits.
//
// A Raft commit takes tens to hundreds of milliseconds on three servers,
// and the loop used to do nothing meanwhile: placement was one decision,
// then one commit, then the next decision, one after the other. Now at
// most two decisions are on their way:
//
//   - the one in flight (loop.inflight): decided, its plan committing in
//     the background, its calls queued part by part as they commit (as
//     before: invariant 1, each part's calls after that part committed);
//   - the next one, decided speculatively on the committed state with the
//     in-flight plan applied on top (overlay) and with a copy of the
//     leader's memory. It is kept aside until the plan in flight is done.
//
// Then:
//
//   - if the plan in flight committed, and the next decision writes no
//     instance, deployment or backup record that it wrote (the FSM's
//     compare-and-set would refuse it: its copies carry the index they
//     were read at, from before the commit), the next decision is adopted:
//     its memory becomes the leader's and its plan starts committing. Its
//     calls, early ones included, go out only after its own plan commits,
//     which is after the previous one (commits stay one after the other,
//     in order);
//   - otherwise (the plan in flight failed: lost leadership, a conflict
//     with an API write; or the decisions overlap) the speculative decision
//     is discarded whole, nothing of it sent and its memory dropped, and
//     its input is decided again on the state as it now is.
//
// Nothing is ever sent on the strength of a plan that is not committed:
// a speculative decision's calls may depend on the plan under it (a KILL
// for a goal it set, an acknowledgement of a status it recorded), so they
// wait for it too.

// decided is one decision on its way through commit and send.
type decided struct {
	in     Input
	d      Decision
	store  Store
	now    time.Time
	placed []time.Duration
	mem    *Memory // the memory the decision was made with
	parts  []planPart
	rest   []*scheduler.Call

	// Written by the commit goroutine, read once done is closed.
	done         chan struct{}
	committed    int             // parts committed (calls queued)
	took         []time.Duration // per part with a plan
	err          error           // why part committed+1 did not commit
	failedAccept bool
}

// committing returns a channel closed when the plan in flight is done
// (nil, never ready, when none is).
func (l *loop) committing() <-chan struct{} {
	if l.inflight == nil {
		return nil
	}
	return l.inflight.done
}

// apply decides on in and carries it through: it returns once everything
// decided so far is committed and sent, or has failed.
func (l *loop) apply(in Input) {
	l.submit(in)
	l.flush()
}

// submit decides on in. With no plan in flight the decision's plan starts
// committing in the background and submit returns. With one in flight, in
// is decided on top of it, then submit waits for it and resolves both (see
// above).
func (l *loop) submit(in Input) {
	if l.ctx.Err() != nil {
		return
	}
	prev := l.inflight
	if prev == nil {
		if d := l.decide(in, nil); d != nil {
			l.start(d)
		}
		return
	}
	next := l.decide(in, prev)
	<-prev.done
	ok := l.finish(prev)
	if next == nil || l.ctx.Err() != nil {
		return
	}
	if !ok || overlaps(prev.d.Plan, next.d.Plan) {
		l.s.log.Debug("decision made during a commit discarded; deciding again", "input", fmt.Sprintf("%T", in), "committed", ok)
		if d := l.decide(in, nil); d != nil {
			l.start(d)
		}
		return
	}
	if prev.failedAccept {
		next.mem.reconcileNow = true
	}
	l.s.mem = next.mem
	l.start(next)
}

// flush waits for the plan in flight, if any, and finishes it.
func (l *loop) flush() {
	if p := l.inflight; p != nil {
		<-p.done
		l.finish(p)
	}
}

// abandon ends the session's pipeline: cancel makes a commit in flight
// return, which is waited for; nothing more is sent.
func (l *loop) abandon(cancel func()) {
	cancel()
	if p := l.inflight; p != nil {
		<-p.done
		l.inflight = nil
	}
}

// decide snapshots and decides on in, on the committed state, or with on
// set, on the committed state with on's plan applied and a copy of the
// memory (speculatively). Nil: the store could not be read (the input's
// offers were declined).
func (l *loop) decide(in Input, on *decided) *decided {
	store := l.s.deps.Store()
	st, err := l.snaps.get(store, l.s.mem)
	if err != nil {
		l.s.log.Error("cannot read the state store; deciding nothing", "err", err, "input", fmt.Sprintf("%T", in))
		l.declineOffers(in)
		return nil
	}
	mem := l.s.mem
	if on != nil {
		mem = mem.clone()
		st = overlay(st, on.d.Plan, mem)
	}
	obs := l.s.deps.Observer
	now := time.Now()
	var placed []time.Duration
	if obs != nil {
		placed = placements(st, in, now)
	}
	d := Decide(st, in, now, l.s.cfg)
	if obs != nil {
		obs.Decided(inputKind(in), time.Since(now))
	}
	parts, rest := splitPlan(d, maxPlanInstances)
	return &decided{in: in, d: d, store: store, now: now, placed: placed, mem: mem, parts: parts, rest: rest}
}

// start sends the decision's early calls and commits its plan in the
// background, part after part, queueing each part's calls once it (and
// every part before it) committed. A decision without a plan is finished
// at once.
func (l *loop) start(dd *decided) {
	// Early calls imply nothing the plan records: they need not wait for it.
	l.out.enqueue(dd.d.Early...)
	dd.done = make(chan struct{})
	if dd.d.Plan == nil {
		for _, part := range dd.parts {
			l.out.enqueue(part.calls...)
		}
		dd.committed = len(dd.parts)
		close(dd.done)
		l.finish(dd)
		return
	}
	l.inflight = dd
	commit, out, ctx := l.s.deps.Commit, l.out, l.ctx
	go func() {
		defer close(dd.done)
		for k, part := range dd.parts {
			if part.plan != nil {
				begin := time.Now()
				err := commit(ctx, part.plan)
				dd.took = append(dd.took, time.Since(begin))
				if err != nil {
					dd.err = err
					return
				}
			}
			if k == 0 && out.failedAccept() {
				// Launches recorded as staging may never have reached the
				// master; reconciliation will tell.
				dd.failedAccept = true
			}
			out.enqueue(part.calls...)
			dd.committed = k + 1
		}
	}()
}

// finish completes a decision whose commit is done: on success it sends
// the calls after the last part, publishes and reports; on failure it
// drops what the decision assumed. It reports whether the plan committed.
func (l *loop) finish(dd *decided) bool {
	if l.inflight == dd {
		l.inflight = nil
	}
	obs := l.s.deps.Observer
	if obs != nil {
		for k, took := range dd.took {
			obs.PlanCommitted(took, k < len(dd.took)-1 || dd.err == nil)
		}
	}
	for _, part := range dd.parts[:dd.committed] {
		if part.plan != nil {
			l.snaps.committed(dd.store, part.plan)
		}
	}
	in := dd.in
	if dd.err != nil {
		l.snaps.drop()
		// Not committed: send nothing that depends on it. Offers are
		// declined so they are not held; the memory is dropped so that
		// whatever it recorded as sent is decided again.
		// Usually a conflict with a concurrent API write to an instance
		// (the FSM's compare-and-set), or lost leadership.
		k := dd.committed
		l.s.log.Warn("scheduler plan not committed; deciding again", "err", dd.err, "input", fmt.Sprintf("%T", in), "part", k+1, "of", len(dd.parts))
		l.s.mem = l.s.mem.afterFailedCommit(dd.d)
		if k == 0 {
			l.declineOffers(in)
		} else {
			l.declineAccepts(dd.parts[k:])
		}
		return false
	}
	if dd.failedAccept {
		l.s.mem.reconcileNow = true
	}
	d := dd.d
	l.out.enqueue(dd.rest...)
	if obs != nil {
		observe(obs, in, d, dd.placed)
	}
	for _, f := range d.TaskFailures {
		LogTaskFailure(l.s.log, f)
	}
	l.s.deps.Live.recordOffers(d.OfferOutcomes, dd.now)
	if r := d.Reconciliation; r != nil {
		if r.Complete() {
			l.s.log.Info("reconciliation complete", "tasks", r.Tasks, "took", r.Took)
		} else {
			l.s.log.Warn("reconciliation incomplete", "tasks", r.Tasks, "missing", r.Missing, "took", r.Took)
		}
	}
	if l.s.deps.Publish != nil {
		for _, e := range d.Events {
			l.s.deps.Publish(e)
		}
	}
	if _, ok := in.(Tick); ok {
		after, err := l.snaps.get(l.s.deps.Store(), l.s.mem)
		if err != nil {
			l.s.log.Error("cannot read the state store; health and readiness checks unchanged", "err", err)
			return true
		}
		l.health.sync(healthTargets(after))
		l.readiness.sync(readinessTargets(after))
		if l.s.deps.Live != nil {
			l.s.deps.Live.syncWaiting(waitingInstances(after))
		}
	}
	return true
}

// overlay returns st with plan applied on top, for a decision made while
// plan commits, with mem as its memory. st itself is not changed.
func overlay(st *State, plan *v1.SchedulerPlanCommand, mem *Memory) *State {
	o := *st
	o.Mem = mem
	o.changed()
	if plan == nil {
		return &o
	}
	if len(plan.GetPutInstances()) > 0 || len(plan.GetDeleteInstances()) > 0 {
		o.Instances = maps.Clone(st.Instances)
		for _, i := range plan.GetPutInstances() {
			o.Instances[i.GetId()] = i
		}
		for _, id := range plan.GetDeleteInstances() {
			delete(o.Instances, id)
		}
		// The store's task index does not know the plan's tasks yet: look
		// tasks up in the overlay's own instances.
		o.lookup = nil
	}
	if len(plan.GetPutDeployments()) > 0 || len(plan.GetDeleteDeployments()) > 0 {
		o.Deployments = maps.Clone(st.Deployments)
		for _, d := range plan.GetPutDeployments() {
			o.Deployments[d.GetId()] = d
		}
		for _, id := range plan.GetDeleteDeployments() {
			delete(o.Deployments, id)
		}
	}
	if len(plan.GetPutBackups()) > 0 {
		o.Backups = maps.Clone(st.Backups)
		for _, b := range plan.GetPutBackups() {
			o.Backups[b.GetId()] = b
		}
	}
	return &o
}

// overlaps is true when next writes a record that prev writes: decided
// on prev's uncommitted copy, next's write would be refused (or, for a
// deployment or a backup record, might undo prev's).
func overlaps(prev, next *v1.SchedulerPlanCommand) bool {
	if prev == nil || next == nil {
		return false
	}
	if len(prev.GetPutBackups()) > 0 || len(next.GetPutBackups()) > 0 {
		return true // rare; the records are few and read afresh
	}
	inst := make(map[string]bool, len(prev.GetPutInstances())+len(prev.GetDeleteInstances()))
	for _, i := range prev.GetPutInstances() {
		inst[i.GetId()] = true
	}
	for _, id := range prev.GetDeleteInstances() {
		inst[id] = true
	}
	for _, i := range next.GetPutInstances() {
		if inst[i.GetId()] {
			return true
		}
	}
	for _, id := range next.GetDeleteInstances() {
		if inst[id] {
			return true
		}
	}
	deps := map[string]bool{}
	for _, d := range prev.GetPutDeployments() {
		deps[d.GetId()] = true
	}
	for _, id := range prev.GetDeleteDeployments() {
		deps[id] = true
	}
	for _, d := range next.GetPutDeployments() {
		if deps[d.GetId()] {
			return true
		}
	}
	for _, id := range next.GetDeleteDeployments() {
		if deps[id] {
			return true
		}
	}
	return false
}

// clone copies the memory for a speculative decision (see above), which
// may be discarded: every field must be copied, maps included, so that
// nothing the copy records reaches the original.
func (m *Memory) clone() *Memory {
	c := *m
	c.kills = maps.Clone(m.kills)
	c.agents = maps.Clone(m.agents)
	c.demand = maps.Clone(m.demand)
	c.configEqual = maps.Clone(m.configEqual)
	c.unmovable = maps.Clone(m.unmovable)
	c.agentStates = maps.Clone(m.agentStates)
	c.starting = maps.Clone(m.starting)
	c.recon.asked = maps.Clone(m.recon.asked)
	c.recon.awaiting = maps.Clone(m.recon.awaiting)
	return &c
}
