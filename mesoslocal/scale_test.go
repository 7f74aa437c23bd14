package mesoslocal

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// scaleResources is a large agent: 320 instances of 0.1 cpus fit on it.
const scaleResources = "cpus:32;mem:65536;disk:1000000;ports:[31000-32000]"

// residentInstance is one resident instance as Berth places it: its own
// labelled reservation, a persistent volume on it and a task using both.
type residentInstance struct {
	id                      string
	cpus, mem, disk, port   mesos.Resource // reserved
	vol                     mesos.Resource
	taskDisk, unreserveDisk mesos.Resource
}

// newResidentInstance labels the reservation as Berth does: framework id
// and instance id (app id plus a UUID).
func newResidentInstance(id string, port uint64) residentInstance {
	lbl := labels("berth_framework_id", "9f65e1b1-87e7-495f-b11b-94ef2000ac91-0000",
		"berth_instance_id", "bench.instance-0035c2b2-8670-4f85-a4f7-"+id)
	return residentInstance{
		id:            id,
		cpus:          reserved(scalar("cpus", 0.1), "berth", "berth", lbl),
		mem:           reserved(scalar("mem", 16), "berth", "berth", lbl),
		disk:          reserved(scalar("disk", 110), "berth", "berth", lbl),
		port:          reserved(portRange(port, port), "berth", "berth", lbl),
		vol:           volume(reserved(scalar("disk", 100), "berth", "berth", lbl), "v-"+id, "data"),
		taskDisk:      reserved(scalar("disk", 10), "berth", "berth", lbl),
		unreserveDisk: reserved(scalar("disk", 110), "berth", "berth", lbl),
	}
}

// residentOps is one ACCEPT's operations placing n new resident instances
// on an offer: RESERVE, CREATE and LAUNCH for each, as Berth's scheduler
// sends them with a high per-offer cap.
func residentOps(o mesos.Offer, prefix string, n int) (calls.OfferOperations, []residentInstance) {
	var ops calls.OfferOperations
	var insts []residentInstance
	for i := 0; i < n; i++ {
		in := newResidentInstance(fmt.Sprintf("%s%d", prefix, i), 31000+uint64(i))
		task := shellTask(in.id, o, "sleep 1000", []mesos.Resource{in.cpus, in.mem, in.taskDisk, in.port, in.vol})
		ops = append(ops, calls.OpReserve(in.cpus, in.mem, in.disk, in.port), calls.OpCreate(in.vol), calls.OpLaunch(task))
		insts = append(insts, in)
	}
	return ops, insts
}

