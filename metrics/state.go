package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// ClusterStatus is what the cluster collector reads at each scrape.
type ClusterStatus struct {
	Leader bool
	Term   uint64
	// Peers is the number of servers in the Raft configuration.
	Peers int
	// Members counts the servers known through gossip by status (alive,
	// failed, left).
	Members map[string]int
	// AppliedIndex is the last log index applied to the local store.
	AppliedIndex uint64
}

// StateCounts is what the state collector reads at each scrape from the
// local store.
type StateCounts struct {
	Apps int
	// Instances counts instances by goal (GOAL_RUNNING, ...) and task
	// state (TASK_RUNNING, ..., "none" without a task).
	Instances map[[2]string]int
	// Deployments counts stored deployments by status (running, ...).
	Deployments map[string]int
}

// memberStatuses are the gossip statuses, all served (0 too) so that
// alerts see them.
var memberStatuses = []string{"alive", "failed", "left"}

// funcCollector turns a function read at scrape time into const metrics.
type funcCollector struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c funcCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c funcCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// ClusterCollector serves berth_cluster_* read from status at each scrape.
func ClusterCollector(status func() ClusterStatus) prometheus.Collector {
	leader := prometheus.NewDesc("berth_cluster_leader", "1 if this server is the Raft leader.", nil, nil)
	term := prometheus.NewDesc("berth_cluster_term", "Current Raft term.", nil, nil)
	peers := prometheus.NewDesc("berth_cluster_peers", "Servers in the Raft configuration.", nil, nil)
	members := prometheus.NewDesc("berth_cluster_gossip_members", "Servers known through gossip, by status.", []string{"status"}, nil)
	applied := prometheus.NewDesc("berth_cluster_applied_index", "Last Raft log index applied to this server's store.", nil, nil)
	return funcCollector{
		descs: []*prometheus.Desc{leader, term, peers, members, applied},
		collect: func(ch chan<- prometheus.Metric) {
			s := status()
			l := 0.0
			if s.Leader {
				l = 1
			}
			ch <- prometheus.MustNewConstMetric(leader, prometheus.GaugeValue, l)
			ch <- prometheus.MustNewConstMetric(term, prometheus.GaugeValue, float64(s.Term))
			ch <- prometheus.MustNewConstMetric(peers, prometheus.GaugeValue, float64(s.Peers))
			ch <- prometheus.MustNewConstMetric(applied, prometheus.GaugeValue, float64(s.AppliedIndex))
			for _, st := range memberStatuses {
				ch <- prometheus.MustNewConstMetric(members, prometheus.GaugeValue, float64(s.Members[st]), st)
			}
		},
	}
}

// StateCollector serves berth_state_* (store sizes, instances by goal and
// task state, deployments by status) read from counts at each scrape.
// Every server serves them from its own replica.
func StateCollector(counts func() (StateCounts, error)) prometheus.Collector {
	apps := prometheus.NewDesc("berth_state_apps", "Apps in the replicated state.", nil, nil)
	insts := prometheus.NewDesc("berth_state_instances", "Instances in the replicated state, by goal and task state (none: no task yet).", []string{"goal", "state"}, nil)
	deps := prometheus.NewDesc("berth_state_deployments", "Deployments in the replicated state, by status.", []string{"status"}, nil)
	return funcCollector{
		descs: []*prometheus.Desc{apps, insts, deps},
		collect: func(ch chan<- prometheus.Metric) {
			c, err := counts()
			if err != nil {
				ch <- prometheus.NewInvalidMetric(apps, err)
				return
			}
			ch <- prometheus.MustNewConstMetric(apps, prometheus.GaugeValue, float64(c.Apps))
			for k, n := range c.Instances {
				ch <- prometheus.MustNewConstMetric(insts, prometheus.GaugeValue, float64(n), k[0], k[1])
			}
			if _, ok := c.Deployments["running"]; !ok {
				ch <- prometheus.MustNewConstMetric(deps, prometheus.GaugeValue, 0, "running")
			}
			for st, n := range c.Deployments {
				ch <- prometheus.MustNewConstMetric(deps, prometheus.GaugeValue, float64(n), st)
			}
		},
	}
}
