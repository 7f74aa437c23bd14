package fsm

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// BenchmarkSnapshot100kInstances measures issue 14's state figures on one
// replica: 100 resident apps of 1,000 running instances each (reservation,
// volume, task, as the scheduler stores them), then per iteration a
// snapshot save (Persist) and a restore (Restore) of all of it, and the
// heap the store holds.
//
//	go test -run '^$' -bench Snapshot100k -benchtime 3x ./fsm/
func BenchmarkSnapshot100kInstances(b *testing.B) {
	const apps, perApp = 100, 1000
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := scaleState(b, apps, perApp)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	storeHeap := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)

	var size int
	var save, restore, saveCPU, restoreCPU time.Duration
	b.ResetTimer()
	for range b.N {
		start, cpu := time.Now(), processCPU(b)
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		// A file, as raft's file snapshot store writes (a growing
		// in-memory buffer would measure its own copying).
		out := &fileSink{path: filepath.Join(b.TempDir(), "state.bin")}
		if err := snap.Persist(out); err != nil {
			b.Fatal(err)
		}
		save += time.Since(start)
		saveCPU += processCPU(b) - cpu
		size = out.size
		start, cpu = time.Now(), processCPU(b)
		in, err := os.Open(out.path)
		if err != nil {
			b.Fatal(err)
		}
		g := New(nil)
		if err := g.Restore(in); err != nil {
			b.Fatal(err)
		}
		restore += time.Since(start)
		restoreCPU += processCPU(b) - cpu
		if n := len(NewTestReader(b, g.State).Instances()); n != apps*perApp {
			b.Fatalf("restored %d instances, want %d", n, apps*perApp)
		}
	}
	b.StopTimer()
	b.ReportMetric(storeHeap, "store-heap-MiB")
	b.ReportMetric(float64(size)/(1<<20), "snapshot-MiB")
	b.ReportMetric(save.Seconds()/float64(b.N), "save-s")
	b.ReportMetric(restore.Seconds()/float64(b.N), "restore-s")
	// CPU time (all threads, GC included): on a shared machine the wall
	// time says more about the neighbours than about the code.
	b.ReportMetric(saveCPU.Seconds()/float64(b.N), "save-cpu-s")
	b.ReportMetric(restoreCPU.Seconds()/float64(b.N), "restore-cpu-s")
}

// BenchmarkRestore100kInstances is the restore of
// BenchmarkSnapshot100kInstances alone: the state is built, saved to a
// file and dropped, then each iteration restores the file into a new
// FSM, as a follower installing a snapshot does.
//
//	go test -run '^$' -bench Restore100k -benchtime 3x ./fsm/
func BenchmarkRestore100kInstances(b *testing.B) {
	f := scaleState(b, 100, 1000)
	snap, err := f.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	out := &fileSink{path: filepath.Join(b.TempDir(), "state.bin")}
	if err := snap.Persist(out); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		start := processCPU(b)
		in, err := os.Open(out.path)
		if err != nil {
			b.Fatal(err)
		}
		g := New(nil)
		if err := g.Restore(in); err != nil {
			b.Fatal(err)
		}
		cpu += processCPU(b) - start
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "restore-cpu-s")
}

// scaleState returns an FSM holding apps resident apps of perApp running
// instances each (reservation, volume, task, as the scheduler stores
// them), written through the FSM as scheduler plans of 500 instances.
func scaleState(tb testing.TB, apps, perApp int) *FSM {
	const perEntry = 500
	f := New(nil)
	index := uint64(0)
	apply := func(t v1.CommandType, msg proto.Message) {
		data, err := Encode(t, msg)
		if err != nil {
			tb.Fatal(err)
		}
		index++
		if res := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).(*ApplyResult); res.Err != nil {
			tb.Fatalf("apply %s: %v", t, res.Err)
		}
	}
	now := timestamppb.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	for a := range apps {
		appID := fmt.Sprintf("/db-%03d", a)
		app := testApp(appID, v1Time)
		app.Instances = proto.Int32(int32(perApp))
		apply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: app})
		var batch []*v1.Instance
		for i := range perApp {
			id := fmt.Sprintf("db-%03d.instance-%08x-7c2d-4f0e-9d7b-3c5a1e2f%04x", a, a*perApp+i, i)
			agent := fmt.Sprintf("agent-%04d-S%d", (a*perApp+i)%1000, a)
			inst := residentInstance(id, appID, agent, fmt.Sprintf("db-%03d#data#%08x-4b1d-4c7a-a2f1-0e9d8c7b%04x", a, a*perApp+i, i))
			inst.AppVersion, inst.CreatedAt, inst.Incarnation = v1Time, now, 1
			r := inst.Reservation
			r.InstanceId, r.Hostname, r.Principal, r.Cpus, r.Mem, r.Disk = id, "host-"+agent, "berth", 0.1, 64, 10
			t := inst.Task
			t.Hostname, t.StagedAt, t.StartedAt, t.UpdatedAt, t.AppVersion = "host-"+agent, now, now, now, v1Time
			t.Ports = []uint32{31000 + uint32(i%1000)}
			batch = append(batch, inst)
			if len(batch) == perEntry || i == perApp-1 {
				apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: batch})
				batch = nil
			}
		}
	}
	return f
}

// fileSink is a raft.SnapshotSink writing to a file.
type fileSink struct {
	path string
	f    *os.File
	size int
}

func (s *fileSink) Write(p []byte) (int, error) {
	if s.f == nil {
		f, err := os.Create(s.path)
		if err != nil {
			return 0, err
		}
		s.f = f
	}
	n, err := s.f.Write(p)
	s.size += n
	return n, err
}

func (s *fileSink) ID() string    { return s.path }
func (s *fileSink) Cancel() error { return s.Close() }
func (s *fileSink) Close() error {
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}

// processCPU is the CPU time this process has used (user + system).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkInstanceStatusWrites: the writes placement makes most, a task
// status change of instances that keep their reservation, 100 per plan
// over 1,000 resident instances.
//
//	go test -run '^$' -bench InstanceStatusWrites ./fsm/
func BenchmarkInstanceStatusWrites(b *testing.B) {
	const n, perEntry = 1000, 100
	f := New(nil)
	index := uint64(0)
	apply := func(msg proto.Message) {
		data, err := Encode(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, msg)
		if err != nil {
			b.Fatal(err)
		}
		index++
		if res := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).(*ApplyResult); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	insts := make([]*v1.Instance, n)
	for i := range insts {
		insts[i] = residentInstance(fmt.Sprintf("db.instance-%04d", i), "/db", fmt.Sprintf("agent-%03d", i%100), fmt.Sprintf("db#data#%04d", i))
	}
	apply(&v1.SchedulerPlanCommand{PutInstances: insts})
	states := []string{"TASK_STARTING", "TASK_RUNNING"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		batch := make([]*v1.Instance, 0, perEntry)
		for j := range perEntry {
			id := insts[(i*perEntry+j)%n].GetId()
			cur, err := f.State().Snapshot().Instance(id)
			if err != nil || cur == nil {
				b.Fatalf("instance %s: %v", id, err)
			}
			next := proto.Clone(cur).(*v1.Instance)
			next.Task.State = states[i%2]
			batch = append(batch, next)
		}
		apply(&v1.SchedulerPlanCommand{PutInstances: batch})
	}
}
