package scheduler

import (
	"fmt"
	"sort"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// fakeMaster is a small in-memory Mesos master for the harness: agents with
// unreserved resources, labelled reservations with persistent volumes, and
// command tasks. Tests drive it explicitly: it makes offers, applies ACCEPT
// operations with Mesos' checks (failing the test on a bad operation),
// answers KILL and RECONCILE with status updates the test delivers.
type fakeMaster struct {
	role      string
	agents    map[string]*fakeAgent
	order     []string
	offers    map[string]string // outstanding offer id → agent id
	nextOffer int
	nextUUID  int
	pending   []mesos.TaskStatus // status updates not yet delivered
	acked     map[string]int     // task id → acknowledgements
	errors    []string           // operations Mesos would refuse
	log       []string           // operations applied, for assertions
	launched  []mesos.TaskInfo
	dirty     bool // tasks launched since the last invariant check
}

type fakeAgent struct {
	id, host string
	attrs    []mesos.Attribute
	gone     bool // unreachable: makes no offers
	// draining agents make no offers (deactivated by DRAIN_AGENT).
	draining bool
	// unavailability is carried by its offers (scheduled maintenance).
	unavailability *mesos.Unavailability
	cpus           float64
	mem            float64
	disk           float64
	ports          []mesos.Value_Range
	res            map[string]*fakeReservation // by instance-id label
	tasks          map[string]*fakeTask
	// pools are resources reserved for a role without Berth labels (static
	// reservations, or an operator's dynamic ones).
	pools []*fakePool
}

// fakePool is a reservation for a role that Berth did not make.
type fakePool struct {
	role      string
	dynamic   bool // else static
	cpus, mem float64
	ports     []mesos.Value_Range
}

// reservationInfo is how the pool's reservation appears in offers.
func (p *fakePool) reservationInfo() mesos.Resource_ReservationInfo {
	typ := mesos.Resource_ReservationInfo_STATIC
	ri := mesos.Resource_ReservationInfo{Type: &typ, Role: strPtr(p.role)}
	if p.dynamic {
		typ = mesos.Resource_ReservationInfo_DYNAMIC
		ri.Principal = strPtr("ops")
		ri.Labels = &mesos.Labels{Labels: []mesos.Label{{Key: "owner", Value: strPtr("ops")}}}
	}
	return ri
}

// addPool reserves resources of an agent for a role without Berth labels.
func (a *fakeAgent) addPool(role string, dynamic bool, cpus, mem float64, portsFrom, portsTo uint64) {
	p := &fakePool{role: role, dynamic: dynamic, cpus: cpus, mem: mem}
	if portsTo >= portsFrom && portsTo > 0 {
		p.ports = []mesos.Value_Range{{Begin: portsFrom, End: portsTo}}
	}
	a.pools = append(a.pools, p)
}

type fakeReservation struct {
	fid, iid  string
	epoch     uint64 // berth_epoch label (0: none)
	cpus, mem float64
	disk      float64 // reserved disk not in volumes
	ports     []mesos.Value_Range
	volumes   map[string]fakeVolume // by persistence id
	usedBy    string                // task id using the reservation, if any
}

type fakeVolume struct {
	size float64
	path string
}

type fakeTask struct {
	id        string
	state     mesos.TaskState
	resv      string // instance-id label of the reservation used, "" if unreserved
	cpus, mem float64
	disk      float64
	ports     []mesos.Value_Range
	volumes   []string
	// pooled is what the task took from role pools, by pool index.
	pooled map[int]*fakePool
}

func newFakeMaster(role string) *fakeMaster {
	return &fakeMaster{role: role, agents: map[string]*fakeAgent{}, offers: map[string]string{}, acked: map[string]int{}}
}

func (m *fakeMaster) addAgent(id, host string, cpus, mem, disk float64, portsFrom, portsTo uint64, attrs map[string]string) *fakeAgent {
	a := &fakeAgent{
		id: id, host: host, cpus: cpus, mem: mem, disk: disk,
		ports: []mesos.Value_Range{{Begin: portsFrom, End: portsTo}},
		res:   map[string]*fakeReservation{}, tasks: map[string]*fakeTask{},
	}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a.attrs = append(a.attrs, mesos.Attribute{Name: k, Type: mesos.TEXT, Text: &mesos.Value_Text{Value: attrs[k]}})
	}
	m.agents[id] = a
	m.order = append(m.order, id)
	return a
}

