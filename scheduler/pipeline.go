package scheduler

import (
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The driver decides the next input while the previous plan commits, and
// can commit both at once (commitBeside).
//
// A Raft commit takes tens to hundreds of milliseconds on three servers,
// and the loop used to do nothing meanwhile: placement was one decision,
// then one commit, then the next decision, one after the other. Now at
// most maxInFlight decisions are on their way (loop.inflight, oldest
// first). With a plan in flight, the next input is decided speculatively
// on the committed state with that plan applied on top (overlay) and with
// a copy of the leader's memory. Then:
//
//   - with commitBeside, if the new decision writes no instance,
//     deployment or backup record that the plan in flight writes, its
//     plan starts committing at once,
//     beside the other (Raft appends and replicates both together). Their
//     records are disjoint, so the FSM's result does not depend on which
//     applies first. Its calls, early ones included, are queued only once
//     its own part committed and the plan under it committed: they may
//     depend on it (a KILL for a goal it set, an ACCEPT on resources it
//     left). If the plan under it does not commit, none of them is sent;
//     its own plan may have committed (its launches recorded but never
//     sent, as after a leader's crash between commit and send), so the
//     memory is dropped, which reconciles, and its input is decided again
//     on the state as it now is;
//   - otherwise (and always without commitBeside) it is held until the
//     plan in flight is done, then adopted as decided if that plan
//     committed and the two write no record in common, or else discarded
//     whole (nothing of it was sent, its memory dropped) and its input
//     decided again on the state as it now is. (A record written by both
//     would be refused by the FSM's compare-and-set: the new decision's
//     copy carries the index it was read at, from before that commit.)
//   - a decision with neither plan nor calls (acknowledgements of soft
//     state at most) is done at once.
//
// Invariant 1 holds: nothing is sent on the strength of a plan that is not
// committed, whether its own or one it was decided on.

// maxInFlight bounds the decisions on their way at once: one committing
// and one decided on top of it.
const maxInFlight = 2

// commitBeside is whether a decision made on top of the plan in flight
// commits beside it when their records are disjoint (see above). Off by
// default: measured on the 1,000- and 10,000-instance benchmarks
// (BENCHMARKS.md), committing beside made more, smaller commits (the
// loop no longer waited, so status batches were smaller) and each commit
// costs about as much Raft and FSM work as a larger one, plus the periodic
// pass its store change triggers; deciding during the commit and then
// committing one plan after the other placed faster. The tests run both.
const commitBeside = false

// errDiscarded is the outcome of a decision made on top of a plan that
// did not commit: nothing of it was sent.
var errDiscarded = errors.New("decided on top of a plan that did not commit")

// decided is one decision on its way through commit and send.
type decided struct {
	in    Input
	d     Decision
	store Store
	now   time.Time
	mem   *Memory // the memory the decision was made with
	parts []planPart
	rest  []*scheduler.Call
	// changes names what the plan writes, for the next scoped pass.
	changes *Changes

	// Written by the commit goroutine, read once done is closed.
	done         chan struct{}
	committed    int             // parts committed (calls queued)
	took         []time.Duration // per part with a plan
	err          error           // why part committed+1 did not commit, or errDiscarded
	failedAccept bool
}

// committing returns a channel closed when the oldest plan in flight is
// done (nil, never ready, when none is).
func (l *loop) committing() <-chan struct{} {
	if len(l.inflight) == 0 {
		return nil
	}
	return l.inflight[0].done
}

// apply decides on in and carries it through: it returns once everything
// decided so far is committed and sent, or has failed.
func (l *loop) apply(in Input) {
	l.submit(in)
	l.flush()
}

// submit decides on in, on top of the plan in flight if there is one (see
// above), and starts committing its plan in the background. With
// maxInFlight plans in flight it first waits for the oldest.
func (l *loop) submit(in Input) {
	for len(l.inflight) >= maxInFlight && l.ctx.Err() == nil {
		l.finishOldest()
	}
	if l.ctx.Err() != nil {
		return
	}
	if len(l.inflight) == 0 {
		if d := l.decide(in, nil); d != nil {
			l.start(d, nil)
		}
		return
	}
	prev := l.inflight[len(l.inflight)-1]
	next := l.decide(in, prev)
	if next == nil {
		return
	}
	switch {
	case l.beside && next.d.Plan != nil && !overlaps(prev.d.Plan, next.d.Plan):
		// Committed beside prev, sent once prev committed too.
		l.s.mem = next.mem
		l.start(next, prev)
		return
	case next.d.Plan == nil && len(next.d.Calls) == 0:
		// Nothing that depends on prev (acknowledgements of soft state at
		// most): done at once.
		l.s.mem = next.mem
		l.start(next, nil)
		return
	}
	// Its calls depend on prev's plan, or it writes what prev writes:
	// held until prev is done, then adopted or decided again.
	for len(l.inflight) > 0 {
		if !l.finishOldest() {
			prev = nil
		}
	}
	if l.ctx.Err() != nil {
		return
	}
	if prev == nil || overlaps(prev.d.Plan, next.d.Plan) {
		l.s.log.Debug("decision made during a commit discarded; deciding again", "input", fmt.Sprintf("%T", in))
		if d := l.decide(in, nil); d != nil {
			l.start(d, nil)
		}
		return
	}
	if prev.failedAccept {
		next.mem.reconcileNow = true
	}
	l.s.mem = next.mem
	l.start(next, nil)
}

// finishOldest waits for the oldest plan in flight and finishes it. When it
// did not commit, what was decided on top of it is discarded (nothing of
// it was sent) and its inputs are decided again. It reports whether the
// oldest plan committed.
func (l *loop) finishOldest() bool {
	p := l.inflight[0]
	<-p.done
	l.inflight = l.inflight[1:]
	if l.finish(p) {
		return true
	}
	doomed := l.inflight
	l.inflight = nil
	for _, q := range doomed {
		<-q.done
		l.discard(q)
	}
	for _, q := range doomed {
		l.submit(q.in)
	}
	return false
}

// discard ends a decision made on top of a plan that did not commit: none
// of its calls went out. Parts of its own plan may have committed (launches
// recorded but never sent): the reconciliation that afterFailedCommit asks
// for tells the truth about them.
func (l *loop) discard(q *decided) {
	if obs := l.s.deps.Observer; obs != nil {
		for k, took := range q.took {
			obs.PlanCommitted(took, k < q.committed)
		}
	}
	l.snaps.drop()
	l.s.mem.reconcileNow = true
	l.s.log.Warn("scheduler decision discarded: the plan it was decided on did not commit; deciding again",
		"input", fmt.Sprintf("%T", q.in), "err", q.err, "parts_committed", q.committed, "of", len(q.parts))
}

// flush waits for every plan in flight and finishes them.
func (l *loop) flush() {
	for len(l.inflight) > 0 {
		l.finishOldest()
	}
}

// abandon ends the session's pipeline: cancel makes the commits in flight
// return, which are waited for; nothing more is sent.
func (l *loop) abandon(cancel func()) {
	cancel()
	for _, p := range l.inflight {
		<-p.done
	}
	l.inflight = nil
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
		var undo func()
		st, undo = overlay(st, on.d.Plan, mem)
		// The committed state is read again only after undo.
		defer undo()
	}
	obs := l.s.deps.Observer
	now := time.Now()
	d := Decide(st, in, now, l.s.cfg)
	took := time.Since(now)
	if obs != nil {
		obs.Decided(inputKind(in), took)
	}
	if t, ok := in.(Tick); ok && t.Changes == nil {
		l.fullTook = took
	}
	parts, rest := splitPlan(d, maxPlanInstances)
	var changes *Changes
	if d.Plan != nil {
		changes = planChanges(st, d.Plan)
	}
	return &decided{in: in, d: d, store: store, now: now, mem: mem, parts: parts, rest: rest, changes: changes}
}

