package mesoslocal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// GET /metrics/snapshot: the flat JSON of Mesos' metrics endpoint, every
// value a double, with the keys of a real master and agent. mesos-local
// is one process, like the real `mesos-local`, so one snapshot carries
// master/*, slave/* (summed over the agents) and system/* keys; it is also
// served at /slave(1)/metrics/snapshot, the agents' address in offers.
// Gauges are read from the state at request time; counters count from the
// start of this process, as Mesos' do.

// count adds one to a counter. Callers hold c.mu.
func (c *Cluster) count(key string, n int) {
	if c.counters == nil {
		c.counters = map[string]float64{}
	}
	c.counters[key] += float64(n)
}

// callMessages maps a scheduler call to the master's message counter.
var callMessages = map[scheduler.Call_Type]string{
	scheduler.Call_ACCEPT:      "master/messages_launch_tasks",
	scheduler.Call_DECLINE:     "master/messages_decline_offers",
	scheduler.Call_REVIVE:      "master/messages_revive_offers",
	scheduler.Call_SUPPRESS:    "master/messages_suppress_offers",
	scheduler.Call_KILL:        "master/messages_kill_task",
	scheduler.Call_ACKNOWLEDGE: "master/messages_status_update_acknowledgement",
	scheduler.Call_RECONCILE:   "master/messages_reconcile_tasks",
	scheduler.Call_TEARDOWN:    "master/messages_unregister_framework",
}

// frameworkKey is the prefix of a framework's metrics.
func frameworkKey(fw *framework) string {
	return "master/frameworks/" + fw.info.GetName() + "/" + fw.id + "/"
}

// countCall counts one call of a subscribed framework. Callers hold c.mu.
func (c *Cluster) countCall(fw *framework, call *scheduler.Call) {
	if key, ok := callMessages[call.Type]; ok {
		c.count(key, 1)
	}
	c.count(frameworkKey(fw)+"calls/"+strings.ToLower(call.Type.String()), 1)
	switch call.Type {
	case scheduler.Call_ACCEPT:
		c.count(frameworkKey(fw)+"offers/accepted", len(call.GetAccept().GetOfferIDs()))
	case scheduler.Call_DECLINE:
		c.count(frameworkKey(fw)+"offers/declined", len(call.GetDecline().GetOfferIDs()))
	}
}

// countTaskState counts a task's move to a terminal state. Callers hold
// c.mu.
func (c *Cluster) countTaskState(from, to mesos.TaskState) {
	if from == to || !isTerminal(to) || isTerminal(from) {
		return
	}
	name := strings.ToLower(strings.TrimPrefix(to.String(), "TASK_"))
	c.count("master/tasks_"+name, 1)
	c.count("slave/tasks_"+name, 1)
}