func (m *fakeMaster) errorf(format string, args ...any) {
	m.errors = append(m.errors, fmt.Sprintf(format, args...))
}

// rescindAll drops outstanding offers (as on a framework failover).
func (m *fakeMaster) rescindAll() { m.offers = map[string]string{} }

// makeOffers returns one offer per reachable agent without an outstanding
// offer, carrying unreserved resources and unused labelled reservations in
// the new (RESERVATION_REFINEMENT) format.
func (m *fakeMaster) makeOffers() []mesos.Offer {
	busy := map[string]bool{}
	for _, a := range m.offers {
		busy[a] = true
	}
	var out []mesos.Offer
	for _, id := range m.order {
		a := m.agents[id]
		if a.gone || a.draining || busy[id] {
			continue
		}
		role := m.role
		var rs []mesos.Resource
		add := func(r mesos.Resource) {
			r.AllocationInfo = &mesos.Resource_AllocationInfo{Role: &role}
			rs = append(rs, r)
		}
		if a.cpus > epsilon {
			add(scalarResource(resCPUs, a.cpus, ""))
		}
		if a.mem > epsilon {
			add(scalarResource(resMem, a.mem, ""))
		}
		if a.disk > epsilon {
			add(scalarResource(resDisk, a.disk, ""))
		}
		if len(a.ports) > 0 {
			add(portsResource(a.ports, ""))
		}
		for _, p := range a.pools {
			ri := p.reservationInfo()
			if p.cpus > epsilon {
				add(reserved(scalarResource(resCPUs, p.cpus, ""), ri))
			}
			if p.mem > epsilon {
				add(reserved(scalarResource(resMem, p.mem, ""), ri))
			}
			if len(p.ports) > 0 {
				add(reserved(portsResource(p.ports, ""), ri))
			}
		}
		for _, iid := range sortedKeys(a.res) {
			r := a.res[iid]
			if r.usedBy != "" {
				continue
			}
			ri := reservationFor(m.role, "berth", r.fid, r.iid, r.epoch)
			if r.cpus > epsilon {
				add(reserved(scalarResource(resCPUs, r.cpus, ""), ri))
			}
			if r.mem > epsilon {
				add(reserved(scalarResource(resMem, r.mem, ""), ri))
			}
			if r.disk > epsilon {
				add(reserved(scalarResource(resDisk, r.disk, ""), ri))
			}
			if len(r.ports) > 0 {
				add(reserved(portsResource(r.ports, ""), ri))
			}
			for _, pid := range sortedKeys(r.volumes) {
				v := r.volumes[pid]
				add(volumeResource(v.size, "", ri, pid, v.path, "berth"))
			}
		}
		if len(rs) == 0 {
			continue
		}
		m.nextOffer++
		oid := fmt.Sprintf("O%d", m.nextOffer)
		m.offers[oid] = id
		out = append(out, mesos.Offer{
			ID: mesos.OfferID{Value: oid}, AgentID: mesos.AgentID{Value: id}, Hostname: a.host,
			Resources: rs, Attributes: a.attrs, AllocationInfo: &mesos.Resource_AllocationInfo{Role: &role},
			Unavailability: a.unavailability,
		})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// resLabels returns the framework and instance id labels of a reserved
// resource.
func resLabels(r *mesos.Resource) (fid, iid string, ok bool) {
	ri := currentReservation(r)
	if ri == nil {
		return "", "", false
	}
	fid, _ = labelValue(ri.Labels, LabelFrameworkID)
	iid, _ = labelValue(ri.Labels, LabelInstanceID)
	return fid, iid, true
}

// resBerthKey returns the framework id label of a reserved resource and
// the key of its berth: the instance id label, with "@<epoch>" when it
// carries an epoch label (one instance may hold berths of several epochs).
func resBerthKey(r *mesos.Resource) (fid, key string, ok bool) {
	fid, key, ok = resLabels(r)
	if ep := labelEpoch(currentReservation(r).GetLabels()); ok && ep > 0 && key != "" {
		key += "@" + epochLabel(ep)
	}
	return fid, key, ok
}

func rangesSize(rs []mesos.Value_Range) int {
	n := 0
	for _, r := range rs {
		n += int(r.End-r.Begin) + 1
	}
	return n
}

func subtractRanges(have, take []mesos.Value_Range) ([]mesos.Value_Range, bool) {
	out := normalizeRanges(have)
	for _, r := range take {
		for p := r.Begin; p <= r.End; p++ {
			if !rangesContain(out, p) {
				return have, false
			}
			out = removePort(out, p)
		}
	}
	return out, true
}

// handle applies one call, as the master would.
func (m *fakeMaster) handle(c *scheduler.Call) {
	switch c.Type {
	case scheduler.Call_ACCEPT:
		ids := c.Accept.OfferIDs
		if len(ids) != 1 {
			m.errorf("ACCEPT with %d offers", len(ids))
			return
		}
		agentID, ok := m.offers[ids[0].Value]
		if !ok {
			// Invalid offer: launches are dropped, other operations ignored.
			for _, op := range c.Accept.Operations {
				if op.Type == mesos.Offer_Operation_LAUNCH {
					for _, ti := range op.Launch.TaskInfos {
						m.status(ti.TaskID.Value, ti.AgentID.Value, mesos.TASK_DROPPED, mesos.SOURCE_MASTER, false)
					}
				}
			}
			return
		}
		delete(m.offers, ids[0].Value)
		a := m.agents[agentID]
		for _, op := range c.Accept.Operations {
			m.apply(a, op)
		}
	case scheduler.Call_DECLINE:
		for _, id := range c.Decline.OfferIDs {
			delete(m.offers, id.Value)
		}
	case scheduler.Call_KILL:
		tid := c.Kill.TaskID.Value
		for _, a := range m.agents {
			if t, ok := a.tasks[tid]; ok && isLiveState(t.state.String()) {
				if a.gone {
					return // an unreachable agent cannot kill
				}
				m.finish(a, t, mesos.TASK_KILLED)
				return
			}
		}
		m.log = append(m.log, "KILL "+tid)
	case scheduler.Call_RECONCILE:
		if len(c.Reconcile.Tasks) == 0 {
			for _, id := range m.order {
				a := m.agents[id]
				for _, tid := range sortedKeys(a.tasks) {
					if t := a.tasks[tid]; isLiveState(t.state.String()) {
						m.status(tid, id, t.state, mesos.SOURCE_MASTER, false)
					}
				}
			}
			return
		}
		for _, rt := range c.Reconcile.Tasks {
			found := false
			for _, a := range m.agents {
				if t, ok := a.tasks[rt.TaskID.Value]; ok {
					m.status(t.id, a.id, t.state, mesos.SOURCE_MASTER, false)
					found = true
				}
			}
			if !found {
				m.status(rt.TaskID.Value, rt.GetAgentID().GetValue(), mesos.TASK_GONE, mesos.SOURCE_MASTER, false)
			}
		}
	case scheduler.Call_ACKNOWLEDGE:
		m.acked[c.Acknowledge.TaskID.Value]++
	case scheduler.Call_REVIVE, scheduler.Call_SUPPRESS, scheduler.Call_DECLINE_INVERSE_OFFERS, scheduler.Call_ACCEPT_INVERSE_OFFERS:
	default:
		m.errorf("unexpected call %s", c.Type)
	}
}

func (m *fakeMaster) status(taskID, agentID string, st mesos.TaskState, src mesos.TaskStatus_Source, withUUID bool) {
	s := mesos.TaskStatus{TaskID: mesos.TaskID{Value: taskID}, State: &st, Source: &src,
		ContainerStatus: &mesos.ContainerStatus{ContainerID: &mesos.ContainerID{Value: fakeContainerID(taskID)}}}
	if agentID != "" {
		s.AgentID = &mesos.AgentID{Value: agentID}
	}
	if withUUID {
		m.nextUUID++
		s.UUID = []byte(fmt.Sprintf("uuid-%012d", m.nextUUID))
	}
	m.pending = append(m.pending, s)
}

// fakeContainerID is a task's container id ('.' is reserved in them).
func fakeContainerID(taskID string) string { return "ctr-" + strings.ReplaceAll(taskID, ".", "-") }

// finish ends a task and frees what it used.
func (m *fakeMaster) finish(a *fakeAgent, t *fakeTask, st mesos.TaskState) {
	t.state = st
	if t.resv != "" {
		if r := a.res[t.resv]; r != nil && r.usedBy == t.id {
			r.usedBy = ""
		}
	} else {
		a.cpus += t.cpus
		a.mem += t.mem
		a.disk += t.disk
		a.ports = normalizeRanges(append(a.ports, t.ports...))
	}
	for k, used := range t.pooled {
		p := a.pools[k]
		p.cpus += used.cpus
		p.mem += used.mem
		p.ports = normalizeRanges(append(p.ports, used.ports...))
	}
	t.pooled = nil
	m.status(t.id, a.id, st, mesos.SOURCE_EXECUTOR, true)
}

// partition makes an agent unreachable: its tasks become UNREACHABLE.
func (m *fakeMaster) partition(agentID string) {
	a := m.agents[agentID]
	a.gone = true
	for _, tid := range sortedKeys(a.tasks) {
		if t := a.tasks[tid]; isLiveState(t.state.String()) {
			t.state = mesos.TASK_UNREACHABLE
			m.status(tid, agentID, mesos.TASK_UNREACHABLE, mesos.SOURCE_MASTER, false)
		}
	}
}

// heal brings a partitioned agent back: its tasks report RUNNING again.
func (m *fakeMaster) heal(agentID string) {
	a := m.agents[agentID]
	a.gone = false
	for _, tid := range sortedKeys(a.tasks) {
		if t := a.tasks[tid]; t.state == mesos.TASK_UNREACHABLE {
			t.state = mesos.TASK_RUNNING
			m.status(tid, agentID, mesos.TASK_RUNNING, mesos.SOURCE_AGENT, true)
		}
	}
}

// markGone is the operator's MARK_AGENT_GONE: tasks GONE_BY_OPERATOR, the
// agent and its berths lost for good.
func (m *fakeMaster) markGone(agentID string) {
	a := m.agents[agentID]
	for _, tid := range sortedKeys(a.tasks) {
		if t := a.tasks[tid]; isLiveState(t.state.String()) {
			t.state = mesos.TASK_GONE_BY_OPERATOR
			m.status(tid, agentID, mesos.TASK_GONE_BY_OPERATOR, mesos.SOURCE_MASTER, false)
		}
	}
	a.res = map[string]*fakeReservation{}
}

// drain is the operator's DRAIN_AGENT: no more offers from the agent, its
// live tasks are killed with REASON_AGENT_DRAINING (TASK_GONE_BY_OPERATOR
// with mark_gone, whose berths are then lost).
func (m *fakeMaster) drain(agentID string, markGone bool) {
	a := m.agents[agentID]
	a.draining = true
	for _, tid := range sortedKeys(a.tasks) {
		t := a.tasks[tid]
		if !isLiveState(t.state.String()) {
			continue
		}
		st := mesos.TASK_KILLED
		if markGone {
			st = mesos.TASK_GONE_BY_OPERATOR
		}
		m.finish(a, t, st)
		m.pending[len(m.pending)-1].Reason = mesos.REASON_AGENT_DRAINING.Enum()
	}
	if markGone {
		a.res = map[string]*fakeReservation{}
	}
}

// crash makes a running task fail by itself.
func (m *fakeMaster) crash(taskID string) {
	for _, a := range m.agents {
		if t, ok := a.tasks[taskID]; ok && isLiveState(t.state.String()) {
			m.finish(a, t, mesos.TASK_FAILED)
			return
		}
	}
	m.errorf("crash: no live task %s", taskID)
}

func (m *fakeMaster) apply(a *fakeAgent, op mesos.Offer_Operation) {
	switch op.Type {
	case mesos.Offer_Operation_RESERVE:
		for _, r := range op.Reserve.Resources {
			fid, key, ok := resBerthKey(&r)
			if !ok || key == "" || fid == "" {
				m.errorf("RESERVE without labels: %v", r)
				continue
			}
			ri := currentReservation(&r)
			if ri.GetRole() != m.role || ri.GetType() != mesos.Resource_ReservationInfo_DYNAMIC {
				m.errorf("RESERVE with role %q type %v", ri.GetRole(), ri.GetType())
			}
			res := a.res[key]
			if res == nil {
				iid, _ := labelValue(ri.Labels, LabelInstanceID)
				res = &fakeReservation{fid: fid, iid: iid, epoch: labelEpoch(ri.Labels), volumes: map[string]fakeVolume{}}
				a.res[key] = res
			}
			switch r.Name {
			case resCPUs:
				if a.cpus+epsilon < scalarOf(&r) {
					m.errorf("RESERVE cpus %v > %v", scalarOf(&r), a.cpus)
				}
				a.cpus -= scalarOf(&r)
				res.cpus += scalarOf(&r)
			case resMem:
				a.mem -= scalarOf(&r)
				res.mem += scalarOf(&r)
			case resDisk:
				if a.disk+epsilon < scalarOf(&r) {
					m.errorf("RESERVE disk %v > %v", scalarOf(&r), a.disk)
				}
				a.disk -= scalarOf(&r)
				res.disk += scalarOf(&r)
			case resPorts:
				rest, ok := subtractRanges(a.ports, r.Ranges.Range)
				if !ok {
					m.errorf("RESERVE ports %v not free", r.Ranges.Range)
				}
				a.ports = rest
				res.ports = normalizeRanges(append(res.ports, r.Ranges.Range...))
			}
			m.log = append(m.log, "RESERVE "+r.Name+" "+key)
		}
	case mesos.Offer_Operation_CREATE:
		for _, r := range op.Create.Volumes {
			_, iid, _ := resBerthKey(&r)
			res := a.res[iid]
			if res == nil || r.Disk == nil || r.Disk.Persistence == nil || r.Disk.Volume == nil {
				m.errorf("CREATE on unreserved disk or without volume: %v", r)
				continue
			}
			pid := r.Disk.Persistence.ID
			for _, other := range a.res {
				if _, dup := other.volumes[pid]; dup {
					m.errorf("CREATE duplicate persistence id %s", pid)
				}
			}
			if res.disk+epsilon < scalarOf(&r) {
				m.errorf("CREATE %s: %v MiB > reserved %v", pid, scalarOf(&r), res.disk)
			}
			res.disk -= scalarOf(&r)
			res.volumes[pid] = fakeVolume{size: scalarOf(&r), path: r.Disk.Volume.ContainerPath}
			m.log = append(m.log, "CREATE "+pid)
		}
	case mesos.Offer_Operation_DESTROY:
		for _, r := range op.Destroy.Volumes {
			_, iid, _ := resBerthKey(&r)
			res := a.res[iid]
			pid := r.Disk.GetPersistence().GetID()
			if res == nil || res.usedBy != "" {
				m.errorf("DESTROY %s: missing or in use", pid)
				continue
			}
			v, ok := res.volumes[pid]
			if !ok {
				m.errorf("DESTROY %s: no such volume", pid)
				continue
			}
			delete(res.volumes, pid)
			res.disk += v.size
			m.log = append(m.log, "DESTROY "+pid)
		}
	case mesos.Offer_Operation_UNRESERVE:
		for _, r := range op.Unreserve.Resources {
			_, iid, _ := resBerthKey(&r)
			res := a.res[iid]
			if res == nil || res.usedBy != "" {
				m.errorf("UNRESERVE %s: missing or in use", iid)
				continue
			}
			if r.Disk != nil && r.Disk.Persistence != nil {
				m.errorf("UNRESERVE of a volume %s (destroy first)", r.Disk.Persistence.ID)
				continue
			}
			switch r.Name {
			case resCPUs:
				res.cpus -= scalarOf(&r)
				a.cpus += scalarOf(&r)
			case resMem:
				res.mem -= scalarOf(&r)
				a.mem += scalarOf(&r)
			case resDisk:
				res.disk -= scalarOf(&r)
				a.disk += scalarOf(&r)
			case resPorts:
				rest, ok := subtractRanges(res.ports, r.Ranges.Range)
				if !ok {
					m.errorf("UNRESERVE ports %v not reserved", r.Ranges.Range)
				}
				res.ports = rest
				a.ports = normalizeRanges(append(a.ports, r.Ranges.Range...))
			}
			m.log = append(m.log, "UNRESERVE "+r.Name+" "+iid)
			if res.cpus < epsilon && res.mem < epsilon && res.disk < epsilon && len(res.ports) == 0 && len(res.volumes) == 0 {
				delete(a.res, iid)
			}
		}
	case mesos.Offer_Operation_LAUNCH:
		for _, ti := range op.Launch.TaskInfos {
			m.launch(a, ti)
		}
	default:
		m.errorf("unexpected operation %s", op.Type)
	}
}

func (m *fakeMaster) launch(a *fakeAgent, ti mesos.TaskInfo) {
	tid := ti.TaskID.Value
	if _, dup := a.tasks[tid]; dup {
		m.errorf("LAUNCH duplicate task id %s", tid)
		return
	}
	if ti.Command == nil {
		m.errorf("LAUNCH %s without command", tid)
	}
	t := &fakeTask{id: tid, state: mesos.TASK_RUNNING}
	for i := range ti.Resources {
		r := &ti.Resources[i]
		if isUnreserved(r) {
			switch r.Name {
			case resCPUs:
				t.cpus += scalarOf(r)
			case resMem:
				t.mem += scalarOf(r)
			case resDisk:
				t.disk += scalarOf(r)
			case resPorts:
				t.ports = append(t.ports, r.Ranges.Range...)
			}
			continue
		}
		_, iid, _ := resBerthKey(r)
		if iid == "" {
			m.takeFromPool(a, t, r)
			continue
		}
		if t.resv != "" && t.resv != iid {
			m.errorf("LAUNCH %s on two reservations", tid)
		}
		t.resv = iid
		if r.Disk != nil && r.Disk.Persistence != nil {
			t.volumes = append(t.volumes, r.Disk.Persistence.ID)
		}
	}
	if t.resv != "" {
		res := a.res[t.resv]
		if res == nil {
			m.errorf("LAUNCH %s on missing reservation %s", tid, t.resv)
			m.status(tid, a.id, mesos.TASK_ERROR, mesos.SOURCE_MASTER, false)
			return
		}
		if res.usedBy != "" {
			// Invariant 2: a volume is attached to one live task at most.
			m.errorf("LAUNCH %s on reservation %s in use by %s", tid, t.resv, res.usedBy)
			return
		}
		for _, pid := range t.volumes {
			if _, ok := res.volumes[pid]; !ok {
				m.errorf("LAUNCH %s with missing volume %s", tid, pid)
			}
		}
		res.usedBy = tid
	} else {
		if a.cpus+epsilon < t.cpus || a.mem+epsilon < t.mem || a.disk+epsilon < t.disk {
			m.errorf("LAUNCH %s: resources exceed the free pool", tid)
			return
		}
		rest, ok := subtractRanges(a.ports, t.ports)
		if !ok {
			m.errorf("LAUNCH %s: ports %v not free", tid, t.ports)
			return
		}
		a.cpus -= t.cpus
		a.mem -= t.mem
		a.disk -= t.disk
		a.ports = rest
	}
	a.tasks[tid] = t
	m.dirty = true
	m.launched = append(m.launched, ti)
	m.log = append(m.log, "LAUNCH "+tid)
	m.status(tid, a.id, mesos.TASK_STARTING, mesos.SOURCE_EXECUTOR, true)
	m.status(tid, a.id, mesos.TASK_RUNNING, mesos.SOURCE_EXECUTOR, true)
}

// takeFromPool consumes a task resource reserved for a role without Berth
// labels from the matching pool of the agent, as the master checks that a
// task's resources are offered ones.
func (m *fakeMaster) takeFromPool(a *fakeAgent, t *fakeTask, r *mesos.Resource) {
	ri := currentReservation(r)
	for k, p := range a.pools {
		want := p.reservationInfo()
		if ri == nil || ri.GetRole() != p.role || ri.GetType() != want.GetType() || ri.GetPrincipal() != want.GetPrincipal() {
			continue
		}
		if t.pooled == nil {
			t.pooled = map[int]*fakePool{}
		}
		used := t.pooled[k]
		if used == nil {
			used = &fakePool{}
			t.pooled[k] = used
		}
		switch r.Name {
		case resCPUs:
			if p.cpus+epsilon < scalarOf(r) {
				m.errorf("LAUNCH %s: cpus %v > reserved %v for %s", t.id, scalarOf(r), p.cpus, p.role)
			}
			p.cpus -= scalarOf(r)
			used.cpus += scalarOf(r)
		case resMem:
			if p.mem+epsilon < scalarOf(r) {
				m.errorf("LAUNCH %s: mem %v > reserved %v for %s", t.id, scalarOf(r), p.mem, p.role)
			}
			p.mem -= scalarOf(r)
			used.mem += scalarOf(r)
		case resPorts:
			rest, ok := subtractRanges(p.ports, r.Ranges.Range)
			if !ok {
				m.errorf("LAUNCH %s: ports %v not reserved for %s", t.id, r.Ranges.Range, p.role)
			}
			p.ports = rest
			used.ports = append(used.ports, r.Ranges.Range...)
		default:
			m.errorf("LAUNCH %s: %s not in the pool of %s", t.id, r.Name, p.role)
		}
		return
	}
	m.errorf("LAUNCH %s: reserved %s (role %q) matches no reservation on %s", t.id, r.Name, ri.GetRole(), a.id)
}

// liveTasks lists live task ids on all agents.
func (m *fakeMaster) liveTasks() []string {
	var out []string
	for _, id := range m.order {
		for _, tid := range sortedKeys(m.agents[id].tasks) {
			if isLiveState(m.agents[id].tasks[tid].state.String()) {
				out = append(out, tid)
			}
		}
	}
	return out
}

// reservations describes every reservation left on any agent.
func (m *fakeMaster) reservations() []string {
	var out []string
	for _, id := range m.order {
		for _, key := range sortedKeys(m.agents[id].res) {
			r := m.agents[id].res[key]
			out = append(out, fmt.Sprintf("%s@%s vols=%s", r.iid, id, strings.Join(sortedKeys(r.volumes), ",")))
		}
	}
	return out
}
