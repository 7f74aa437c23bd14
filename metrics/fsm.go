package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FSM measures the replicated state machine; it implements fsm.Observer.
// A nil *FSM measures nothing.
type FSM struct {
	apply        *prometheus.HistogramVec
	snapshotSize prometheus.Gauge
	snapshotTime prometheus.Histogram
}

func newFSM() *FSM {
	return &FSM{
		apply: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_fsm_apply_duration_seconds",
			Help:    "Time to apply one Raft log entry to the state store, by command type (its count is the number of entries applied).",
			Buckets: latencyBuckets,
		}, []string{"command"}),
		snapshotSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_fsm_snapshot_size_bytes",
			Help: "Size of the last state snapshot this server wrote.",
		}),
		snapshotTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "berth_fsm_snapshot_duration_seconds",
			Help:    "Time to write a state snapshot.",
			Buckets: latencyBuckets,
		}),
	}
}

func (f *FSM) register(reg prometheus.Registerer) {
	reg.MustRegister(f.apply, f.snapshotSize, f.snapshotTime)
}

// CommandApplied records one applied log entry of the named command type.
func (f *FSM) CommandApplied(command string, took time.Duration) {
	if f == nil {
		return
	}
	f.apply.WithLabelValues(command).Observe(took.Seconds())
}

// SnapshotPersisted records one snapshot written.
func (f *FSM) SnapshotPersisted(bytes int64, took time.Duration) {
	if f == nil {
		return
	}
	f.snapshotSize.Set(float64(bytes))
	f.snapshotTime.Observe(took.Seconds())
}
