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

func TestCheckTrackerMarathonSemantics(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &checkTracker{grace: 10 * time.Second, maxFailures: 2, started: t0}
	// Failures during the grace period neither count nor report.
	if known, _, kill := c.record(false, t0.Add(5*time.Second)); known || kill {
		t.Fatalf("grace failure reported: known=%v kill=%v", known, kill)
	}
	// After grace: failures count; the second kills.
	if known, alive, kill := c.record(false, t0.Add(11*time.Second)); !known || alive || kill {
		t.Fatalf("first failure: %v %v %v", known, alive, kill)
	}
	if _, _, kill := c.record(false, t0.Add(12*time.Second)); !kill {
		t.Fatalf("second failure did not kill")
	}
	// A success resets the count and ends the grace period for good.
	c = &checkTracker{grace: time.Hour, maxFailures: 1, started: t0}
	if known, alive, _ := c.record(true, t0.Add(time.Second)); !known || !alive {
		t.Fatalf("success not reported")
	}
	if _, alive, kill := c.record(false, t0.Add(2*time.Second)); alive || !kill {
		t.Fatalf("failure after first success ignored (alive=%v kill=%v)", alive, kill)
	}
	// maxConsecutiveFailures 0 never kills.
	c = &checkTracker{maxFailures: 0, started: t0}
	for i := 0; i < 10; i++ {
		if _, _, kill := c.record(false, t0.Add(time.Minute)); kill {
			t.Fatalf("killed with maxConsecutiveFailures=0")
		}
	}
}

func TestHealthCheckerProbes(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpPort := ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer ln.Close()

	hc := newHealthChecker(4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hc.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	hc.sync([]healthTarget{{
		taskID: "t1", host: host, ports: []uint32{uint32(port), uint32(tcpPort)}, started: time.Now(),
		checks: []*v1.HealthCheck{
			{Protocol: proto.String("HTTP"), Path: proto.String("/health"), IntervalSeconds: proto.Int32(1), TimeoutSeconds: proto.Int32(2),
				GracePeriodSeconds: proto.Int32(0), MaxConsecutiveFailures: proto.Int32(2)},
			{Protocol: proto.String("TCP"), PortIndex: proto.Int32(1), IntervalSeconds: proto.Int32(1), TimeoutSeconds: proto.Int32(2)},
		},
	}})
	next := func(what string) HealthResult {
		t.Helper()
		select {
		case r := <-hc.results:
			return r
		case <-time.After(30 * time.Second):
			t.Fatalf("no health result: %s", what)
		}
		return HealthResult{}
	}
	if r := next("healthy"); !r.Healthy || r.Kill || r.TaskID != "t1" {
		t.Fatalf("first result %+v", r)
	}
	fail.Store(true)
	if r := next("unhealthy"); r.Healthy || r.Kill {
		t.Fatalf("after one failure %+v", r)
	}
	if r := next("kill"); !r.Kill {
		t.Fatalf("after two failures %+v", r)
	}
	// Marathon's healthCheckResults, per check, from the leader's memory.
	live := NewLive()
	live.start(hc, nil)
	res := live.CheckResults("")
	if len(res) != 1 || len(res[0].GetHealthCheckResults()) != 2 {
		t.Fatalf("check results = %v", res)
	}
	httpRes := res[0].GetHealthCheckResults()[0]
	if httpRes.GetIndex() != 0 || httpRes.GetTaskId() != "t1" || httpRes.GetAlive() || httpRes.GetConsecutiveFailures() < 2 ||
		httpRes.GetFirstSuccess() == "" || httpRes.GetLastSuccess() == "" || httpRes.GetLastFailure() == "" ||
		!strings.Contains(httpRes.GetLastFailureCause(), "status 503") {
		t.Fatalf("HTTP check result = %v", httpRes)
	}
	if tcpRes := res[0].GetHealthCheckResults()[1]; tcpRes.GetIndex() != 1 || !tcpRes.GetAlive() || tcpRes.GetLastFailure() != "" {
		t.Fatalf("TCP check result = %v", tcpRes)
	}
	// A target that disappears is no longer probed.
	hc.sync(nil)
	hc.mu.Lock()
	n := len(hc.targets)
	hc.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d targets left", n)
	}
}
