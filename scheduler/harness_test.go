package scheduler

import (
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// tb is what the harness needs of a test: a *testing.T, or a *rapid.T in
// property tests (so that a failure shrinks).
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// fsmStore is the committed state of the harness: the real FSM and state
// store, fed through fsm.Encode and FSM.Apply as Raft would (compare-and-set
// on instances, derived reservation and volume tables, request records).
// It implements Store, so the harness decides on the driver's incremental
// snapshots.
type fsmStore struct {
	t     tb
	f     *fsm.FSM
	index uint64
	term  uint64
}

// liveStore hands a *fsm.Store to the scheduler, as the server does.
type liveStore struct{ *fsm.Store }

func (s liveStore) Snapshot() StateReader { return s.Store.Snapshot() }

func newFSMStore(t tb) *fsmStore {
	return &fsmStore{t: t, f: fsm.New(slog.New(slog.NewTextHandler(io.Discard, nil))), term: 1}
}

// Snapshot implements Store.
func (s *fsmStore) Snapshot() StateReader { return s.f.State().Snapshot() }

// Watch implements Store.
func (s *fsmStore) Watch() <-chan struct{} { return s.f.State().Watch() }

// read reads the current state, failing the test on a read error.
func (s *fsmStore) read() fsm.TestReader { return fsm.NewTestReader(s.t, s.f.State) }

// apply appends one command to the log and applies it; it returns the
// FSM's refusal, if any.
func (s *fsmStore) apply(typ v1.CommandType, msg proto.Message) error {
	s.t.Helper()
	data, err := fsm.Encode(typ, msg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.index++
	return s.f.Apply(&raft.Log{Index: s.index, Term: s.term, Type: raft.LogCommand, Data: data}).(*fsm.ApplyResult).Err
}

func (s *fsmStore) mustApply(typ v1.CommandType, msg proto.Message) {
	s.t.Helper()
	if err := s.apply(typ, msg); err != nil {
		s.t.Fatalf("apply %s: %v", typ, err)
	}
}

// commit applies a scheduler plan as the server would.
func (s *fsmStore) commit(plan *v1.SchedulerPlanCommand) error {
	return s.apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, plan)
}

func (s *fsmStore) setFrameworkID(id string) {
	s.mustApply(v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: id, Overwrite: true})
}

func (s *fsmStore) frameworkID() string                 { return s.read().FrameworkID() }
func (s *fsmStore) app(id string) *v1.App               { return s.read().App(id) }
func (s *fsmStore) appVersion(id, v string) *v1.App     { return s.read().AppVersion(id, v) }
func (s *fsmStore) instance(id string) *v1.Instance     { return s.read().Instance(id) }
func (s *fsmStore) instances() []*v1.Instance           { return s.read().Instances() }
func (s *fsmStore) deployment(id string) *v1.Deployment { return s.read().Deployment(id) }
func (s *fsmStore) deployments() []*v1.Deployment       { return s.read().Deployments() }

// putApp stores a new version of an app (as the rpc layer would), with a
// RUNNING deployment for it.
func (s *fsmStore) putApp(a *v1.App, deploymentID string) {
	s.t.Helper()
	var dep *v1.Deployment
	if deploymentID != "" {
		dep = &v1.Deployment{
			Id: deploymentID, Version: a.GetVersion(), AffectedApps: []string{a.GetId()},
			Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING,
		}
	}
	if s.app(a.GetId()) == nil {
		s.mustApply(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: a, Deployment: dep})
		return
	}
	s.mustApply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{App: a, Deployment: dep})
}

// deleteApp removes an app; the FSM decommissions its instances.
func (s *fsmStore) deleteApp(id, deploymentID string) {
	s.t.Helper()
	var dep *v1.Deployment
	if deploymentID != "" {
		dep = &v1.Deployment{Id: deploymentID, AffectedApps: []string{id}, Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING}
	}
	s.mustApply(v1.CommandType_COMMAND_TYPE_APP_DELETE, &v1.AppDeleteCommand{AppId: id, Deployment: dep})
}

