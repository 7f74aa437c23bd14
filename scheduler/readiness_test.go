package scheduler

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// readyApp is a stateless app whose port "http" has a readiness check.
func readyApp(id, version string, instances int32) *v1.App {
	a := statelessApp(id, version, instances)
	a.PortDefinitions[0].Name = proto.String("http")
	a.ReadinessChecks = []*v1.ReadinessCheck{{
		Name: proto.String("ready"), Protocol: proto.String("HTTP"), Path: proto.String("/ready"), PortName: proto.String("http"),
		IntervalSeconds: proto.Int32(1), TimeoutSeconds: proto.Int32(1), HttpStatusCodesForReady: []int32{200},
	}}
	return a
}

func targetIDs(h *harness) []string {
	var out []string
	for _, t := range readinessTargets(h.state()) {
		out = append(out, t.taskID)
	}
	return out
}

// A deployment succeeds only once its new task passed its readiness
// checks; an upgrade kills the old instance only once the new one is ready.
// Readiness is checked only for tasks of a running deployment.
func TestReadinessGatesDeployments(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := readyApp("/web", "v1", 1)
	h.store.putApp(app, "d1")
	h.settle()
	first := h.only("/web")
	if first.Task.State != stRunning || deploymentStatus(h, "d1") != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
		t.Fatalf("deployment done before readiness: %v %v", first, h.store.deployment("d1"))
	}
	targets := readinessTargets(h.state())
	if len(targets) != 1 || targets[0].taskID != first.Task.Id || targets[0].ports["http"] != first.Task.Ports[0] || targets[0].host != "host1" {
		t.Fatalf("readiness targets %+v", targets)
	}
	// A failure is only reported.
	if d := h.decide(ReadinessResult{TaskID: first.Task.Id, Message: "status 503"}); d.Plan != nil {
		t.Fatalf("a failed readiness check was committed")
	}
	if !h.hasEvent("readiness_check_result") {
		t.Fatalf("no readiness event: %v", h.eventTypes())
	}
	// Ready: committed once, then the deployment succeeds.
	if d := h.decide(ReadinessResult{TaskID: first.Task.Id, Ready: true}); d.Plan == nil || !h.only("/web").Task.GetReady() {
		t.Fatalf("readiness not committed")
	}
	if d := h.decide(ReadinessResult{TaskID: first.Task.Id, Ready: true}); d.Plan != nil {
		t.Fatalf("readiness committed twice")
	}
	h.tick()
	if deploymentStatus(h, "d1") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment %v", h.store.deployment("d1"))
	}
	if ids := targetIDs(h); len(ids) != 0 {
		t.Fatalf("targets without a running deployment: %v", ids)
	}
	// A crash relaunch outside a deployment is not checked.
	h.master.crash(first.Task.Id)
	h.deliver()
	h.advance(2 * time.Second)
	h.settle()
	if ids := targetIDs(h); len(ids) != 0 || h.only("/web").Incarnation != 2 {
		t.Fatalf("targets after a relaunch outside a deployment: %v", ids)
	}

	// Upgrade: a new instance starts first; the old one stays until the
	// new one is ready.
	h.store.putApp(changed(app, "v2"), "d2")
	h.tick()
	h.launchPending()
	for i := 0; i < 3; i++ {
		if d := h.tick(); countCalls(d, "KILL") != 0 {
			t.Fatalf("old instance killed before the new one was ready")
		}
	}
	old, fresh := byVersion(h, "/web", "v1")
	if old != 1 || fresh != 1 {
		t.Fatalf("%d old, %d new", old, fresh)
	}
	var newTask string
	for _, i := range h.instancesOf("/web") {
		if i.AppVersion == "v2" {
			newTask = i.Task.Id
		}
	}
	if ids := targetIDs(h); len(ids) != 1 || ids[0] != newTask {
		t.Fatalf("targets during the upgrade %v, want only the new task %s", ids, newTask)
	}
	h.decide(ReadinessResult{TaskID: newTask, Ready: true})
	if d := h.tick(); countCalls(d, "KILL") != 1 {
		t.Fatalf("old instance not killed once the new one was ready: %v", callTypes(d))
	}
	h.settle()
	if i := h.only("/web"); i.Task.Id != newTask || deploymentStatus(h, "d2") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("after the upgrade: %v, deployment %v", i, h.store.deployment("d2"))
	}
}

