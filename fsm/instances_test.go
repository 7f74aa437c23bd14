package fsm

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// setModel is what an instanceSet must answer: the instances by id.
type setModel map[string]*v1.Instance

// check compares every lookup of s with the model.
func (m setModel) check(t *rapid.T, s *instanceSet, what string) {
	if s.len() != len(m) {
		t.Fatalf("%s: %d instances, want %d", what, s.len(), len(m))
	}
	var ids []string
	for i := range s.all() {
		ids = append(ids, i.GetId())
	}
	want := slices.Sorted(maps.Keys(m))
	if !slices.Equal(ids, want) {
		t.Fatalf("%s: all() = %v, want %v", what, ids, want)
	}
	vols := map[string]string{}
	apps := map[string][]string{}
	for id, inst := range m {
		if got := s.get(id); got != inst {
			t.Fatalf("%s: get(%s) = %v, want the instance stored", what, id, got)
		}
		if task := inst.GetTask().GetId(); task != "" {
			if got := instanceByTask(s, task); got != inst {
				t.Fatalf("%s: instanceByTask(%s) = %s, want %s", what, task, got.GetId(), id)
			}
		}
		for _, pid := range volumeIDs(inst) {
			vols[pid] = id
		}
		apps[inst.GetAppId()] = append(apps[inst.GetAppId()], id)
	}
	for pid, id := range vols {
		if got := s.byVolumeID(pid); got.GetId() != id {
			t.Fatalf("%s: byVolumeID(%s) = %q, want %s", what, pid, got.GetId(), id)
		}
	}
	if got := s.byVolume.Len(); got != len(vols) {
		t.Fatalf("%s: %d volume entries, want %d (a stale one left?)", what, got, len(vols))
	}
	for _, app := range []string{"/a", "/a/b", "/a_b", "/c"} {
		var got []string
		for i := range s.ofApp(app) {
			got = append(got, i.GetId())
		}
		sort.Strings(got)
		w := apps[app]
		sort.Strings(w)
		if !slices.Equal(got, w) {
			t.Fatalf("%s: ofApp(%s) = %v, want %v", what, app, got, w)
		}
	}
}

// TestInstanceSetMatchesModel: random puts and deletes, each batch written
// to a clone as a write transaction does, answer every lookup as a plain
// map of the instances would; and every earlier set (what readers of
// earlier snapshots hold) still answers as it did, whatever was written
// after it. Ids, task ids and persistence ids come in the scheduler's
// format and in others (invariant 5: lookups stay exact for any id); apps
// "/a/b" and "/a_b" share an id prefix.
func TestInstanceSetMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		apps := []string{"/a", "/a/b", "/a_b", "/c"}
		set := newInstanceSet()
		model := setModel{}
		type published struct {
			set   *instanceSet
			model setModel
		}
		var history []published
		batches := rapid.IntRange(1, 12).Draw(t, "batches")
		for b := range batches {
			work := set.clone()
			next := maps.Clone(model)
			for range rapid.IntRange(1, 10).Draw(t, "writes") {
				n := rapid.IntRange(0, 7).Draw(t, "instance")
				app := rapid.SampledFrom(apps).Draw(t, "app")
				id := fmt.Sprintf("%s.instance-%d", AppSlug(app), n)
				if rapid.Bool().Draw(t, "odd id") {
					id = fmt.Sprintf("odd-%d", n)
				}
				if rapid.IntRange(0, 3).Draw(t, "op") == 0 {
					work.delete(id)
					delete(next, id)
					continue
				}
				inst := &v1.Instance{Id: id, AppId: app}
				switch rapid.IntRange(0, 2).Draw(t, "task") {
				case 1:
					inst.Task = &v1.Task{Id: id + "._app." + fmt.Sprint(b)}
				case 2:
					inst.Task = &v1.Task{Id: fmt.Sprintf("task-%s-%d", id, b)}
				}
				if rapid.Bool().Draw(t, "berth") {
					// A persistence id per instance and batch: owned by one
					// instance, as putInstance makes sure.
					inst.Reservation = &v1.Reservation{State: v1.ReservationState_RESERVATION_STATE_RESERVED,
						Volumes: []*v1.LocalVolume{{PersistenceId: fmt.Sprintf("%s#data#%d", id, b)}}}
				}
				work.put(inst)
				next[id] = inst
			}
			if rapid.IntRange(0, 4).Draw(t, "abort") == 0 {
				continue // an aborted transaction: its clone is dropped
			}
			set, model = work, next
			history = append(history, published{set, model})
			model.check(t, set, fmt.Sprintf("batch %d", b))
		}
		for k, h := range history {
			h.model.check(t, h.set, fmt.Sprintf("set published by batch %d, after all the writes", k))
		}
	})
}

// TestSnapshotsReadWhileTheFSMWrites: readers take snapshots and read
// instances by id, app, task and volume while the FSM applies plans that
// replace and delete them; each snapshot reads as of one index (every
// instance of a plan at the same incarnation), and -race finds no
// unsynchronised access between the writer's copy-on-write and the
// readers.
func TestSnapshotsReadWhileTheFSMWrites(t *testing.T) {
	a := newApplier(t)
	a.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp("/db", v1Time)})
	const n = 50
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("db.instance-%02d", i)
	}
	plan := func(round int) *v1.SchedulerPlanCommand {
		cmd := &v1.SchedulerPlanCommand{}
		s := a.f.State().Snapshot()
		for _, id := range ids {
			var inst *v1.Instance
			if cur, _ := s.Instance(id); cur != nil {
				inst = proto.Clone(cur).(*v1.Instance)
			} else {
				inst = residentInstance(id, "/db", "agent-1", id+"#data")
			}
			inst.Incarnation = uint32(round)
			inst.Task.Id = fmt.Sprintf("%s._app.%d", id, round)
			cmd.PutInstances = append(cmd.PutInstances, inst)
		}
		return cmd
	}
	a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, plan(1))

	const rounds = 200
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				s := a.f.State().Snapshot()
				insts, _ := s.InstancesByApp("/db")
				if len(insts) != n {
					errs <- fmt.Errorf("snapshot at %d: %d instances of /db, want %d", s.Index(), len(insts), n)
					return
				}
				inc := insts[0].GetIncarnation()
				for _, i := range insts {
					if i.GetIncarnation() != inc {
						errs <- fmt.Errorf("snapshot at %d: %s at incarnation %d, %s at %d", s.Index(), insts[0].GetId(), inc, i.GetId(), i.GetIncarnation())
						return
					}
					if got, _ := s.InstanceByTaskID(i.GetTask().GetId()); got != i {
						errs <- fmt.Errorf("snapshot at %d: task %s finds %v", s.Index(), i.GetTask().GetId(), got.GetId())
						return
					}
					if v, _ := s.Volume(i.GetId() + "#data"); v.GetInstanceId() != i.GetId() {
						errs <- fmt.Errorf("snapshot at %d: volume of %s finds %q", s.Index(), i.GetId(), v.GetInstanceId())
						return
					}
				}
			}
		}()
	}
	for r := 2; r <= rounds; r++ {
		a.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, plan(r))
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	last, _ := a.f.State().Snapshot().Instance(ids[0])
	if last.GetIncarnation() != rounds {
		t.Fatalf("after %d plans: incarnation %d", rounds, last.GetIncarnation())
	}
}
