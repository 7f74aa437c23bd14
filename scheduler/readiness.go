package scheduler

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// ReadinessResult is the outcome of the leader-run readiness checks of a
// task of a running deployment: Ready once every check of the app passed;
// a result with Ready false only reports why the task is not ready yet.
type ReadinessResult struct {
	TaskID  string
	Ready   bool
	Message string
}

func (ReadinessResult) isInput() {}

// onReadiness commits that a task passed its readiness checks: from then
// on it counts as ready for its deployment (and, for a stateless upgrade,
// lets an outdated instance go). A task stays ready for its lifetime.
func (p *planner) onReadiness(r ReadinessResult) {
	i := p.st.instanceByTask(r.TaskID)
	if i == nil || i.GetTask().GetState() != stRunning || i.GetTask().GetReady() {
		return
	}
	t := i.GetTask()
	e := &v1.Event{
		Type: "readiness_check_result", AppId: i.GetAppId(), InstanceId: i.GetId(), TaskId: r.TaskID,
		Message: r.Message, AgentId: t.GetAgentId(), Host: t.GetHostname(),
	}
	if !r.Ready {
		if e.Message == "" {
			e.Message = "not ready"
		}
		p.event(e)
		return
	}
	ed := p.edit(i.GetId())
	ready := true
	ed.Task.Ready = &ready
	ed.Task.UpdatedAt = p.ts()
	p.changed[i.GetId()] = true
	if e.Message == "" {
		e.Message = "ready"
	}
	p.event(e)
}

// readinessTarget is a running task to check for readiness.
type readinessTarget struct {
	taskID string
	appID  string
	host   string
	// ports are the task's host ports by port name.
	ports  map[string]uint32
	checks []*v1.ReadinessCheck
}

// readinessTargets lists the running tasks that readiness checks must
// pass before their deployment may progress: tasks of apps with a running
// deployment, running the app's current configuration, with readiness
// checks, and not ready yet.
func readinessTargets(st *State) []readinessTarget {
	deploying := runningDeploymentApps(st)
	if len(deploying) == 0 {
		return nil
	}
	var out []readinessTarget
	for _, i := range st.instancesInOrder() {
		t := i.GetTask()
		a := st.Apps[i.GetAppId()]
		if a == nil || !deploying[a.GetId()] || len(a.GetReadinessChecks()) == 0 || goalOf(i) != v1.Goal_GOAL_RUNNING ||
			t.GetState() != stRunning || t.KillRequestedAt != nil || t.GetReady() || i.GetAppVersion() != a.GetVersion() {
			continue
		}
		ports := map[string]uint32{}
		for k, spec := range appmodel.Ports(a) {
			if spec.Name != "" && k < len(t.GetPorts()) {
				ports[spec.Name] = t.GetPorts()[k]
			}
		}
		out = append(out, readinessTarget{taskID: t.GetId(), appID: a.GetId(), host: t.GetHostname(), ports: ports, checks: a.GetReadinessChecks()})
	}
	return out
}

// readinessState is the prober's state for one target.
type readinessState struct {
	probeSchedule
	target   readinessTarget
	passed   []bool
	last     []*v1.ReadinessResponse // each check's last answer (nil before one)
	reported bool                    // Ready was sent
	lastMsg  string                  // last failure sent
}

// readinessChecker runs HTTP and HTTPS readiness checks against task
// host:port from the leader, each at its interval, and reports a task once
// every one of its checks passed (and failures when their reason changes).
type readinessChecker struct {
	probePool
	targets map[string]*readinessState
	results chan ReadinessResult
}

func newReadinessChecker(concurrency int) *readinessChecker {
	return &readinessChecker{
		probePool: newProbePool(concurrency),
		targets:   map[string]*readinessState{},
		results:   make(chan ReadinessResult, 64),
	}
}

// sync replaces the set of checked tasks; state is kept for tasks that
// stay. A task still listed after its Ready was sent (the commit did not
// happen) is checked again.
func (r *readinessChecker) sync(targets []readinessTarget) {
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := map[string]bool{}
	now := r.now()
	for _, t := range targets {
		keep[t.taskID] = true
		if rs, ok := r.targets[t.taskID]; ok {
			if rs.reported {
				rs.reported = false
				for k := range rs.passed {
					rs.passed[k] = false
					rs.next[k] = now
				}
			}
			continue
		}
		rs := &readinessState{target: t}
		for range t.checks {
			rs.add(now)
			rs.passed = append(rs.passed, false)
			rs.last = append(rs.last, nil)
		}
		r.targets[t.taskID] = rs
	}
	for id := range r.targets {
		if !keep[id] {
			delete(r.targets, id)
		}
	}
}