// metricsSnapshot returns every metric by name.
func (c *Cluster) metricsSnapshot() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]float64{}
	for k, v := range c.counters {
		m[k] = v
	}
	uptime := time.Since(c.startTime).Seconds()
	m["master/elected"] = 1
	m["master/uptime_secs"] = uptime
	m["slave/registered"] = 1
	m["slave/uptime_secs"] = uptime

	// Agents.
	var active, inactive, unreachable float64
	total, free := map[string]float64{}, map[string]float64{}
	for _, a := range c.agentList {
		switch {
		case a.gone:
		case a.active:
			active++
		default:
			unreachable++
		}
		if !a.active && !a.gone {
			inactive++
		}
		if !a.active || a.gone {
			continue
		}
		for _, r := range a.res.totalSet() {
			total[r.GetName()] += r.GetScalar().GetValue()
		}
		for _, r := range a.res.free() {
			free[r.GetName()] += r.GetScalar().GetValue()
		}
	}
	m["master/slaves_active"] = active
	m["master/slaves_inactive"] = 0
	m["master/slaves_connected"] = active
	m["master/slaves_disconnected"] = inactive
	m["master/slaves_unreachable"] = unreachable
	for _, name := range []string{"cpus", "mem", "disk", "gpus"} {
		used := total[name] - free[name]
		pct := 0.0
		if total[name] > 0 {
			pct = used / total[name]
		}
		for _, side := range []string{"master/", "slave/"} {
			m[side+name+"_total"] = total[name]
			m[side+name+"_used"] = used
			m[side+name+"_percent"] = pct
		}
	}

	// Frameworks, offers and live tasks.
	var fwActive, fwInactive, fwConnected, fwDisconnected float64
	live := map[mesos.TaskState]float64{}
	for _, fw := range c.frameworks {
		if fw.connected {
			fwConnected++
			fwActive++
		} else {
			fwDisconnected++
			fwInactive++
		}
		sub := 0.0
		if fw.connected {
			sub = 1
		}
		m[frameworkKey(fw)+"subscribed"] = sub
		for _, t := range fw.tasks {
			if !isTerminal(t.state) {
				live[t.state]++
			}
		}
		for _, t := range fw.lost {
			if t.state == mesos.TASK_UNREACHABLE {
				live[t.state]++
			}
		}
	}
	m["master/frameworks_active"] = fwActive
	m["master/frameworks_inactive"] = fwInactive
	m["master/frameworks_connected"] = fwConnected
	m["master/frameworks_disconnected"] = fwDisconnected
	m["master/outstanding_offers"] = float64(len(c.offers))
	for _, st := range []mesos.TaskState{mesos.TASK_STAGING, mesos.TASK_STARTING, mesos.TASK_RUNNING, mesos.TASK_KILLING, mesos.TASK_UNREACHABLE} {
		name := strings.ToLower(strings.TrimPrefix(st.String(), "TASK_"))
		m["master/tasks_"+name] = live[st]
		if st != mesos.TASK_UNREACHABLE {
			m["slave/tasks_"+name] = live[st]
		}
	}
	for _, st := range []string{"finished", "failed", "killed", "lost", "error", "dropped", "gone", "gone_by_operator"} {
		m["master/tasks_"+st] += 0
	}
	for _, st := range []string{"finished", "failed", "killed", "lost", "gone"} {
		m["slave/tasks_"+st] += 0
	}
	m["slave/frameworks_active"] = fwActive
	m["system/cpus_total"] = float64(runtime.NumCPU())
	addLoadAvg(m)
	return m
}

// addLoadAvg adds system/load_* from /proc/loadavg where there is one.
func addLoadAvg(m map[string]float64) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return
	}
	f := strings.Fields(string(b))
	for i, k := range []string{"system/load_1min", "system/load_5min", "system/load_15min"} {
		if i < len(f) {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[k] = v
			}
		}
	}
}

// handleMetricsSnapshot serves GET /metrics/snapshot[?timeout=...].
func (c *Cluster) handleMetricsSnapshot(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		http.Error(w, "Expecting 'GET', received '"+r.Method+"'", http.StatusMethodNotAllowed)
		return
	}
	if t := r.URL.Query().Get("timeout"); t != "" {
		if _, err := parseMesosDuration(t); err != nil {
			http.Error(w, "Invalid timeout '"+t+"': "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(c.metricsSnapshot())
}

// mesosUnits are the units of a Mesos duration ("5secs", "100ms").
var mesosUnits = []struct {
	suffix string
	unit   time.Duration
}{
	{"ns", time.Nanosecond}, {"us", time.Microsecond}, {"ms", time.Millisecond},
	{"secs", time.Second}, {"mins", time.Minute}, {"hrs", time.Hour},
	{"days", 24 * time.Hour}, {"weeks", 7 * 24 * time.Hour},
}

// parseMesosDuration parses a duration as Mesos writes them.
func parseMesosDuration(s string) (time.Duration, error) {
	for _, u := range mesosUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v < 0 {
				break
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("%q is not a number followed by ns, us, ms, secs, mins, hrs, days or weeks", s)
}
