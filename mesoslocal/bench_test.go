package mesoslocal

import (
	"fmt"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

const benchAgents = 10000

func benchCluster(b *testing.B) *Cluster {
	return startWith(b, Config{
		Listen:             "127.0.0.1:0",
		Agents:             benchAgents,
		AgentResources:     "cpus:8;mem:32768;disk:100000;ports:[31000-32000]",
		Simulate:           true,
		AllocationInterval: 100 * time.Millisecond,
		Logger:             testLogger(),
	})
}

// nextOffers returns the offers of the next OFFERS event.
func nextOffers(b *testing.B, s *sched) []mesos.Offer {
	e := s.tryAwait(func(e *scheduler.Event) bool { return e.Type == scheduler.Event_OFFERS }, time.Minute)
	if e == nil {
		b.Fatal("no offers within a minute")
	}
	return e.Offers.Offers
}

// BenchmarkOffers10kAgents measures offers delivered to a mesos-go
// scheduler per second: every offer is declined without a filter and made
// again in the next allocation round.
func BenchmarkOffers10kAgents(b *testing.B) {
	c := benchCluster(b)
	s := subscribe(b, c, frameworkInfo("*"))
	b.ResetTimer()
	start := time.Now()
	got := 0
	for got < b.N {
		offers := nextOffers(b, s)
		ids := make([]mesos.OfferID, len(offers))
		for i, o := range offers {
			ids[i] = o.ID
		}
		s.mustCall(calls.Decline(ids...).With(calls.RefuseSeconds(0)))
		got += len(offers)
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds(), "offers/s")
}

// BenchmarkAcceptOperations10kAgents measures offer operations applied per
// second through ACCEPT calls: each call does RESERVE, UNRESERVE and LAUNCH
// (a simulated task) on one offer.
func BenchmarkAcceptOperations10kAgents(b *testing.B) {
	c := benchCluster(b)
	s := subscribe(b, c, berthInfo())
	s.noAck = true // updates are not acknowledged: status traffic stays out of the measurement
	var pending []mesos.Offer
	b.ResetTimer()
	start := time.Now()
	ops := 0
	for i := 0; ops < b.N; i++ {
		if len(pending) == 0 {
			pending = nextOffers(b, s)
		}
		o := pending[0]
		pending = pending[1:]
		r := reserved(scalar("cpus", 0.01), "berth", "berth", labels("i", fmt.Sprint(i)))
		task := smallTask(fmt.Sprintf("t%d", i), o, "x")
		s.mustCall(calls.Accept(calls.OfferOperations{calls.OpReserve(r), calls.OpUnreserve(r), calls.OpLaunch(task)}.WithOffers(o.ID)).With(calls.RefuseSeconds(0)))
		ops += 3
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if n := len(c.Operations()); n < ops {
		b.Fatalf("%d operations recorded, %d sent", n, ops)
	}
	b.ReportMetric(float64(ops)/elapsed.Seconds(), "ops/s")
}

// BenchmarkAcceptOperations10kAgentsConcurrent is
// BenchmarkAcceptOperations10kAgents with 8 ACCEPT calls in flight (one
// mesos-go caller used by 8 goroutines), as a scheduler that sends calls
// from several lanes does: it measures what the master applies rather than
// one client's round-trip latency.
func BenchmarkAcceptOperations10kAgentsConcurrent(b *testing.B) {
	const inFlight = 8
	c := benchCluster(b)
	s := subscribe(b, c, berthInfo())
	s.noAck = true
	type job struct {
		o mesos.Offer
		i int
	}
	work := make(chan job, inFlight)
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < inFlight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				r := reserved(scalar("cpus", 0.01), "berth", "berth", labels("i", fmt.Sprint(j.i)))
				task := smallTask(fmt.Sprintf("t%d", j.i), j.o, "x")
				err := s.call(calls.Accept(calls.OfferOperations{calls.OpReserve(r), calls.OpUnreserve(r), calls.OpLaunch(task)}.WithOffers(j.o.ID)).With(calls.RefuseSeconds(0)))
				if err != nil {
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
	ops := 0
	for i := 0; ops < b.N; {
		for _, o := range nextOffers(b, s) {
			if ops >= b.N {
				break
			}
			work <- job{o, i}
			i++
			ops += 3
		}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatalf("ACCEPT: %v", firstErr)
	}
	if n := len(c.Operations()); n < ops {
		b.Fatalf("%d operations recorded, %d sent", n, ops)
	}
	b.ReportMetric(float64(ops)/elapsed.Seconds(), "ops/s")
}