// putInstance writes an instance as an API request would (a kill, a
// wipe), over whatever is stored now.
func (s *fsmStore) putInstance(i *v1.Instance) {
	s.t.Helper()
	i = proto.Clone(i).(*v1.Instance)
	i.ModifyIndex = s.instance(i.GetId()).GetModifyIndex()
	s.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{i}})
}

// putDeployment replaces a deployment (a test rewriting its steps).
func (s *fsmStore) putDeployment(d *v1.Deployment) {
	s.t.Helper()
	s.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutDeployments: []*v1.Deployment{d}})
}

// cancelDeployment cancels a running deployment as the API does.
func (s *fsmStore) cancelDeployment(id string) {
	s.t.Helper()
	s.mustApply(v1.CommandType_COMMAND_TYPE_DEPLOYMENT_CANCEL, &v1.DeploymentCancelCommand{DeploymentIds: []string{id}})
}

// harness runs the pure core against the fake master with a manual clock.
type harness struct {
	t     tb
	now   time.Time
	cfg   Config
	store *fsmStore
	mem   *Memory
	// snaps is the driver's snapshot cache: decisions run on the
	// incremental path the driver takes, and every one is checked
	// against a fresh read of the store.
	snaps snapshots
	// skipStateCheck skips that check (benchmarks).
	skipStateCheck bool
	master         *fakeMaster
	events         []*v1.Event
	ids            int
	// dropCalls simulates a crash between commit and send.
	dropCalls bool
	sent      []*scheduler.Call
	// check, when set, runs after every decision (e.g. a capacity bound
	// that must hold at every moment).
	check func()
}

func newHarness(t tb) *harness {
	h := &harness{
		t:      t,
		now:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		store:  newFSMStore(t),
		mem:    NewMemory(),
		master: newFakeMaster("berth"),
	}
	h.cfg = Config{Role: "berth", Principal: "berth", NewID: func() string {
		h.ids++
		return fmt.Sprintf("00000000-0000-0000-0000-%012d", h.ids)
	}}
	h.store.setFrameworkID("fw-1")
	return h
}

// decide runs one decision: commit the plan, then send the calls (unless a
// crash is simulated), checking Invariant 1 on every call sent.
func (h *harness) decide(in Input) Decision {
	h.t.Helper()
	st := h.state()
	d := Decide(st, in, h.now, h.cfg)
	if !h.dropCalls {
		// Early calls go out before the plan commits.
		for _, c := range d.Early {
			h.checkWriteAhead(c)
			h.sent = append(h.sent, c)
			h.master.handle(c)
		}
	}
	if d.Plan != nil {
		h.snaps.note(planChanges(st, d.Plan)) // as the driver does, for h.changes
		if err := h.store.commit(d.Plan); err != nil {
			h.t.Fatalf("the FSM refused the plan of %T: %v", in, err)
		}
		h.snaps.committed(h.store, d.Plan)
	}
	if h.dropCalls {
		return d
	}
	for _, c := range d.Calls {
		h.checkWriteAhead(c)
		h.sent = append(h.sent, c)
		h.master.handle(c)
	}
	h.events = append(h.events, d.Events...)
	h.checkMaster()
	if h.check != nil {
		h.check()
	}
	return d
}

