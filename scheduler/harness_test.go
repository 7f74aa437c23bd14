package scheduler

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// memStore is the committed state of the harness: what Raft would hold.
type memStore struct {
	fid         string
	apps        map[string]*v1.App
	versions    map[string]*v1.App // "id@version"
	instances   map[string]*v1.Instance
	deployments map[string]*v1.Deployment
	byTask      map[string]string // task id → instance id (stale entries are checked by State)
}

func newMemStore() *memStore {
	return &memStore{apps: map[string]*v1.App{}, versions: map[string]*v1.App{}, instances: map[string]*v1.Instance{},
		deployments: map[string]*v1.Deployment{}, byTask: map[string]string{}}
}

func (s *memStore) FrameworkID() string { return s.fid }
func (s *memStore) Apps() []*v1.App {
	var out []*v1.App
	for _, k := range sortedKeys(s.apps) {
		out = append(out, s.apps[k])
	}
	return out
}
func (s *memStore) AppVersion(id, version string) *v1.App { return s.versions[id+"@"+version] }
func (s *memStore) Instances() []*v1.Instance {
	out := make([]*v1.Instance, 0, len(s.instances))
	for _, i := range s.instances {
		out = append(out, i)
	}
	return out
}
func (s *memStore) Deployments() []*v1.Deployment {
	var out []*v1.Deployment
	for _, k := range sortedKeys(s.deployments) {
		out = append(out, s.deployments[k])
	}
	return out
}

// InstanceByTaskID is the store's task index (as in *fsm.Store).
func (s *memStore) InstanceByTaskID(taskID string) *v1.Instance {
	if id, ok := s.byTask[taskID]; ok {
		return s.instances[id]
	}
	return nil
}

func (s *memStore) reindex(id string) {
	if i := s.instances[id]; i != nil && i.GetTask().GetId() != "" {
		s.byTask[i.GetTask().GetId()] = id
	}
}

func (s *memStore) apply(plan *v1.SchedulerPlanCommand) {
	plan = proto.Clone(plan).(*v1.SchedulerPlanCommand)
	for _, id := range plan.DeleteInstances {
		delete(s.instances, id)
	}
	for _, i := range plan.PutInstances {
		s.instances[i.Id] = i
		s.reindex(i.Id)
	}
	for _, d := range plan.PutDeployments {
		s.deployments[d.Id] = d
	}
}

// putApp stores a new version of an app (as the rpc layer would), with a
// RUNNING deployment for it.
func (s *memStore) putApp(a *v1.App, deploymentID string) {
	s.apps[a.GetId()] = a
	s.versions[a.GetId()+"@"+a.GetVersion()] = a
	if deploymentID != "" {
		s.deployments[deploymentID] = &v1.Deployment{
			Id: deploymentID, Version: a.GetVersion(), AffectedApps: []string{a.GetId()},
			Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING,
		}
	}
}

// deleteApp removes an app and decommissions its instances, as the FSM does.
func (s *memStore) deleteApp(id, deploymentID string) {
	delete(s.apps, id)
	for _, i := range s.instances {
		if i.AppId == id {
			c := proto.Clone(i).(*v1.Instance)
			c.Goal = v1.Goal_GOAL_DECOMMISSIONED
			s.instances[c.Id] = c
		}
	}
	if deploymentID != "" {
		s.deployments[deploymentID] = &v1.Deployment{Id: deploymentID, AffectedApps: []string{id}, Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING}
	}
}

// harness runs the pure core against the fake master with a manual clock.
type harness struct {
	t      *testing.T
	now    time.Time
	cfg    Config
	store  *memStore
	mem    *Memory
	master *fakeMaster
	events []*v1.Event
	ids    int
	// dropCalls simulates a crash between commit and send.
	dropCalls bool
	sent      []*scheduler.Call
	// check, when set, runs after every decision (e.g. a capacity bound
	// that must hold at every moment).
	check func()
}

func newHarness(t *testing.T) *harness {
	h := &harness{
		t:      t,
		now:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		store:  newMemStore(),
		mem:    NewMemory(),
		master: newFakeMaster("berth"),
	}
	h.cfg = Config{Role: "berth", Principal: "berth", NewID: func() string {
		h.ids++
		return fmt.Sprintf("00000000-0000-0000-0000-%012d", h.ids)
	}}
	h.store.fid = "fw-1"
	return h
}

// decide runs one decision: commit the plan, then send the calls (unless a
// crash is simulated), checking Invariant 1 on every call sent.
func (h *harness) decide(in Input) Decision {
	h.t.Helper()
	st := NewState(h.store, h.mem)
	d := Decide(st, in, h.now, h.cfg)
	if d.Plan != nil {
		h.store.apply(d.Plan)
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
				i := h.store.instances[iid]
				if i == nil || resState(i) != v1.ReservationState_RESERVATION_STATE_PENDING || i.GetReservation().GetAgentId() != agentID {
					h.t.Fatalf("invariant 1: %s for %s on %s not committed as pending (%v)", op.Type, iid, agentID, i)
				}
			}
		case mesos.Offer_Operation_LAUNCH:
			for _, ti := range op.Launch.TaskInfos {
				found := false
				for _, i := range h.store.instances {
					if i.GetTask().GetId() == ti.TaskID.Value && i.GetTask().GetState() == stStaging {
						found = true
					}
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
				if i := h.store.instances[iid]; i != nil && hasBerth(i) && i.GetReservation().GetAgentId() == agentID && goalOf(i) != v1.Goal_GOAL_DECOMMISSIONED {
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
			if !isLiveState(t.state.String()) {
				continue
			}
			iid := tid[:strings.LastIndex(tid, "._app.")]
			if other, ok := perInstance[iid]; ok {
				h.t.Fatalf("invariant 2: instance %s has two live tasks %s and %s", iid, other, tid)
			}
			perInstance[iid] = tid
		}
	}
}

func (h *harness) tick() Decision { return h.decide(Tick{}) }

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
		h.offers()
		h.deliver()
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
	for _, id := range sortedKeys(h.store.instances) {
		i := h.store.instances[id]
		b.WriteString(fmt.Sprintf("%s|%v|%v|%s|%s;", i.Id, i.Goal, resState(i), i.GetTask().GetId(), i.GetTask().GetState()))
	}
	for _, d := range h.store.Deployments() {
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
	h.decide(Subscribed{FrameworkID: h.store.fid})
	h.deliver()
}

// instancesOf returns the app's instances, sorted by id.
func (h *harness) instancesOf(appID string) []*v1.Instance {
	var out []*v1.Instance
	for _, i := range h.store.Instances() {
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