// start commits the decision's plan in the background, part after part,
// queueing each part's calls once it (and every part before it)
// committed. With after set (a decision in flight that this one was
// decided on top of) nothing is queued, early calls included, before
// after's plan committed; if it does not, nothing at all. Without after,
// early calls are queued at once. A decision without a plan (after must be
// nil then) is finished at once.
func (l *loop) start(dd *decided, after *decided) {
	dd.done = make(chan struct{})
	if after == nil {
		// Early calls imply nothing the plan records: they need not wait for it.
		l.out.enqueue(dd.d.Early...)
	}
	if dd.d.Plan == nil {
		for _, part := range dd.parts {
			l.out.enqueue(part.calls...)
		}
		dd.committed = len(dd.parts)
		close(dd.done)
		l.finish(dd)
		return
	}
	l.inflight = append(l.inflight, dd)
	// Noted as it starts: a pass decided from now on is decided on top of
	// it, and its store change may come before the loop finishes it.
	l.snaps.note(dd.changes)
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
			if after != nil {
				<-after.done
				if after.err != nil {
					dd.err = errDiscarded
					return
				}
				after = nil
				out.enqueue(dd.d.Early...)
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
		observe(obs, in, d)
	}
	for _, f := range d.TaskFailures {
		LogTaskFailure(l.s.log, f)
	}
	l.s.deps.Live.recordOffers(d.OfferOutcomes, dd.now)
	if r := d.Reconciliation; r != nil {
		if l.reconciled != nil {
			close(l.reconciled)
			l.reconciled = nil
		}
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
		l.copies.sync(nestedCopyTargets(after, l.s.cfg.BinaryURL))
		if l.s.deps.Live != nil {
			l.s.deps.Live.syncWaiting(waitingInstances(after))
		}
	}
	return true
}