// checkWriteAhead asserts Invariant 1: every RESERVE, CREATE and LAUNCH sent
// matches committed state, and DESTROY/UNRESERVE only touch resources no
// committed instance claims.
func (h *harness) checkWriteAhead(c *scheduler.Call) {
	h.t.Helper()
	if c.Type != scheduler.Call_ACCEPT {
		return
	}
	agentID := h.master.offers[c.Accept.OfferIDs[0].Value]
	for _, op := range c.Accept.Operations {
		switch op.Type {
		case mesos.Offer_Operation_RESERVE, mesos.Offer_Operation_CREATE:
			rs := op.GetReserve().GetResources()
			if op.Type == mesos.Offer_Operation_CREATE {
				rs = op.GetCreate().GetVolumes()
			}
			for _, r := range rs {
				_, iid, _ := resLabels(&r)
				i := h.store.instance(iid)
				if i == nil || resState(i) != v1.ReservationState_RESERVATION_STATE_PENDING || i.GetReservation().GetAgentId() != agentID ||
					labelEpoch(currentReservation(&r).GetLabels()) != i.GetReservation().GetEpoch() {
					h.t.Fatalf("invariant 1: %s for %s on %s not committed as pending (%v)", op.Type, iid, agentID, i)
				}
			}
		case mesos.Offer_Operation_LAUNCH:
			for _, ti := range op.Launch.TaskInfos {
				found := false
				for _, i := range h.store.instances() {
					if i.GetTask().GetId() == ti.TaskID.Value && i.GetTask().GetState() == stStaging {
						found = true
					}
				}
				if b := h.store.read().Backup(backupIDOfTask(ti.TaskID.Value)); b != nil && b.GetTaskId() == ti.TaskID.Value && b.GetState() == v1.BackupState_BACKUP_STATE_RUNNING {
					found = true // a copy task
				}
				if !found {
					h.t.Fatalf("invariant 1: LAUNCH %s not committed", ti.TaskID.Value)
				}
			}
		case mesos.Offer_Operation_DESTROY, mesos.Offer_Operation_UNRESERVE:
			rs := op.GetDestroy().GetVolumes()
			if op.Type == mesos.Offer_Operation_UNRESERVE {
				rs = op.GetUnreserve().GetResources()
			}
			for _, r := range rs {
				_, iid, _ := resLabels(&r)
				if i := h.store.instance(iid); i != nil && hasBerth(i) && i.GetReservation().GetAgentId() == agentID && goalOf(i) != v1.Goal_GOAL_DECOMMISSIONED &&
					labelEpoch(currentReservation(&r).GetLabels()) == i.GetReservation().GetEpoch() {
					pid := r.GetDisk().GetPersistence().GetID()
					claimed := pid == ""
					for _, v := range i.GetReservation().GetVolumes() {
						if v.GetPersistenceId() == pid {
							claimed = true
						}
					}
					if claimed {
						h.t.Fatalf("invariant 1: %s of %s resources still claimed by committed state", op.Type, iid)
					}
				}
			}
		}
	}
}

// checkMaster fails on operations the master refused and on Invariant 2.
func (h *harness) checkMaster() {
	h.t.Helper()
	if len(h.master.errors) > 0 {
		h.t.Fatalf("master refused operations: %s", strings.Join(h.master.errors, "; "))
	}
	if !h.master.dirty {
		return
	}
	h.master.dirty = false
	perInstance := map[string]string{}
	for _, a := range h.master.agents {
		for tid, t := range a.tasks {
			if !isLiveState(t.state.String()) || t.state == mesos.TASK_UNREACHABLE {
				// An unreachable task is out of reach: a replacement from a
				// backup runs beside it on another berth; should it come
				// back it must be killed before anything else is checked.
				continue
			}
			iid := instanceIDOfAnyTask(tid)
			if other, ok := perInstance[iid]; ok {
				h.t.Fatalf("invariant 2: instance %s has two live tasks %s and %s", iid, other, tid)
			}
			perInstance[iid] = tid
		}
	}
}

func (h *harness) tick() Decision { return h.decide(Tick{}) }

// instanceIDOfAnyTask is the instance of an app task or a copy task: both
// count for invariant 2.
func instanceIDOfAnyTask(tid string) string {
	for _, m := range []string{"._app.", backupTaskMarker, restoreTaskMarker} {
		if i := strings.LastIndex(tid, m); i >= 0 {
			return tid[:i]
		}
	}
	return tid
}

// state returns the State a decision runs on, through the driver's
// snapshot cache, and checks it against a fresh read of the store.
func (h *harness) state() *State {
	h.t.Helper()
	st, err := h.snaps.get(h.store, h.mem)
	if err != nil {
		h.t.Fatal(err)
	}
	if !h.skipStateCheck {
		sameState(h.t, st, h.store)
	}
	return st
}

// offers has the master offer every agent once and decides on them.
func (h *harness) offers() Decision {
	os := h.master.makeOffers()
	if len(os) == 0 {
		return Decision{}
	}
	return h.decide(Offers{Offers: os})
}

// deliver hands every pending status update to the scheduler.
func (h *harness) deliver() {
	for len(h.master.pending) > 0 {
		s := h.master.pending[0]
		h.master.pending = h.master.pending[1:]
		h.decide(StatusUpdate{Status: s})
	}
}

