package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/protobuf/proto"

	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// state100k is the committed state of 100 resident apps of 1,000 running
// instances each on 1,000 agents, as a leader holds it: each instance a
// copy of one the harness placed, with its own ids.
func state100k(b *testing.B) (*State, Config) {
	st, cfg, _ := state100kOn(b)
	return st, cfg
}

// state100kOn is state100k with the harness's fake master, whose agent
// A000 holds the template instance.
func state100kOn(b *testing.B) (*State, Config, *harness) {
	b.Helper()
	h := newHarness(b)
	h.skipStateCheck = true
	h.master.addAgent("A000", "host000", 16, 16384, 100000, 31000, 32000, nil)
	h.store.putApp(residentApp("/tpl", "v1", 1), "")
	h.settle()
	tpl := h.only("/tpl")
	if tpl.GetTask().GetState() != stRunning {
		b.Fatalf("template instance not running: %v", tpl)
	}
	st := &State{FrameworkID: "fw", Apps: map[string]*v1.App{}, Instances: map[string]*v1.Instance{},
		Deployments: map[string]*v1.Deployment{}, Backups: map[string]*v1.Backup{}, Mem: NewMemory()}
	for a := range 100 {
		app := residentApp(fmt.Sprintf("/bench-%03d", a), "v1", 1000)
		st.Apps[app.GetId()] = app
		for j := range 1000 {
			i := proto.Clone(tpl).(*v1.Instance)
			i.Id = fmt.Sprintf("bench-%03d.instance-%06d", a, j)
			i.AppId = app.GetId()
			i.Task.Id = i.GetId() + "._app.1"
			agent := fmt.Sprintf("A%03d", (a*1000+j)%1000)
			i.Task.AgentId, i.Reservation.AgentId = agent, agent
			st.Instances[i.GetId()] = i
		}
	}
	return st, h.cfg, h
}

// BenchmarkSubscribed100k is a new leader's first decision with 100,000
// running tasks: the explicit reconciliation of every live task (issue
// 14: "reconciled ≤ 3 s" starts with it).
func BenchmarkSubscribed100k(b *testing.B) {
	decide100k(b, Subscribed{FrameworkID: "fw"}, func(d Decision) {
		if n := len(d.Calls); n < 2 || len(d.Calls[0].GetReconcile().GetTasks()) != 100_000 {
			b.Fatalf("subscribed: %d calls, the first reconciling %d tasks", n, len(d.Calls[0].GetReconcile().GetTasks()))
		}
	})
}

// BenchmarkFullPass100k is the level-triggered pass over the same state
// with nothing to do (with a fresh memory, so it reconciles too).
func BenchmarkFullPass100k(b *testing.B) { decide100k(b, Tick{}, func(Decision) {}) }

// decide100k decides in on state100k b.N times, each with a fresh memory.
func decide100k(b *testing.B, in Input, check func(Decision)) {
	st, cfg := state100k(b)
	now := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		st.Mem = NewMemory()
		check(Decide(st, in, now, cfg))
	}
}

// BenchmarkOffers100kConstrained is an offer round from 100 free agents
// while each of the 100 apps (hostname UNIQUE) has one new instance to
// place among its 1,000 running ones: each app's placed values are
// counted over its own instances, not over all 100,000.
func BenchmarkOffers100kConstrained(b *testing.B) {
	st, cfg, h := state100kOn(b)
	for id, a := range st.Apps {
		a = proto.Clone(a).(*v1.App)
		a.Constraints = constraintList([]string{"hostname", "UNIQUE"})
		a.Instances = proto.Int32(1001)
		st.Apps[id] = a
		tpl := st.Instances[strings.TrimPrefix(id, "/")+".instance-000000"]
		i := proto.Clone(tpl).(*v1.Instance)
		i.Id = strings.TrimPrefix(id, "/") + ".instance-new"
		i.Reservation, i.Task, i.AgentAttributes = nil, nil, nil
		st.Instances[i.GetId()] = i
	}
	st.changed()
	for n := range 100 {
		h.master.addAgent(fmt.Sprintf("F%03d", n), fmt.Sprintf("free%03d", n), 16, 16384, 100000, 31000, 32000, nil)
	}
	offers := h.master.makeOffers()
	now := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		st.Mem = NewMemory()
		d := Decide(st, Offers{Offers: offers}, now, cfg)
		if len(d.Plan.GetPutInstances()) != 100 {
			b.Fatalf("placed %d of the 100 new instances", len(d.Plan.GetPutInstances()))
		}
	}
}

