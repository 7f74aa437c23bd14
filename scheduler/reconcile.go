package scheduler

import (
	"fmt"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Event types published when the explicit reconciliation sent on subscribe
// ends: every task asked about was answered, or the timeout passed first.
const (
	EventReconciliationComplete   = "reconciliation_complete"
	EventReconciliationIncomplete = "reconciliation_incomplete"
)

// ReconciliationReport tells that the explicit reconciliation a newly
// subscribed scheduler sent for every known live task has ended: either
// every task was answered by a status update (Missing is 0), or
// Config.ReconciliationTimeout passed with Missing tasks still unanswered
// (e.g. on agents that have not re-registered with a recovering master).
type ReconciliationReport struct {
	// Tasks is the number of distinct tasks asked about.
	Tasks int
	// Missing is the number of those not answered (0 when complete).
	Missing int
	// Took is the time from the subscription to the report.
	Took time.Duration
}

// Complete is true when every task asked about was answered.
func (r ReconciliationReport) Complete() bool { return r.Missing == 0 }

// reconTracker follows the explicit reconciliation started on subscribe.
// While it is active, every explicit reconciliation of all live tasks (the
// one on subscribe, and any resent before the report, e.g. after a plan
// failed to commit) adds its tasks to the awaited set; any status update of
// an awaited task answers it.
type reconTracker struct {
	active   bool // started on subscribe, not reported yet (kept after the report, for afterFailedCommit)
	since    time.Time
	asked    map[string]bool
	awaiting map[string]bool
}

// startReconTracking begins tracking at a subscription; reconcile() then
// fills the awaited set.
func (p *planner) startReconTracking() {
	p.st.Mem.recon = reconTracker{active: true, since: p.now, asked: map[string]bool{}, awaiting: map[string]bool{}}
}

// reconAsked records that explicit reconciliation was sent for tasks.
func (p *planner) reconAsked(tasks []scheduler.Call_Reconcile_Task) {
	r := &p.st.Mem.recon
	if !r.active {
		return
	}
	if len(r.asked) == 0 {
		// Sized once: 100,000 tasks grown from empty cost more than the
		// rest of the subscription's decision.
		r.asked, r.awaiting = make(map[string]bool, len(tasks)), make(map[string]bool, len(tasks))
	}
	for _, t := range tasks {
		r.asked[t.TaskID.Value] = true
		r.awaiting[t.TaskID.Value] = true
	}
}

// reconAnswered records a status update for a task, and reports completion
// when it was the last one awaited.
func (p *planner) reconAnswered(taskID string) {
	r := &p.st.Mem.recon
	if !r.active || !r.awaiting[taskID] {
		return
	}
	delete(r.awaiting, taskID)
	p.reconCheck()
}

// reconCheck reports the reconciliation complete once nothing is awaited,
// or incomplete once the timeout has passed.
func (p *planner) reconCheck() {
	r := &p.st.Mem.recon
	if !r.active {
		return
	}
	took := p.now.Sub(r.since)
	switch {
	case len(r.awaiting) == 0:
		p.reconReport(ReconciliationReport{Tasks: len(r.asked), Took: took})
	case p.cfg.ReconciliationTimeout > 0 && took >= p.cfg.ReconciliationTimeout:
		p.reconReport(ReconciliationReport{Tasks: len(r.asked), Missing: len(r.awaiting), Took: took})
	}
}

func (p *planner) reconReport(rep ReconciliationReport) {
	p.st.Mem.recon.active = false
	p.report = &rep
	if rep.Complete() {
		p.event(&v1.Event{Type: EventReconciliationComplete,
			Message: fmt.Sprintf("%d tasks reconciled in %s", rep.Tasks, rep.Took)})
		return
	}
	p.event(&v1.Event{Type: EventReconciliationIncomplete,
		Message: fmt.Sprintf("%d of %d tasks not answered by Mesos after %s", rep.Missing, rep.Tasks, rep.Took)})
}

// afterFailedCommit returns the memory a driver continues with when the
// plan of decision d failed to commit: a fresh one (everything recorded as
// sent is decided again, and reconciliation is resent at the next tick) that
// keeps tracking the reconciliation started on subscribe. If d reported that
// reconciliation, tracking resumes, since the answer that ended it was not
// committed; the resent reconciliation asks about every live task again.
func (m *Memory) afterFailedCommit(d Decision) *Memory {
	n := NewMemory()
	n.reconcileNow = true
	n.recon = m.recon
	// What Mesos reported, not what the plan decided: still true.
	n.starting = m.starting
	if d.Reconciliation != nil {
		n.recon.active = true
	}
	return n
}