// overlay returns st with plan applied on top, for a decision made while
// plan commits, with mem as its memory, and the function that takes the
// plan off st again. The overlay writes the plan's instances into st's
// own map, and undo puts back what they replaced: a copy of the map was
// 10–20 ms and 3.5 MB per decision made during a commit with 100,000
// instances. Until undo, st is read only through the overlay (the loop's
// goroutine decides on one or the other, never both at once); its other
// maps are copied when the plan writes them.
func overlay(st *State, plan *v1.SchedulerPlanCommand, mem *Memory) (*State, func()) {
	o := *st
	o.Mem = mem
	o.changed()
	undo := func() {}
	if plan == nil {
		return &o, undo
	}
	if len(plan.GetPutInstances()) > 0 || len(plan.GetDeleteInstances()) > 0 {
		type was struct {
			inst *v1.Instance
			ok   bool
		}
		prev := make(map[string]was, len(plan.GetPutInstances())+len(plan.GetDeleteInstances()))
		keep := func(id string) {
			if _, saved := prev[id]; !saved {
				i, ok := st.Instances[id]
				prev[id] = was{i, ok}
			}
		}
		same := len(plan.GetDeleteInstances()) == 0 // the same instance ids
		byTask := make(map[string]*v1.Instance, len(plan.GetPutInstances()))
		for _, i := range plan.GetPutInstances() {
			if _, ok := st.Instances[i.GetId()]; !ok {
				same = false
			}
			keep(i.GetId())
			st.Instances[i.GetId()] = i
			if t := i.GetTask().GetId(); t != "" {
				byTask[t] = i
			}
		}
		for _, id := range plan.GetDeleteInstances() {
			keep(id)
			delete(st.Instances, id)
		}
		undo = func() {
			for id, w := range prev {
				if w.ok {
					st.Instances[id] = w.inst
				} else {
					delete(st.Instances, id)
				}
			}
		}
		if same {
			o.sorted, o.byApp = st.sorted, st.byApp
		}
		// The store's task index does not know the plan's tasks yet: they
		// are looked up in the plan first. (An instance the store finds
		// whose task the plan replaced is not the overlay's: instanceByTask
		// then falls back to indexing the overlay's instances.)
		if base := st.lookup; base != nil {
			o.lookup = func(taskID string) (*v1.Instance, error) {
				if i, ok := byTask[taskID]; ok {
					return i, nil
				}
				return base(taskID)
			}
		}
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
	return &o, undo
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
	c.kills = copyMap(m.kills)
	c.stagingAsked = copyMap(m.stagingAsked)
	c.agents = copyMap(m.agents)
	c.demand = copyMap(m.demand)
	c.configEqual = copyMap(m.configEqual)
	c.unmovable = copyMap(m.unmovable)
	c.agentStates = copyMap(m.agentStates)
	c.starting = copyMap(m.starting)
	if m.recon.active {
		c.recon.asked = copyMap(m.recon.asked)
		c.recon.awaiting = copyMap(m.recon.awaiting)
	}
	// Once the reconciliation is reported (inactive), its sets are only
	// read (reconAsked and reconAnswered write while active), so the copy
	// shares them: after a reconciliation of 10,000 tasks, copying them
	// for each decision made during a commit was a third of the time the
	// leader spent copying its memory while the stopped apps started
	// again. A memory that afterFailedCommit reactivates takes them over
	// from one whose decisions on top were all discarded.
	return &c
}

// copyMap copies m. maps.Clone copies the map's whole table, as large as
// the map ever grew: the kills of a stop of 10,000 instances left a table
// of 10,000 slots, copied for every decision made during a commit long
// after the last kill was done. A map of few entries is copied entry by
// entry into a table of its size.
func copyMap[M ~map[K]V, K comparable, V any](m M) M {
	if m == nil {
		return nil
	}
	if len(m) > 256 {
		return maps.Clone(m)
	}
	c := make(M, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
