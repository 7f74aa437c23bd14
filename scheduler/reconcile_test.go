package scheduler

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// failoverWithoutAnswers simulates a new leader: the memory is lost, offers
// rescinded, and it subscribes. The master's answers to the reconciliation
// stay pending, for the test to deliver one by one.
func (h *harness) failoverWithoutAnswers() Decision {
	h.t.Helper()
	h.mem = NewMemory()
	h.master.rescindAll()
	h.events = nil
	return h.decide(Subscribed{FrameworkID: h.store.frameworkID()})
}

// nextStatus delivers the oldest pending status update.
func (h *harness) nextStatus() Decision {
	h.t.Helper()
	if len(h.master.pending) == 0 {
		h.t.Fatal("no pending status update")
	}
	s := h.master.pending[0]
	h.master.pending = h.master.pending[1:]
	return h.decide(StatusUpdate{Status: s})
}

func (h *harness) countEvents(typ string) int {
	n := 0
	for _, e := range h.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// explicitReconcileTasks returns the task count of the explicit RECONCILE
// calls in d (-1 if there is none).
func explicitReconcileTasks(d Decision) int {
	for _, c := range d.Calls {
		if c.Type == scheduler.Call_RECONCILE && len(c.Reconcile.Tasks) > 0 {
			return len(c.Reconcile.Tasks)
		}
	}
	return -1
}

// runningHarness has three stateless and one resident task running.
func runningHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31100, nil)
	h.master.addAgent("A2", "host2", 4, 1024, 1000, 31000, 31100, nil)
	h.store.putApp(statelessApp("/web", "v1", 3), "")
	h.store.putApp(residentApp("/pg", "v1", 1), "")
	h.settle()
	if n := len(h.master.liveTasks()); n != 4 {
		t.Fatalf("%d live tasks, want 4", n)
	}
	return h
}

// After a failover, the reconciliation is complete once the master has
// answered every task asked about, not before; later answers (the implicit
// reconciliation's) report nothing more.
func TestReconciliationCompleteWhenEveryTaskAnswered(t *testing.T) {
	h := runningHarness(t)
	d := h.failoverWithoutAnswers()
	if n := explicitReconcileTasks(d); n != 4 {
		t.Fatalf("explicit reconciliation of %d tasks, want 4", n)
	}
	if d.Reconciliation != nil {
		t.Fatalf("reconciliation reported before any answer: %+v", d.Reconciliation)
	}
	// The fake master answered the explicit reconciliation (4 updates) and
	// the implicit one (4 more).
	if n := len(h.master.pending); n != 8 {
		t.Fatalf("%d pending updates, want 8", n)
	}
	for k := 0; k < 3; k++ {
		h.advance(500 * time.Millisecond)
		if d := h.nextStatus(); d.Reconciliation != nil {
			t.Fatalf("reconciliation reported after %d of 4 answers", k+1)
		}
	}
	h.advance(500 * time.Millisecond)
	d = h.nextStatus()
	want := ReconciliationReport{Tasks: 4, Missing: 0, Took: 2 * time.Second}
	if d.Reconciliation == nil || *d.Reconciliation != want || !d.Reconciliation.Complete() {
		t.Fatalf("report %+v, want %+v", d.Reconciliation, want)
	}
	if len(d.Events) != 1 || d.Events[0].Type != EventReconciliationComplete || !strings.Contains(d.Events[0].Message, "4 tasks") {
		t.Fatalf("events %v", d.Events)
	}
	for len(h.master.pending) > 0 {
		if d := h.nextStatus(); d.Reconciliation != nil {
			t.Fatalf("reported twice: %+v", d.Reconciliation)
		}
	}
	h.advance(2 * time.Minute)
	h.tick()
	if n := h.countEvents(EventReconciliationComplete); n != 1 {
		t.Fatalf("%d reconciliation_complete events, want 1", n)
	}
	if n := h.countEvents(EventReconciliationIncomplete); n != 0 {
		t.Fatalf("%d reconciliation_incomplete events, want 0", n)
	}
}

// A status update from the agent (not the master's reconciliation answer)
// answers a task too; updates of tasks not asked about do not count.
func TestReconciliationAnsweredByAnyStatusOfTheTask(t *testing.T) {
	h := runningHarness(t)
	h.failoverWithoutAnswers()
	answers := h.master.pending
	h.master.pending = nil
	// A task crashes: its TASK_FAILED (from the executor) answers it.
	crashed := answers[0].TaskID.Value
	h.master.crash(crashed)
	if d := h.nextStatus(); d.Reconciliation != nil {
		t.Fatal("reported after one answer")
	}
	// An update for a task Berth does not know answers nothing.
	h.master.status("unknown-task", "A1", mesos.TASK_KILLED, mesos.SOURCE_MASTER, false)
	if d := h.nextStatus(); d.Reconciliation != nil {
		t.Fatal("reported after an unrelated update")
	}
	var report *ReconciliationReport
	for k, s := range answers[1:4] {
		d := h.decide(StatusUpdate{Status: s})
		if d.Reconciliation != nil {
			if k != 2 {
				t.Fatalf("reported after answer %d of the 3 others", k+1)
			}
			report = d.Reconciliation
		}
	}
	if report == nil || report.Tasks != 4 || !report.Complete() {
		t.Fatalf("report %+v, want 4 tasks complete", report)
	}
}

