package scheduler

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// checkTracker applies Marathon's semantics to the results of one
// leader-run health check of one task: failures are ignored during the
// grace period (until the first success), and maxConsecutiveFailures
// failures in a row (when > 0) ask for a kill.
type checkTracker struct {
	grace       time.Duration
	maxFailures int
	started     time.Time

	seenSuccess bool
	failures    int
	alive       *bool

	// What Marathon's health check results show (kept in the leader's
	// memory, see Live).
	firstSuccess, lastSuccess, lastFailure time.Time
	lastFailureCause                       string
}

// note remembers when a probe last succeeded or failed, and why it failed.
func (c *checkTracker) note(ok bool, cause string, now time.Time) {
	if ok {
		if c.firstSuccess.IsZero() {
			c.firstSuccess = now
		}
		c.lastSuccess = now
		return
	}
	c.lastFailure, c.lastFailureCause = now, cause
}

// result is the tracker as Marathon's health check result.
func (c *checkTracker) result(index int, instanceID, taskID string) *v1.HealthCheckResult {
	return &v1.HealthCheckResult{
		Index: int32(index), InstanceId: instanceID, TaskId: taskID,
		Alive: c.alive != nil && *c.alive, ConsecutiveFailures: int32(c.failures),
		FirstSuccess: liveTime(c.firstSuccess), LastSuccess: liveTime(c.lastSuccess),
		LastFailure: liveTime(c.lastFailure), LastFailureCause: c.lastFailureCause,
	}
}

// record takes one probe result. It returns whether the check's health is
// now known and what it is, and whether the task must be killed.
func (c *checkTracker) record(ok bool, now time.Time) (known, alive, kill bool) {
	if ok {
		c.seenSuccess = true
		c.failures = 0
		t := true
		c.alive = &t
		return true, true, false
	}
	if !c.seenSuccess && now.Sub(c.started) < c.grace {
		// In the grace period: the failure neither counts nor reports.
		return c.alive != nil, c.alive != nil && *c.alive, false
	}
	c.failures++
	f := false
	c.alive = &f
	return true, false, c.maxFailures > 0 && c.failures >= c.maxFailures
}

// healthTarget is a running task with leader-run health checks.
type healthTarget struct {
	taskID     string
	appID      string
	instanceID string
	// indexes are the checks' positions in the app's healthChecks.
	indexes []int
	host    string
	ports   []uint32
	checks  []*v1.HealthCheck
	started time.Time
}

type targetState struct {
	probeSchedule
	target   healthTarget
	trackers []*checkTracker
	healthy  *bool
	killed   bool
}

// healthChecker runs HTTP, HTTPS and TCP checks against task host:port from
// the leader and reports aggregate health changes and kill requests.
type healthChecker struct {
	probePool
	targets map[string]*targetState
	results chan HealthResult
}

func newHealthChecker(concurrency int) *healthChecker {
	return &healthChecker{
		probePool: newProbePool(concurrency),
		targets:   map[string]*targetState{},
		results:   make(chan HealthResult, 64),
	}
}

// sync replaces the set of checked tasks; state is kept for tasks that stay.
func (h *healthChecker) sync(targets []healthTarget) {
	h.mu.Lock()
	defer h.mu.Unlock()
	keep := map[string]bool{}
	now := h.now()
	for _, t := range targets {
		keep[t.taskID] = true
		if _, ok := h.targets[t.taskID]; ok {
			continue
		}
		ts := &targetState{target: t}
		for _, hc := range t.checks {
			hc = appmodel.HealthCheckWithDefaults(hc)
			ts.trackers = append(ts.trackers, &checkTracker{
				grace:       time.Duration(hc.GetGracePeriodSeconds()) * time.Second,
				maxFailures: int(hc.GetMaxConsecutiveFailures()),
				started:     t.started,
			})
			ts.add(now)
		}
		h.targets[t.taskID] = ts
	}
	for id := range h.targets {
		if !keep[id] {
			delete(h.targets, id)
		}
	}
}

// run probes due checks until ctx ends, then waits for probes in flight.
func (h *healthChecker) run(ctx context.Context) { h.runProbes(ctx, h.dispatch) }

func (h *healthChecker) dispatch(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	dispatchDue(ctx, &h.probePool, h.targets,
		func(ts *targetState) *probeSchedule { return &ts.probeSchedule },
		func(ts *targetState) bool { return ts.killed },
		func(ts *targetState, ci int) time.Duration {
			return time.Duration(appmodel.HealthCheckWithDefaults(ts.target.checks[ci]).GetIntervalSeconds()) * time.Second
		},
		func(id string, ci int, ts *targetState) func(context.Context) {
			hc, target := ts.target.checks[ci], ts.target
			return func(ctx context.Context) {
				ok, msg, ignore := h.probe(ctx, hc, target)
				h.report(ctx, id, ci, ok, msg, ignore)
			}
		})
}