// With health checks too, a new task must be both healthy and ready.
func TestReadinessAndHealthBothRequired(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := readyApp("/web", "v1", 1)
	app.HealthChecks = []*v1.HealthCheck{{Protocol: proto.String("TCP")}}
	h.store.putApp(app, "d1")
	h.settle()
	task := h.only("/web").Task.Id
	h.decide(ReadinessResult{TaskID: task, Ready: true})
	h.tick()
	if deploymentStatus(h, "d1") != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
		t.Fatalf("succeeded while not healthy")
	}
	h.decide(HealthResult{TaskID: task, Healthy: true})
	h.tick()
	if deploymentStatus(h, "d1") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("deployment %v", h.store.deployment("d1"))
	}
}

// A resident restart is kill-first; an instance relaunched with the new
// version counts as down until it is ready, so with 2 instances and
// minimumHealthCapacity 0.5 the second is killed only after the first is
// ready again.
func TestResidentRestartWaitsForReadiness(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	app := residentApp("/pg", "v1", 2)
	app.ReadinessChecks = []*v1.ReadinessCheck{{PortName: proto.String("pg")}}
	h.store.putApp(app, "d1")
	h.settle()
	for _, i := range h.instancesOf("/pg") {
		h.decide(ReadinessResult{TaskID: i.Task.Id, Ready: true})
	}
	h.settle()
	if deploymentStatus(h, "d1") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("d1 %v", h.store.deployment("d1"))
	}
	h.store.putApp(changed(app, "v2"), "d2")
	if d := h.tick(); countCalls(d, "KILL") != 1 {
		t.Fatalf("first restart round: %v", callTypes(d))
	}
	h.settle()
	var relaunched *v1.Instance
	for _, i := range h.instancesOf("/pg") {
		if i.AppVersion == "v2" && i.Task.State == stRunning {
			relaunched = i
		}
	}
	if relaunched == nil {
		t.Fatalf("no instance relaunched with v2")
	}
	if old, _ := byVersion(h, "/pg", "v1"); old != 1 {
		t.Fatalf("second instance killed before the first was ready (%d old left)", old)
	}
	h.decide(ReadinessResult{TaskID: relaunched.Task.Id, Ready: true})
	if d := h.tick(); countCalls(d, "KILL") != 1 {
		t.Fatalf("second instance not killed once the first was ready: %v", callTypes(d))
	}
	h.settle()
	for _, i := range h.instancesOf("/pg") {
		if i.AppVersion != "v2" {
			continue
		}
		if !i.Task.GetReady() {
			h.decide(ReadinessResult{TaskID: i.Task.Id, Ready: true})
		}
	}
	h.settle()
	if deploymentStatus(h, "d2") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("d2 %v", h.store.deployment("d2"))
	}
}