// With no live task, the subscription's decision itself reports the
// reconciliation complete.
func TestReconciliationCompleteWithoutTasks(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31100, nil)
	d := h.failoverWithoutAnswers()
	if explicitReconcileTasks(d) != -1 {
		t.Fatalf("explicit reconciliation without tasks: %v", callTypes(d))
	}
	want := ReconciliationReport{}
	if d.Reconciliation == nil || *d.Reconciliation != want {
		t.Fatalf("report %+v, want %+v", d.Reconciliation, want)
	}
	if h.countEvents(EventReconciliationComplete) != 1 {
		t.Fatalf("events %v", h.eventTypes())
	}
}

// Tasks Mesos never answers (e.g. on an agent that has not re-registered
// with a recovering master) do not block: after ReconciliationTimeout the
// reconciliation is reported incomplete with the number missing, once.
func TestReconciliationTimeoutReportsMissing(t *testing.T) {
	h := runningHarness(t)
	h.cfg.ReconciliationTimeout = 30 * time.Second
	h.failoverWithoutAnswers()
	answers := h.master.pending[:4]
	h.master.pending = nil
	// The last two tasks are never answered (their agent is recovering).
	silent := 2
	for _, s := range answers[:2] {
		if d := h.decide(StatusUpdate{Status: s}); d.Reconciliation != nil {
			t.Fatalf("reported with tasks unanswered: %+v", d.Reconciliation)
		}
	}
	h.advance(29 * time.Second)
	if d := h.tick(); d.Reconciliation != nil {
		t.Fatalf("reported before the timeout: %+v", d.Reconciliation)
	}
	h.advance(time.Second)
	d := h.tick()
	want := ReconciliationReport{Tasks: 4, Missing: silent, Took: 30 * time.Second}
	if d.Reconciliation == nil || *d.Reconciliation != want || d.Reconciliation.Complete() {
		t.Fatalf("report %+v, want %+v", d.Reconciliation, want)
	}
	if h.countEvents(EventReconciliationIncomplete) != 1 || h.countEvents(EventReconciliationComplete) != 0 {
		t.Fatalf("events %v", h.eventTypes())
	}
	// Late answers report nothing more.
	for _, s := range answers {
		if d := h.decide(StatusUpdate{Status: s}); d.Reconciliation != nil {
			t.Fatalf("reported again: %+v", d.Reconciliation)
		}
	}
	h.advance(time.Minute)
	if d := h.tick(); d.Reconciliation != nil {
		t.Fatalf("reported again: %+v", d.Reconciliation)
	}
}

// If the plan of the decision that completed the reconciliation is not
// committed, tracking resumes: the next tick reconciles every live task
// again and completion is reported once those are answered.
func TestReconciliationResumesAfterFailedCommit(t *testing.T) {
	h := runningHarness(t)
	h.failoverWithoutAnswers()
	answers := h.master.pending[:4]
	h.master.pending = nil
	var last Decision
	for _, s := range answers {
		last = h.decide(StatusUpdate{Status: s})
	}
	if last.Reconciliation == nil {
		t.Fatal("not reported after all answers")
	}
	// The driver's commit failed: it continues with afterFailedCommit.
	h.mem = h.mem.afterFailedCommit(last)
	h.events = nil
	h.advance(time.Second)
	d := h.tick()
	if n := explicitReconcileTasks(d); n != 4 {
		t.Fatalf("tick after the failed commit reconciled %d tasks, want 4 (calls %v)", n, callTypes(d))
	}
	if d.Reconciliation != nil {
		t.Fatal("reported before the new answers")
	}
	var report *ReconciliationReport
	for len(h.master.pending) > 0 {
		if d := h.nextStatus(); d.Reconciliation != nil {
			if report != nil {
				t.Fatal("reported twice")
			}
			report = d.Reconciliation
		}
	}
	if report == nil || report.Tasks != 4 || !report.Complete() || report.Took != time.Second {
		t.Fatalf("report %+v, want 4 tasks complete after 1s", report)
	}

	// A failed commit of an ordinary decision keeps the tracker as it is.
	h2 := runningHarness(t)
	h2.failoverWithoutAnswers()
	answers = h2.master.pending[:4]
	h2.master.pending = nil
	d = h2.decide(StatusUpdate{Status: answers[0]})
	h2.mem = h2.mem.afterFailedCommit(d)
	if got := len(h2.mem.recon.awaiting); got != 3 || !h2.mem.recon.active {
		t.Fatalf("after a failed commit: %d awaited (active %v), want 3", got, h2.mem.recon.active)
	}
}

func TestConfigRejectsNegativeReconciliationTimeout(t *testing.T) {
	err := Config{MesosMaster: "http://127.0.0.1:5050", ReconciliationTimeout: -time.Second}.Validate()
	if err == nil || !strings.Contains(err.Error(), "ReconciliationTimeout") {
		t.Fatalf("Validate: %v", err)
	}
}

// lockedBuffer is a log destination safe for concurrent writes and reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
