// Package metrics holds Berth's Prometheus registry and the definitions of
// its own metrics, named berth_<subsystem>_<name>_<unit>, with bounded
// label values only (procedure names, protocols, codes, command types,
// Mesos operation and task state names, never ids).
//
// The packages that produce measurements do not import Prometheus: the FSM
// calls an fsm.Observer, the scheduler's driver a scheduler.Observer, and
// this package implements both. Cluster and state gauges are read at
// scrape time through functions the server wires in.
//
// hashicorp/raft, raft-boltdb and memberlist report into go-metrics;
// InstallGoMetrics makes a Prometheus sink the process-wide go-metrics
// sink, and every Registry's handler serves those series too.
package metrics

import (
	"net/http"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is one server's metrics: Berth's own families plus the Go
// runtime and process collectors. Its handler also serves the process's
// go-metrics series (raft, raft-boltdb, memberlist).
type Registry struct {
	reg       *prometheus.Registry
	API       *API
	FSM       *FSM
	Scheduler *Scheduler
}

// New returns a registry with every Berth family registered.
func New() *Registry {
	reg := prometheus.NewRegistry()
	r := &Registry{reg: reg, API: newAPI(), FSM: newFSM(), Scheduler: newScheduler()}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	r.API.register(reg)
	r.FSM.register(reg)
	r.Scheduler.register(reg)
	return r
}

// APIMetrics returns r.API, or nil (measuring nothing) when r is nil.
func (r *Registry) APIMetrics() *API {
	if r == nil {
		return nil
	}
	return r.API
}

// MustRegister registers more collectors (e.g. ClusterCollector); it panics
// on a duplicate, a wiring error.
func (r *Registry) MustRegister(cs ...prometheus.Collector) { r.reg.MustRegister(cs...) }

// Gatherer gathers this registry and the process's go-metrics series.
func (r *Registry) Gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{r.reg, goMetricsRegistry}
}

// Handler serves the Prometheus text (or protobuf, when asked) exposition
// of Gatherer.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.Gatherer(), promhttp.HandlerOpts{})
}

// goMetricsRegistry holds the go-metrics sink's collector. It is process
// wide because go-metrics' sink is.
var goMetricsRegistry = prometheus.NewRegistry()

var (
	installOnce sync.Once
	installErr  error
)

// GoMetricsExpiration is how long a go-metrics series is served after its
// last update (a follower removed from the configuration stops reporting).
const GoMetricsExpiration = 5 * time.Minute

// InstallGoMetrics makes a Prometheus sink the process-wide go-metrics sink,
// so that what raft, raft-boltdb and memberlist report appears under
// berth_raft_*, berth_memberlist_* ... on every Registry's handler. Call it
// once at server start, before the cluster starts; later calls do nothing.
func InstallGoMetrics() error {
	installOnce.Do(func() {
		sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
			Expiration: GoMetricsExpiration,
			Registerer: goMetricsRegistry,
		})
		if err != nil {
			installErr = err
			return
		}
		cfg := gometrics.DefaultConfig("berth")
		// One series per name: the hostname belongs in Prometheus' target
		// labels, and Go runtime metrics come from the Go collector.
		cfg.EnableHostname = false
		cfg.EnableHostnameLabel = false
		cfg.EnableRuntimeMetrics = false
		cfg.EnableServiceLabel = false
		_, installErr = gometrics.NewGlobal(cfg, sink)
	})
	return installErr
}

// latencyBuckets are the histogram buckets of Berth's latencies, from
// 0.5 ms (an FSM apply) to 60 s (a placement on a slow agent).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
