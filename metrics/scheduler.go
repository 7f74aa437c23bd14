package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Scheduler measures the leader's Mesos scheduler; it implements
// scheduler.Observer. Its series move only on the leader. A nil
// *Scheduler measures nothing.
type Scheduler struct {
	offers       *prometheus.CounterVec
	operations   *prometheus.CounterVec
	planCommit   *prometheus.HistogramVec
	decisions    *prometheus.CounterVec
	decideTime   *prometheus.HistogramVec
	placement    prometheus.Histogram
	reconcile    prometheus.Histogram
	missing      prometheus.Gauge
	reconciled   *prometheus.CounterVec
	health       *prometheus.CounterVec
	deployments  *prometheus.CounterVec
	subscribedG  prometheus.Gauge
	reconnects   prometheus.Counter
	isSubscribed atomic.Bool
}

func newScheduler() *Scheduler {
	return &Scheduler{
		offers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_scheduler_offers_total",
			Help: "Mesos offers, by outcome: received, declined, accepted.",
		}, []string{"outcome"}),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_scheduler_operations_total",
			Help: "Mesos operations sent after their plan committed, by type (RESERVE, CREATE, LAUNCH, DESTROY, UNRESERVE, KILL).",
		}, []string{"operation"}),
		planCommit: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_scheduler_plan_commit_duration_seconds",
			Help:    "Latency of committing a scheduler plan through Raft, by result (ok, failed).",
			Buckets: latencyBuckets,
		}, []string{"result"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_scheduler_decisions_total",
			Help: "Scheduler decisions made, by input (offers, status, statuses, tick: the full periodic pass, changes: the pass over what commits changed, health, readiness, subscribed, other).",
		}, []string{"input"}),
		decideTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_scheduler_decision_duration_seconds",
			Help:    "Time the pure core takes to decide on one input, by input (as berth_scheduler_decisions_total).",
			Buckets: latencyBuckets,
		}, []string{"input"}),
		placement: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "berth_scheduler_placement_duration_seconds",
			Help:    "Time from a launch's commit (the intent) to its task's first TASK_RUNNING.",
			Buckets: latencyBuckets,
		}),
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "berth_scheduler_reconciliation_duration_seconds",
			Help:    "Time from subscribing to the end of explicit reconciliation.",
			Buckets: latencyBuckets,
		}),
		missing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_scheduler_reconciliation_missing_tasks",
			Help: "Tasks Mesos did not answer for in the last explicit reconciliation (0: complete).",
		}),
		reconciled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_scheduler_reconciliations_total",
			Help: "Explicit reconciliations ended, by result (complete, incomplete).",
		}, []string{"result"}),
		health: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_scheduler_health_checks_total",
			Help: "Health check results, by result (healthy, unhealthy).",
		}, []string{"result"}),
		deployments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_scheduler_deployments_finished_total",
			Help: "Deployments ended, by outcome (succeeded, failed). Running ones: berth_state_deployments.",
		}, []string{"outcome"}),
		subscribedG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_scheduler_subscribed",
			Help: "1 while this server's scheduler holds a Mesos subscription.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_scheduler_resubscriptions_total",
			Help: "Retries of a Mesos subscription that broke.",
		}),
	}
}

func (s *Scheduler) register(reg prometheus.Registerer) {
	reg.MustRegister(s.offers, s.operations, s.planCommit, s.decisions, s.decideTime, s.placement,
		s.reconcile, s.missing, s.reconciled, s.health, s.deployments, s.subscribedG, s.reconnects)
	// Present from the start, so that rates and alerts see a zero.
	for _, o := range []string{"received", "declined", "accepted"} {
		s.offers.WithLabelValues(o)
	}
	for _, op := range []string{"RESERVE", "CREATE", "LAUNCH", "DESTROY", "UNRESERVE", "KILL"} {
		s.operations.WithLabelValues(op)
	}
	for _, r := range []string{"complete", "incomplete"} {
		s.reconciled.WithLabelValues(r)
	}
	for _, o := range []string{"succeeded", "failed"} {
		s.deployments.WithLabelValues(o)
	}
	for _, r := range []string{"healthy", "unhealthy"} {
		s.health.WithLabelValues(r)
	}
	for _, in := range []string{"subscribed", "offers", "status", "statuses", "tick", "changes", "health", "readiness", "other"} {
		s.decisions.WithLabelValues(in)
		s.decideTime.WithLabelValues(in)
	}
}

// Decided implements scheduler.Observer.
func (s *Scheduler) Decided(input string, took time.Duration) {
	s.decisions.WithLabelValues(input).Inc()
	s.decideTime.WithLabelValues(input).Observe(took.Seconds())
}

// Offers implements scheduler.Observer.
func (s *Scheduler) Offers(received, declined, accepted int) {
	s.offers.WithLabelValues("received").Add(float64(received))
	s.offers.WithLabelValues("declined").Add(float64(declined))
	s.offers.WithLabelValues("accepted").Add(float64(accepted))
}

// OperationsSent implements scheduler.Observer.
func (s *Scheduler) OperationsSent(op string, n int) {
	s.operations.WithLabelValues(op).Add(float64(n))
}

// PlanCommitted implements scheduler.Observer.
func (s *Scheduler) PlanCommitted(took time.Duration, ok bool) {
	r := "ok"
	if !ok {
		r = "failed"
	}
	s.planCommit.WithLabelValues(r).Observe(took.Seconds())
}

// Placed implements scheduler.Observer.
func (s *Scheduler) Placed(took time.Duration) { s.placement.Observe(took.Seconds()) }

// Reconciled implements scheduler.Observer.
func (s *Scheduler) Reconciled(took time.Duration, _, missing int) {
	s.reconcile.Observe(took.Seconds())
	s.missing.Set(float64(missing))
	r := "complete"
	if missing > 0 {
		r = "incomplete"
	}
	s.reconciled.WithLabelValues(r).Inc()
}

// HealthChecked implements scheduler.Observer.
func (s *Scheduler) HealthChecked(healthy bool) {
	r := "healthy"
	if !healthy {
		r = "unhealthy"
	}
	s.health.WithLabelValues(r).Inc()
}

// DeploymentFinished implements scheduler.Observer.
func (s *Scheduler) DeploymentFinished(outcome string) {
	s.deployments.WithLabelValues(outcome).Inc()
}

// Subscribed implements scheduler.Observer.
func (s *Scheduler) Subscribed(on bool) {
	s.isSubscribed.Store(on)
	if on {
		s.subscribedG.Set(1)
	} else {
		s.subscribedG.Set(0)
	}
}

// Resubscribing implements scheduler.Observer.
func (s *Scheduler) Resubscribing() { s.reconnects.Inc() }

// IsSubscribed reports whether the scheduler holds a Mesos subscription
// (for the readiness check).
func (s *Scheduler) IsSubscribed() bool { return s != nil && s.isSubscribed.Load() }