// BenchmarkReconcileAnswers100k is what a new leader decides between its
// subscription and "reconciliation complete" with 100,000 running tasks:
// the master's 100,000 answers (TASK_RUNNING, as recorded), in batches of
// maxStatusBatch as the driver hands them on. One op is all 100,000.
func BenchmarkReconcileAnswers100k(b *testing.B) {
	st, cfg := state100k(b)
	now := time.Unix(1_800_000_000, 0)
	var statuses []mesos.TaskStatus
	for _, i := range st.Instances {
		statuses = append(statuses, mesos.TaskStatus{
			TaskID:  mesos.TaskID{Value: i.GetTask().GetId()},
			State:   mesos.TASK_RUNNING.Enum(),
			AgentID: &mesos.AgentID{Value: i.GetTask().GetAgentId()},
			Source:  mesos.SOURCE_MASTER.Enum(),
			Reason:  mesos.REASON_RECONCILIATION.Enum(),
		})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		st.Mem = NewMemory()
		Decide(st, Subscribed{FrameworkID: "fw"}, now, cfg)
		b.StartTimer()
		var report *ReconciliationReport
		for k := 0; k < len(statuses); k += maxStatusBatch {
			d := Decide(st, StatusUpdates{Statuses: statuses[k:min(k+maxStatusBatch, len(statuses))]}, now, cfg)
			if d.Plan != nil {
				b.Fatalf("answers that change nothing committed a plan of %d instances", len(d.Plan.GetPutInstances()))
			}
			if d.Reconciliation != nil {
				report = d.Reconciliation
			}
		}
		if report == nil || !report.Complete() || report.Tasks != 100_000 {
			b.Fatalf("reconciliation report %+v, want 100,000 tasks complete", report)
		}
	}
}

// BenchmarkOverlay100k is the state a decision made during a commit
// reads, at 100,000 instances: a plan in flight of 500 instance writes
// laid on the committed state, and taken off again.
//
//	go test -run '^$' -bench Overlay100k -benchmem ./scheduler/
func BenchmarkOverlay100k(b *testing.B) {
	st, _ := state100k(b)
	plan := &v1.SchedulerPlanCommand{}
	for _, id := range st.sortedInstanceIDs()[:500] {
		plan.PutInstances = append(plan.PutInstances, proto.Clone(st.Instances[id]).(*v1.Instance))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		o, undo := overlay(st, plan, st.Mem)
		if len(o.Instances) != 100_000 {
			b.Fatalf("%d instances in the overlay", len(o.Instances))
		}
		undo()
	}
}

// BenchmarkOffersMostlyFull is an offer round of 1,000 agents, each with
// room for 5 of the 10,000 new instances waiting (10 apps of 1,000): 5,000
// are placed, and every offer, once full, meets the 5,000 that wait on.
func BenchmarkOffersMostlyFull(b *testing.B) {
	h := newHarness(b)
	h.skipStateCheck = true
	st := &State{FrameworkID: "fw", Apps: map[string]*v1.App{}, Instances: map[string]*v1.Instance{},
		Deployments: map[string]*v1.Deployment{}, Backups: map[string]*v1.Backup{}, Mem: NewMemory()}
	created := timestamppb.New(time.Unix(1_800_000_000, 0))
	for a := range 10 {
		app := residentApp(fmt.Sprintf("/wait-%02d", a), "v1", 1000)
		st.Apps[app.GetId()] = app
		for j := range 1000 {
			id := fmt.Sprintf("wait-%02d.instance-%06d", a, j)
			st.Instances[id] = &v1.Instance{Id: id, AppId: app.GetId(), AppVersion: "v1", Goal: v1.Goal_GOAL_RUNNING,
				Reservation: &v1.Reservation{InstanceId: id, State: v1.ReservationState_RESERVATION_STATE_NONE},
				CreatedAt:   created, Resident: true}
		}
	}
	for n := range 1000 {
		// residentApp's instance: 0.5 cpus, 64 MiB, 110 MiB of disk, a port.
		h.master.addAgent(fmt.Sprintf("F%04d", n), fmt.Sprintf("free%04d", n), 2.5, 1024, 1000, 31000, 32000, nil)
	}
	offers := h.master.makeOffers()
	now := time.Unix(1_800_000_001, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		st.Mem = NewMemory()
		d := Decide(st, Offers{Offers: offers}, now, h.cfg)
		if n := len(d.Plan.GetPutInstances()); n != 5000 {
			b.Fatalf("placed %d, want 5,000", n)
		}
	}
}
