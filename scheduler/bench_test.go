package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/fsm"
	"github.com/berth-dev/berth/metrics"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// BenchmarkPlacementHarness places 1,000 resident instances (reserve +
// create + launch each) on 100 fake agents through the pure core, statuses
// included, and reports placements per second.
func BenchmarkPlacementHarness(b *testing.B) {
	for n := 0; n < b.N; n++ {
		t := &testing.T{}
		h := newHarness(t)
		h.skipStateCheck = true // measure the core, not the check
		for i := 0; i < 100; i++ {
			h.master.addAgent(fmt.Sprintf("A%03d", i), fmt.Sprintf("host%03d", i), 16, 16384, 100000, 31000, 32000, nil)
		}
		app := residentApp("/bench", "v1", 1000)
		app.Cpus = proto.Float64(0.1)
		app.Mem = proto.Float64(16)
		h.store.putApp(app, "")
		start := time.Now()
		h.tick()
		for rounds := 0; rounds < 100; rounds++ {
			h.offers()
			h.deliver()
			if running(h, "/bench") == 1000 {
				break
			}
		}
		el := time.Since(start)
		if got := running(h, "/bench"); got != 1000 {
			b.Fatalf("%d running", got)
		}
		b.ReportMetric(1000/el.Seconds(), "placements/s")
	}
}

func running(h *harness, appID string) int {
	n := 0
	for _, i := range h.instancesOf(appID) {
		if i.GetTask().GetState() == stRunning {
			n++
		}
	}
	return n
}

// BenchmarkPlacementMesosLocal places 1,000 resident instances on 100
// simulated mesos-local agents (1s allocation interval) through the whole driver (HTTP API,
// protobuf, FSM commits) and reports placements per second, from app
// creation to all 1,000 tasks RUNNING with confirmed berths. At most 10
// instances go on one offer (Marathon's max_instances_per_offer is 5).
func BenchmarkPlacementMesosLocal(b *testing.B) { benchPlacementMesosLocal(b, false) }

// BenchmarkPlacementMesosLocalMetrics is BenchmarkPlacementMesosLocal with
// the server's metrics on (the scheduler's observer and the FSM's), to
// measure their overhead.
func BenchmarkPlacementMesosLocalMetrics(b *testing.B) { benchPlacementMesosLocal(b, true) }

func benchPlacementMesosLocal(b *testing.B, withMetrics bool) {
	for n := 0; n < b.N; n++ {
		t := &testing.T{}
		c := startClusterWith(t, 100, "cpus:32;mem:65536;disk:1000000;ports:[31000-32000]", true, time.Second)
		c.t = t
		if withMetrics {
			reg := metrics.New()
			c.f.SetObserver(reg.FSM)
			c.observer = reg.Scheduler
		}
		c.startScheduler(Config{MaxInstancesPerOffer: 10})
		deadline := time.Now().Add(60 * time.Second)
		for fsm.NewTestReader(c.t, c.f.State).FrameworkID() == "" {
			if time.Now().After(deadline) {
				b.Fatal("no framework id")
			}
			time.Sleep(10 * time.Millisecond)
		}
		app := residentApp("/bench", "2025-01-01T00:00:00Z", 1000)
		app.Cpus = proto.Float64(0.1)
		app.Mem = proto.Float64(16)
		start := time.Now()
		c.createApp(app, "d1")
		deadline = time.Now().Add(benchDeadline)
		for {
			n := 0
			for _, i := range c.instances("/bench") {
				if i.GetTask().GetState() == stRunning && resState(i) == v1.ReservationState_RESERVATION_STATE_RESERVED {
					n++
				}
			}
			if n == 1000 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("only %d of 1000 running after 5m", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		el := time.Since(start)
		b.ReportMetric(1000/el.Seconds(), "placements/s")
		b.ReportMetric(el.Seconds(), "s-to-1000-running")
		c.cancel()
		<-c.done
		c.cancel = nil
		_ = c.ml.Close()
		_ = context.Background()
	}
}

// benchDeadline bounds the mesos-local benchmark.
var benchDeadline = 5 * time.Minute