// run probes due checks until ctx ends, then waits for probes in flight.
func (r *readinessChecker) run(ctx context.Context) { r.runProbes(ctx, r.dispatch) }

func (r *readinessChecker) dispatch(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dispatchDue(ctx, &r.probePool, r.targets,
		func(rs *readinessState) *probeSchedule { return &rs.probeSchedule },
		func(rs *readinessState) bool { return rs.reported },
		func(rs *readinessState, ci int) time.Duration {
			return appmodel.ReadinessInterval(rs.target.checks[ci])
		},
		func(id string, ci int, rs *readinessState) func(context.Context) {
			rc, target := rs.target.checks[ci], rs.target
			return func(ctx context.Context) {
				ok, msg, resp := r.probe(ctx, rc, target)
				r.report(ctx, id, ci, ok, msg, resp)
			}
		})
}

// report folds one probe result into the task's state and emits a result
// when every check passed, or when the reason for not being ready changed.
func (r *readinessChecker) report(ctx context.Context, taskID string, ci int, ok bool, msg string, resp *v1.ReadinessResponse) {
	r.mu.Lock()
	rs, found := r.targets[taskID]
	if !found {
		r.mu.Unlock()
		return
	}
	rs.busy[ci] = false
	if rs.reported {
		r.mu.Unlock()
		return
	}
	rs.passed[ci] = ok
	if resp != nil {
		rs.last[ci] = resp
	}
	var out *ReadinessResult
	switch {
	case !slices.Contains(rs.passed, false):
		rs.reported = true
		out = &ReadinessResult{TaskID: taskID, Ready: true}
	case !ok && msg != rs.lastMsg:
		rs.lastMsg = msg
		out = &ReadinessResult{TaskID: taskID, Message: msg}
	}
	r.mu.Unlock()
	if out != nil {
		select {
		case r.results <- *out:
		case <-ctx.Done():
		}
	}
}

// probe runs one readiness check: ready when the answer's status code is
// one of httpStatusCodesForReady (200 by default).
func (r *readinessChecker) probe(ctx context.Context, rc *v1.ReadinessCheck, t readinessTarget) (ok bool, msg string, last *v1.ReadinessResponse) {
	name := appmodel.ReadinessPortName(rc)
	port, found := t.ports[name]
	if !found {
		return false, fmt.Sprintf("readiness check %q: the task has no port named %q", rc.GetName(), name), nil
	}
	ctx, cancel := context.WithTimeout(ctx, appmodel.ReadinessTimeout(rc))
	defer cancel()
	scheme := "http"
	if strings.EqualFold(rc.GetProtocol(), "HTTPS") {
		scheme = "https"
	}
	path := appmodel.ReadinessPath(rc)
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	url := scheme + "://" + net.JoinHostPort(t.host, strconv.Itoa(int(port))) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, fmt.Sprintf("readiness check %q: %v", rc.GetName(), err), nil
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return false, fmt.Sprintf("readiness check %q: GET %s: %v", rc.GetName(), url, err), nil
	}
	// Marathon keeps the answer (preserveLastResponse); a bounded prefix
	// of the body is enough to say why.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxReadinessBody))
	_ = resp.Body.Close()
	last = &v1.ReadinessResponse{Status: int32(resp.StatusCode), ContentType: resp.Header.Get("Content-Type"), Body: string(body)}
	codes := appmodel.ReadinessStatusCodes(rc)
	if slices.Contains(codes, int32(resp.StatusCode)) {
		return true, "", last
	}
	return false, fmt.Sprintf("readiness check %q: GET %s: status %d, ready on %v", rc.GetName(), url, resp.StatusCode, codes), last
}

// maxReadinessBody bounds the body kept of a readiness check's answer.
const maxReadinessBody = 4096

// checkResults calls fn with the readiness results of every checked task
// (of the app named, or all).
func (r *readinessChecker) checkResults(appID string, fn func(taskID, appID string, res []*v1.ReadinessCheckResult)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, rs := range r.targets {
		if appID != "" && rs.target.appID != appID {
			continue
		}
		res := make([]*v1.ReadinessCheckResult, 0, len(rs.passed))
		for k, ok := range rs.passed {
			res = append(res, &v1.ReadinessCheckResult{
				Name: rs.target.checks[k].GetName(), TaskId: id, Ready: ok || rs.reported, LastResponse: rs.last[k],
			})
		}
		fn(id, rs.target.appID, res)
	}
}