// report folds one probe result into the task's state and emits a result
// when the aggregate health changes or a kill is due.
func (h *healthChecker) report(ctx context.Context, taskID string, ci int, ok bool, msg string, ignore bool) {
	h.mu.Lock()
	ts, found := h.targets[taskID]
	if !found {
		h.mu.Unlock()
		return
	}
	ts.busy[ci] = false
	if ignore || ts.killed {
		h.mu.Unlock()
		return
	}
	now := h.now()
	ts.trackers[ci].note(ok, msg, now)
	_, _, kill := ts.trackers[ci].record(ok, now)
	// Aggregate: healthy when every check is alive; unknown while any
	// check has no result yet; unhealthy when any known check failed.
	var agg *bool
	allKnown, anyDead := true, false
	for _, t := range ts.trackers {
		if t.alive == nil {
			allKnown = false
		} else if !*t.alive {
			anyDead = true
		}
	}
	switch {
	case anyDead:
		f := false
		agg = &f
	case allKnown:
		t := true
		agg = &t
	}
	var out *HealthResult
	changed := agg != nil && (ts.healthy == nil || *ts.healthy != *agg)
	if changed || kill {
		ts.healthy = agg
		r := HealthResult{TaskID: taskID, Healthy: agg != nil && *agg, Kill: kill, Message: msg}
		out = &r
	}
	if kill {
		ts.killed = true
	}
	h.mu.Unlock()
	if out != nil {
		select {
		case h.results <- *out:
		case <-ctx.Done():
		}
	}
}

// probe runs one check. ignore is true for an HTTP 1xx answer with
// ignoreHttp1xx set: health stays as it was.
func (h *healthChecker) probe(ctx context.Context, hc *v1.HealthCheck, t healthTarget) (ok bool, msg string, ignore bool) {
	port, found := healthCheckPort(hc, t.ports)
	if !found {
		return false, fmt.Sprintf("health check port index %d out of range (%d ports)", hc.GetPortIndex(), len(t.ports)), false
	}
	timeout := time.Duration(appmodel.HealthCheckWithDefaults(hc).GetTimeoutSeconds()) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := net.JoinHostPort(t.host, strconv.Itoa(int(port)))
	switch appmodel.HealthProtocol(hc) {
	case "TCP":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false, "TCP " + addr + ": " + err.Error(), false
		}
		_ = c.Close()
		return true, "", false
	default:
		scheme := "http"
		if appmodel.HealthProtocol(hc) == "HTTPS" {
			scheme = "https"
		}
		path := appmodel.HealthPath(hc)
		url := scheme + "://" + addr + path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err.Error(), false
		}
		resp, err := h.client.Do(req)
		if err != nil {
			return false, "GET " + url + ": " + err.Error(), false
		}
		_ = resp.Body.Close()
		switch {
		case resp.StatusCode < 200 && hc.GetIgnoreHttp1Xx():
			return false, "", true
		case resp.StatusCode >= 200 && resp.StatusCode < 400:
			return true, "", false
		}
		return false, fmt.Sprintf("GET %s: status %d", url, resp.StatusCode), false
	}
}

// healthTargets lists the running tasks with leader-run checks.
func healthTargets(st *State) []healthTarget {
	var out []healthTarget
	for _, i := range st.instancesInOrder() {
		t := i.GetTask()
		if t.GetState() != stRunning || t.KillRequestedAt != nil {
			continue
		}
		a, err := st.appVersion(i.GetAppId(), t.GetAppVersion())
		if err != nil || a == nil {
			// The task's own version unreadable: check it as the
			// current version says.
			a = st.Apps[i.GetAppId()]
		}
		var checks []*v1.HealthCheck
		var indexes []int
		for k, hc := range a.GetHealthChecks() {
			if appmodel.IsMarathonCheck(hc) {
				checks = append(checks, hc)
				indexes = append(indexes, k)
			}
		}
		if len(checks) == 0 {
			continue
		}
		started := t.GetStartedAt().AsTime()
		out = append(out, healthTarget{
			taskID: t.GetId(), appID: i.GetAppId(), instanceID: i.GetId(), indexes: indexes,
			host: t.GetHostname(), ports: t.GetPorts(), checks: checks, started: started,
		})
	}
	return out
}

// results calls fn with the check results of every checked task (of the
// app named, or all).
func (h *healthChecker) checkResults(appID string, fn func(taskID, appID string, res []*v1.HealthCheckResult)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, ts := range h.targets {
		if appID != "" && ts.target.appID != appID {
			continue
		}
		res := make([]*v1.HealthCheckResult, 0, len(ts.trackers))
		for k, c := range ts.trackers {
			idx := k
			if k < len(ts.target.indexes) {
				idx = ts.target.indexes[k]
			}
			res = append(res, c.result(idx, ts.target.instanceID, id))
		}
		fn(id, ts.target.appID, res)
	}
}