// settle runs tick/offers/statuses rounds until nothing changes.
func (h *harness) settle() {
	h.t.Helper()
	for round := 0; round < 50; round++ {
		before := h.fingerprint()
		h.tick()
		h.deliver()
		h.changes() // as the driver does after a commit
		h.offers()
		h.deliver()
		h.changes()
		h.tick()
		h.deliver()
		if h.fingerprint() == before {
			return
		}
	}
	h.t.Fatalf("no convergence after 50 rounds: %s", h.fingerprint())
}

func (h *harness) fingerprint() string {
	var b strings.Builder
	for _, i := range h.store.instances() {
		b.WriteString(fmt.Sprintf("%s|%v|%v|%s|%s;", i.Id, i.Goal, resState(i), i.GetTask().GetId(), i.GetTask().GetState()))
	}
	for _, d := range h.store.deployments() {
		b.WriteString(d.Id + d.Status.String() + ";")
	}
	b.WriteString(strings.Join(h.master.reservations(), ","))
	b.WriteString(strings.Join(h.master.liveTasks(), ","))
	return b.String()
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d) }

// restart simulates a leader failover: the memory is lost, offers are
// rescinded, and the new leader subscribes with the stored framework id.
func (h *harness) restart() {
	h.dropCalls = false
	h.mem = NewMemory()
	h.master.rescindAll()
	h.decide(Subscribed{FrameworkID: h.store.frameworkID()})
	h.deliver()
}

// instancesOf returns the app's instances, sorted by id.
func (h *harness) instancesOf(appID string) []*v1.Instance {
	var out []*v1.Instance
	for _, i := range h.store.instances() {
		if i.AppId == appID {
			out = append(out, i)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Id < out[b].Id })
	return out
}

func (h *harness) only(appID string) *v1.Instance {
	h.t.Helper()
	is := h.instancesOf(appID)
	if len(is) != 1 {
		h.t.Fatalf("want one instance of %s, have %d", appID, len(is))
	}
	return is[0]
}

// lastOps returns the operation types of the ACCEPT calls in d.
func acceptOps(d Decision) [][]string {
	var out [][]string
	for _, c := range d.Calls {
		if c.Type != scheduler.Call_ACCEPT {
			continue
		}
		var ops []string
		for _, op := range c.Accept.Operations {
			ops = append(ops, op.Type.String())
		}
		out = append(out, ops)
	}
	return out
}

func callTypes(d Decision) []string {
	var out []string
	for _, c := range d.Calls {
		out = append(out, c.Type.String())
	}
	return out
}

func (h *harness) eventTypes() []string {
	var out []string
	for _, e := range h.events {
		out = append(out, e.Type)
	}
	return out
}

func (h *harness) hasEvent(typ string) bool {
	for _, e := range h.events {
		if e.Type == typ {
			return true
		}
	}
	return false
}

// residentApp is a PostgreSQL-like app with one persistent volume.
func residentApp(id, version string, instances int32) *v1.App {
	return &v1.App{
		Id: id, Version: proto.String(version), Cmd: proto.String("echo hi >> data/log; sleep 1000"),
		Instances: proto.Int32(instances), Cpus: proto.Float64(0.5), Mem: proto.Float64(64), Disk: proto.Float64(10),
		PortDefinitions: []*v1.PortDefinition{{Port: proto.Int32(0), Name: proto.String("pg")}},
		Container: &v1.Container{Type: proto.String("MESOS"), Volumes: []*v1.Volume{{
			ContainerPath: "data", Mode: proto.String("RW"), Persistent: &v1.PersistentVolume{Size: proto.Float64(100)},
		}}},
	}
}

func statelessApp(id, version string, instances int32) *v1.App {
	return &v1.App{
		Id: id, Version: proto.String(version), Cmd: proto.String("sleep 1000"),
		Instances: proto.Int32(instances), Cpus: proto.Float64(0.25), Mem: proto.Float64(32),
		PortDefinitions: []*v1.PortDefinition{{Port: proto.Int32(0)}},
	}
}

func withInstances(a *v1.App, version string, n int32) *v1.App {
	c := proto.Clone(a).(*v1.App)
	c.Version = proto.String(version)
	c.Instances = proto.Int32(n)
	return c
}