// The prober: HTTP GET on the named port and path; ready only on one of
// httpStatusCodesForReady; failures reported when their reason changes;
// Ready reported once.
func TestReadinessCheckerProbes(t *testing.T) {
	var code atomic.Int32
	code.Store(http.StatusServiceUnavailable)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(code.Load()))
	}))
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)

	rc := newReadinessChecker(4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rc.run(ctx) }()
	defer func() { cancel(); <-done }()

	check := &v1.ReadinessCheck{Name: proto.String("ready"), Path: proto.String("/ready"), PortName: proto.String("http"),
		IntervalSeconds: proto.Int32(1), TimeoutSeconds: proto.Int32(2), HttpStatusCodesForReady: []int32{200, 204}}
	missing := &v1.ReadinessCheck{Name: proto.String("admin"), PortName: proto.String("admin"), IntervalSeconds: proto.Int32(1)}
	rc.sync([]readinessTarget{
		{taskID: "t1", host: host, ports: map[string]uint32{"http": uint32(port)}, checks: []*v1.ReadinessCheck{check}},
		{taskID: "t2", host: host, ports: map[string]uint32{"http": uint32(port)}, checks: []*v1.ReadinessCheck{missing}},
	})
	next := func() ReadinessResult {
		t.Helper()
		select {
		case r := <-rc.results:
			return r
		case <-time.After(30 * time.Second):
			t.Fatal("no readiness result within 30s")
		}
		return ReadinessResult{}
	}
	seen := map[string]ReadinessResult{}
	for len(seen) < 2 {
		r := next()
		seen[r.TaskID] = r
	}
	if r := seen["t1"]; r.Ready || !strings.Contains(r.Message, "status 503") {
		t.Fatalf("t1 while the server answers 503: %+v", r)
	}
	if r := seen["t2"]; r.Ready || !strings.Contains(r.Message, `no port named "admin"`) {
		t.Fatalf("t2 with a missing port: %+v", r)
	}
	rc.sync([]readinessTarget{{taskID: "t1", host: host, ports: map[string]uint32{"http": uint32(port)}, checks: []*v1.ReadinessCheck{check}}})
	code.Store(http.StatusNoContent)
	if r := next(); r.TaskID != "t1" || !r.Ready {
		t.Fatalf("after the server became ready: %+v", r)
	}
	// Ready is reported once: nothing more arrives for t1.
	rc.mu.Lock()
	reported := rc.targets["t1"].reported
	rc.mu.Unlock()
	if !reported {
		t.Fatalf("t1 not marked reported")
	}
	select {
	case r := <-rc.results:
		t.Fatalf("unexpected result after ready: %+v", r)
	default:
	}
}

// HTTPS readiness checks do not verify the certificate (as Marathon).
func TestReadinessCheckerHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	rc := newReadinessChecker(1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rc.run(ctx) }()
	defer func() { cancel(); <-done }()
	rc.sync([]readinessTarget{{taskID: "t1", host: host, ports: map[string]uint32{"https": uint32(port)}, checks: []*v1.ReadinessCheck{{
		Protocol: proto.String("HTTPS"), Path: proto.String("ready"), PortName: proto.String("https"), IntervalSeconds: proto.Int32(1),
	}}}})
	select {
	case r := <-rc.results:
		if !r.Ready {
			t.Fatalf("HTTPS readiness: %+v", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no readiness result within 30s")
	}
}

// A task still listed after its Ready was sent (the commit was lost) is
// checked and reported again; a task no longer listed is dropped.
func TestReadinessCheckerReportsAgainWhenNotCommitted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	rc := newReadinessChecker(1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rc.run(ctx) }()
	defer func() { cancel(); <-done }()
	target := readinessTarget{taskID: "t1", host: host, ports: map[string]uint32{"http": uint32(port)},
		checks: []*v1.ReadinessCheck{{PortName: proto.String("http"), IntervalSeconds: proto.Int32(1)}}}
	wait := func() ReadinessResult {
		t.Helper()
		select {
		case r := <-rc.results:
			return r
		case <-time.After(30 * time.Second):
			t.Fatal("no readiness result within 30s")
		}
		return ReadinessResult{}
	}
	rc.sync([]readinessTarget{target})
	if r := wait(); !r.Ready {
		t.Fatalf("first: %+v", r)
	}
	rc.sync([]readinessTarget{target})
	if r := wait(); !r.Ready || r.TaskID != "t1" {
		t.Fatalf("again: %+v", r)
	}
	rc.sync(nil)
	rc.mu.Lock()
	n := len(rc.targets)
	rc.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d targets after sync(nil)", n)
	}
}