// TestManyResidentInstancesOnOneAgent places 320 resident instances on one
// agent in a single ACCEPT (960 operations, 320 distinct labelled
// reservations and volumes), kills them, gets every reservation and volume
// offered back in one offer, and destroys and unreserves them all in one
// ACCEPT, leaving the agent as it started. Before the resource bookkeeping
// was indexed, this ACCEPT held the master for longer than mesos-go's 15 s
// response timeout.
func TestManyResidentInstancesOnOneAgent(t *testing.T) {
	const n = 320
	c := simCluster(t, func(cfg *Config) { cfg.AgentResources = scaleResources })
	initial := c.agentTotal(c.firstAgent())
	s := subscribe(t, c, berthInfo())
	o := s.awaitOffer("the whole agent", func(o mesos.Offer) bool { return sumScalar(o.Resources, "cpus", unreservedRes) == 32 })
	ops, insts := residentOps(o, "i", n)
	s.mustCall(calls.Accept(ops.WithOffers(o.ID)).With(calls.RefuseSeconds(0)))
	for _, in := range insts {
		s.awaitUpdate(in.id, mesos.TASK_RUNNING)
	}
	if got := len(c.Operations()); got != 3*n {
		t.Fatalf("%d operations recorded, want %d", got, 3*n)
	}

	for _, in := range insts {
		s.mustCall(calls.Kill(in.id, o.AgentID.Value))
	}
	for _, in := range insts {
		s.awaitUpdate(in.id, mesos.TASK_KILLED)
	}
	volumes := func(o mesos.Offer) int {
		n := 0
		for _, r := range o.Resources {
			if isVolume(&r) {
				n++
			}
		}
		return n
	}
	back := s.awaitOfferDeclining("every volume", func(o mesos.Offer) bool { return volumes(o) == n })
	if got := sumScalar(back.Resources, "cpus", func(r mesos.Resource) bool { return len(r.Reservations) == 1 }); milli(got) != 32000 {
		t.Fatalf("reserved cpus offered back: %v, want 32", got)
	}
	for _, r := range back.Resources {
		if isVolume(&r) && (r.GetDisk().GetVolume().GetContainerPath() != "data" || len(r.Reservations[0].GetLabels().GetLabels()) != 2) {
			t.Fatalf("volume offered back without its container path or labels: %v", r)
		}
	}

	var destroy, unreserve []mesos.Resource
	for _, in := range insts {
		destroy = append(destroy, in.vol)
		unreserve = append(unreserve, in.cpus, in.mem, in.unreserveDisk, in.port)
	}
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpDestroy(destroy...), calls.OpUnreserve(unreserve...)}.WithOffers(back.ID)).With(calls.RefuseSeconds(0)))
	total := c.agentTotal(c.firstAgent())
	if !total.contains(initial) || !initial.contains(total) {
		t.Fatalf("agent total after destroying and unreserving everything: {%s}, want {%s}", total, initial)
	}
	s.awaitOfferDeclining("the whole agent unreserved again", func(o mesos.Offer) bool {
		return milli(sumScalar(o.Resources, "cpus", unreservedRes)) == 32000 && milli(sumScalar(o.Resources, "disk", unreservedRes)) == 1000000000
	})
}

// BenchmarkAcceptResidentInstances measures one ACCEPT placing n resident
// instances (RESERVE + CREATE + LAUNCH each, n labelled reservations and
// volumes; 750 is what one agent of the 10,000-instance e2e benchmark takes
// in one round) on one simulated agent, through mesos-go over loopback HTTP: the
// call returns once the master has applied every operation.
func BenchmarkAcceptResidentInstances(b *testing.B) {
	for _, n := range []int{10, 80, 320, 750} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var total, cpu time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				// Room for 750 instances of 0.1 cpus.
				c := startWith(b, Config{Listen: "127.0.0.1:0", Agents: 1, AgentResources: "cpus:80;mem:65536;disk:1000000;ports:[31000-32000]", Simulate: true,
					AllocationInterval: 100 * time.Millisecond, Logger: fileLogger(b)})
				s := subscribe(b, c, berthInfo())
				s.noAck = true
				o := s.awaitOffer("the agent", nil)
				ops, _ := residentOps(o, "i", n)
				call := calls.Accept(ops.WithOffers(o.ID)).With(calls.RefuseSeconds(0))
				b.StartTimer()
				start, cpuStart := time.Now(), processCPU(b)
				s.mustCall(call)
				total += time.Since(start)
				cpu += processCPU(b) - cpuStart
				b.StopTimer()
				if got := len(c.Operations()); got != 3*n {
					b.Fatalf("%d operations applied, want %d", got, 3*n)
				}
				s.close()
				c.Close()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/accept")
			// CPU is what a loaded machine does not change: the master's
			// and the (in-process) client's, per resident instance.
			b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/instance")
			b.ReportMetric(float64(3*n*b.N)/total.Seconds(), "ops/s")
		})
	}
}

// processCPU is the CPU time (user + system) this process used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fileLogger logs at info level to a file, as mesos-local's output is
// written in the e2e benchmarks (its cost counts).
func fileLogger(tb testing.TB) *slog.Logger {
	f, err := os.Create(filepath.Join(tb.TempDir(), "mesos-local.log"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return slog.New(slog.NewTextHandler(f, nil))
}
