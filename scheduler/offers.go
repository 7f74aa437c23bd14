package scheduler

import (
	"fmt"
	"sort"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// offerRound is the per-decision context of offer matching.
type offerRound struct {
	cands       []string        // instances to place on unreserved resources, in order
	candApps    []string        // the app of each of cands
	moves       map[string]bool // the cands that are moves' new berths
	left        map[string]int  // per app, its cands not placed yet (moves aside)
	first       int             // cands before it are all placed
	placed      map[string]bool
	constraints map[string][]appmodel.Placement
	badApps     map[string]bool
	badWhy      map[string][]string // why a bad app fits no offer
	// berthDue are the instances with a berth due to launch on it;
	// waiting the apps of every instance waiting for an offer (sorted).
	berthDue []string
	waiting  []string
	notes    offerNotes
	values   map[string]map[string]*placedValues // app → field → values
}

// onOffers matches offers: labelled resources are confirmed, relaunched on,
// or collected; unreserved resources take new placements; every offer is
// either accepted with all its operations in one ACCEPT or declined.
func (p *planner) onOffers(offers []mesos.Offer) {
	if p.st.FrameworkID == "" {
		// Cannot label anything without a committed framework id.
		ids := make([]mesos.OfferID, 0, len(offers))
		for i := range offers {
			ids = append(ids, offers[i].ID)
		}
		if len(ids) > 0 {
			p.call(calls.Decline(ids...).With(calls.RefuseSeconds(p.cfg.RefuseSeconds)))
		}
		return
	}
	p.noteOfferedAgents(offers)
	r := &offerRound{
		placed:      map[string]bool{},
		constraints: map[string][]appmodel.Placement{},
		badApps:     map[string]bool{},
		badWhy:      map[string][]string{},
		values:      map[string]map[string]*placedValues{},
	}
	for id, i := range p.instances() {
		if p.st.Apps[i.GetAppId()] == nil {
			continue
		}
		if p.movePlacing(i) != nil {
			r.cands = append(r.cands, id) // a new berth for a move, filled by its restore
			continue
		}
		if !p.launchDue(i) {
			continue
		}
		if hasBerth(i) {
			r.berthDue = append(r.berthDue, id)
		} else {
			r.cands = append(r.cands, id)
		}
	}
	r.waiting = p.waitingApps(append(append([]string(nil), r.cands...), r.berthDue...))
	sort.SliceStable(r.cands, func(x, y int) bool {
		ix, iy := p.inst(r.cands[x]), p.inst(r.cands[y])
		cx, cy := ix.GetCreatedAt().AsTime(), iy.GetCreatedAt().AsTime()
		if !cx.Equal(cy) {
			return cx.Before(cy)
		}
		return r.cands[x] < r.cands[y]
	})
	r.candApps = make([]string, len(r.cands))
	r.moves, r.left = map[string]bool{}, map[string]int{}
	for k, id := range r.cands {
		i := p.inst(id)
		r.candApps[k] = i.GetAppId()
		if p.movePlacing(i) != nil {
			r.moves[id] = true
		} else {
			r.left[i.GetAppId()]++
		}
	}

	refuse := p.refuseFor()
	var declines []mesos.OfferID
	type accept struct {
		id  mesos.OfferID
		ops []mesos.Offer_Operation
	}
	var accepts []accept
	for idx := range offers {
		o := &offers[idx]
		p.st.Mem.recordAgent(o)
		v := newOfferView(o, p.st.FrameworkID)
		r.notes.reset()
		ops := p.matchOffer(o, v, r)
		p.offerOutcomes = append(p.offerOutcomes, r.notes.outcomes(o, r.waiting)...)
		if len(ops) == 0 {
			declines = append(declines, o.ID)
			continue
		}
		accepts = append(accepts, accept{o.ID, ops})
	}
	// What an ACCEPT leaves unused is filtered too; while instances are still
	// waiting for a place (e.g. the per-offer cap was hit), keep that short
	// so the leftovers come back at the next allocation.
	acceptRefuse := refuse
	if len(r.placed) < len(r.cands) {
		acceptRefuse = time.Second
	}
	for _, a := range accepts {
		p.call(calls.Accept(calls.OfferOperations(a.ops).WithOffers(a.id)).With(calls.RefuseSeconds(acceptRefuse)))
	}
	if len(declines) > 0 {
		p.call(calls.Decline(declines...).With(calls.RefuseSeconds(refuse)))
	}
}

// refuseFor is the decline filter: the configured refuse time, shortened
// when an instance's backoff ends sooner so that its relaunch is not held
// up by our own filter.
func (p *planner) refuseFor() time.Duration {
	refuse := p.cfg.RefuseSeconds
	for _, i := range p.instances() {
		if goalOf(i) != v1.Goal_GOAL_RUNNING || taskLive(i.GetTask()) || i.GetLaunchNotBefore() == nil {
			continue
		}
		if left := i.GetLaunchNotBefore().AsTime().Sub(p.now); left > 0 && left < refuse {
			refuse = left
		}
	}
	if refuse < time.Second {
		refuse = time.Second
	}
	return refuse
}

// matchOffer returns the operations for one offer: garbage collection
// first, then launches on reservations, then new reservations/launches.
func (p *planner) matchOffer(o *mesos.Offer, v *offerView, r *offerRound) []mesos.Offer_Operation {
	var destroy, unreserve []mesos.Resource
	var launches []mesos.Offer_Operation
	garbage := func(rs ...mesos.Resource) {
		for _, res := range rs {
			if res.Disk != nil && res.Disk.Persistence != nil {
				destroy = append(destroy, res)
			}
			unreserve = append(unreserve, withoutVolume(res))
		}
	}
	nLaunch := 0
	collected := map[string]bool{}
	for _, g := range v.labelledGroups() {
		iid := g.instanceID
		i := p.inst(iid)
		if i != nil && keepsPrevious(i, g, o.AgentID.Value) {
			continue // the old berth of a move in progress: kept until the new task is healthy
		}
		if i == nil || !hasBerth(i) || i.GetReservation().GetAgentId() != o.AgentID.Value ||
			g.epoch != i.GetReservation().GetEpoch() {
			// Unknown instance, or one that is not pinned here any more or
			// has moved on to a newer berth: never launched on.
			garbage(g.all()...)
			collected[iid] = true
			continue
		}
		if goalOf(i) == v1.Goal_GOAL_DECOMMISSIONED {
			if taskLive(i.GetTask()) || p.copyRunning(iid) {
				continue // killed first; collected when offered again
			}
			// Write-ahead: the instance is forgotten in the plan that precedes
			// DESTROY + UNRESERVE.
			p.forget(iid)
			garbage(g.all()...)
			continue
		}
		known := map[string]bool{}
		for _, vol := range i.GetReservation().GetVolumes() {
			known[vol.GetPersistenceId()] = true
		}
		var mine []mesos.Resource
		mine = append(mine, g.plain...)
		missing := false
		for _, pid := range g.volumeIDs() {
			if known[pid] {
				mine = append(mine, g.volumes[pid])
			} else {
				garbage(g.volumes[pid])
			}
		}
		for pid := range known {
			if _, ok := g.volumes[pid]; !ok {
				missing = true
			}
		}
		if resState(i) == v1.ReservationState_RESERVATION_STATE_PENDING {
			e := p.edit(iid)
			e.Reservation.State = v1.ReservationState_RESERVATION_STATE_RESERVED
			e.Reservation.PendingUntil = nil
			p.changed[iid] = true
			i = e
		}
		a := p.st.Apps[i.GetAppId()]
		if op := p.activeOp(iid); op != nil {
			// The berth is held for a copy: it runs once the app's task is
			// gone and the whole berth is offered.
			if a != nil && !moveRecord(op) && op.GetState() == v1.BackupState_BACKUP_STATE_PENDING && !taskLive(i.GetTask()) && !missing && groupCovers(g, i.GetReservation()) {
				if launch, ok := p.launchCopy(op, a, i, o, mine); ok {
					launches = append(launches, launch)
					nLaunch++
				}
			}
			continue
		}
		if a == nil || !p.launchDue(i) || missing || !groupCovers(g, i.GetReservation()) {
			continue
		}
		if p.cfg.MaxInstancesPerOffer > 0 && nLaunch >= p.cfg.MaxInstancesPerOffer {
			continue
		}
		if op, ok := p.launch(a, i, o, mine, i.GetReservation().GetPorts()); ok {
			launches = append(launches, op)
			nLaunch++
			r.notes.use(a.GetId())
		}
	}
	// A berth due to launch whose resources this offer does not hold.
	for _, iid := range r.berthDue {
		i := p.inst(iid)
		if i.GetReservation().GetAgentId() != o.AgentID.Value || v.labelled[iid] == nil {
			r.notes.decline(i.GetAppId(), ReasonNoCorrespondingReservationFound)
		}
	}

	// New berths, oldest instance first. An instance that does not fit
	// the offer (resources, constraints) says that every other instance of
	// its app does not either: they ask for the same resources under the
	// same constraints, the offer's free resources only shrink, and an
	// app's placed values change only when one of its own is placed. So
	// the app's other instances are skipped for this offer (its reasons
	// are noted once, as often as they would be: per app), and once every
	// app waiting has not fitted, the offer is done. (A move's new berth
	// has conditions of its own: always tried.) Without this, each of 1,000
	// offers walked every instance still waiting, 3.4 s and 1.4 GB for
	// 10,000 waiting (BenchmarkOffersMostlyFull).
	var placeOps []mesos.Offer_Operation
	var failed map[string]bool
	for k := r.first; k < len(r.cands); k++ {
		iid := r.cands[k]
		if p.cfg.MaxInstancesPerOffer > 0 && nLaunch >= p.cfg.MaxInstancesPerOffer {
			break
		}
		if r.placed[iid] {
			if k == r.first {
				r.first++
			}
			continue
		}
		if collected[iid] || failed[r.candApps[k]] {
			continue // a berth is not re-made where its stale one is being collected
		}
		i := p.inst(iid)
		a := p.st.Apps[i.GetAppId()]
		ops, why, ok := p.place(a, i, o, v, r)
		if !ok {
			r.notes.decline(a.GetId(), why...)
			if r.moves[iid] {
				continue
			}
			if failed == nil {
				failed = map[string]bool{}
			}
			failed[a.GetId()] = true
			if len(failed) == len(r.left) && len(r.moves) == 0 {
				break // every app waiting has met an instance that does not fit
			}
			continue
		}
		r.notes.use(a.GetId())
		r.placed[iid] = true
		if r.moves[iid] {
			delete(r.moves, iid)
		} else if r.left[a.GetId()]--; r.left[a.GetId()] == 0 {
			delete(r.left, a.GetId())
		}
		if k == r.first {
			r.first++
		}
		placeOps = append(placeOps, ops...)
		nLaunch++
	}

	var ops []mesos.Offer_Operation
	if len(destroy) > 0 {
		ops = append(ops, calls.OpDestroy(destroy...))
	}
	if len(unreserve) > 0 {
		ops = append(ops, calls.OpUnreserve(unreserve...))
	}
	ops = append(ops, launches...)
	ops = append(ops, placeOps...)
	return ops
}

// groupCovers is true when an offer's labelled resources hold the whole
// reservation (cpus, mem, disk, gpus, ports), so a launch fits.
func groupCovers(g *labelledGroup, res *v1.Reservation) bool {
	if g.sum(resCPUs)+epsilon < res.GetCpus() || g.sum(resMem)+epsilon < res.GetMem() ||
		g.sum(resDisk)+epsilon < res.GetDisk() || g.sum(resGPUs)+epsilon < res.GetGpus() {
		return false
	}
	prs := g.portRanges()
	for _, port := range res.GetPorts() {
		if !rangesContain(prs, uint64(port)) {
			return false
		}
	}
	return true
}

// launch commits a new incarnation of an instance and returns its LAUNCH
// on the given resources.
func (p *planner) launch(a *v1.App, i *v1.Instance, o *mesos.Offer, resources []mesos.Resource, ports []uint32) (mesos.Offer_Operation, bool) {
	inc := i.GetIncarnation() + 1
	taskID := taskIDFor(i.GetId(), inc)
	ti, err := buildTaskInfo(a, taskID, o, resources, ports)
	if err != nil {
		p.event(&v1.Event{Type: "instance_changed_event", AppId: a.GetId(), InstanceId: i.GetId(), Message: "cannot launch: " + err.Error()})
		return mesos.Offer_Operation{}, false
	}
	e := p.edit(i.GetId())
	if e == nil { // created in this decision
		e = i
	}
	labelTask(&ti, e)
	p.startTask(e, a, taskID, o, ports, inc)
	return calls.OpLaunch(ti), true
}

// startTask records a new task on the instance: write-ahead of its LAUNCH.
func (p *planner) startTask(e *v1.Instance, a *v1.App, taskID string, o *mesos.Offer, ports []uint32, inc uint32) {
	e.Incarnation = inc
	e.AppVersion = a.GetVersion()
	e.Task = &v1.Task{
		Id:         taskID,
		AgentId:    o.AgentID.Value,
		Hostname:   o.Hostname,
		State:      stStaging,
		StagedAt:   p.ts(),
		Ports:      append([]uint32(nil), ports...),
		AppVersion: a.GetVersion(),
		UpdatedAt:  p.ts(),
		Sandbox:    sandboxPath(p.st.FrameworkID, taskID),
		AgentUrl:   agentURL(o),
	}
	p.changed[e.GetId()] = true
	p.event(&v1.Event{
		Type: "status_update_event", AppId: a.GetId(), InstanceId: e.GetId(), TaskId: taskID,
		TaskState: stStaging, AgentId: o.AgentID.Value, Host: o.Hostname,
	})
}

// place tries to put a new berth (resident) or task (stateless) for an
// instance on the offer's unreserved resources.
//
// When it does not fit, it returns why (the offer's reasons, see
// ReasonFunnel); none when the app cannot be placed anywhere (an event
// said why).
func (p *planner) place(a *v1.App, i *v1.Instance, o *mesos.Offer, v *offerView, r *offerRound) ([]mesos.Offer_Operation, []string, bool) {
	appID := a.GetId()
	if r.badApps[appID] {
		return nil, r.badWhy[appID], false
	}
	if msg := placementRefusal(a, p.cfg.Role); msg != "" {
		r.badApps[appID] = true
		r.badWhy[appID] = []string{ReasonUnfulfilledRole}
		p.event(&v1.Event{Type: "instance_changed_event", AppId: appID, InstanceId: i.GetId(), Message: "cannot place: " + msg})
		return nil, r.badWhy[appID], false
	}
	cs, ok := r.constraints[appID]
	if !ok {
		var err error
		cs, err = appmodel.Placements(a)
		if err != nil {
			r.badApps[appID] = true
			p.event(&v1.Event{Type: "instance_changed_event", AppId: appID, InstanceId: i.GetId(), Message: "cannot place: " + err.Error()})
			return nil, nil, false
		}
		r.constraints[appID] = cs
	}
	agent := agentInfoFromOffer(o)
	if len(cs) > 0 && !constraintsMet(cs, agent, p.placedValues(a, cs, r)) {
		return nil, []string{ReasonUnfulfilledConstraint}, false
	}
	if !appmodel.IsResident(a) {
		return p.placeTask(a, i, o, v, r, cs, agent)
	}
	if o.Unavailability != nil {
		return nil, []string{ReasonAgentMaintenance}, false // no new berth on a machine going into maintenance
	}
	move := p.movePlacing(i)
	if move != nil && !moveAllows(move, o) {
		return nil, []string{ReasonUnfulfilledConstraint}, false
	}
	if move != nil && p.cfg.BinaryURL == "" {
		p.failBackup(move.GetId(), "the scheduler has no URL of the berth binary to fetch (server --advertise-api)")
		return nil, nil, false
	}
	cpus, mem, gpus := appmodel.CPUs(a), appmodel.Mem(a), appmodel.GPUs(a)
	sandbox := appmodel.Disk(a)
	vols := appmodel.PersistentVolumes(a)
	disk := sandbox
	for _, vol := range vols {
		disk += vol.GetPersistent().GetSize()
	}
	f := &v.free
	if why := shortfalls(f, cpus, mem, disk, gpus, appmodel.Ports(a)); len(why) > 0 {
		return nil, why, false
	}
	ports, rest, _ := pickPorts(appmodel.Ports(a), f.ports)
	f.cpus -= cpus
	f.mem -= mem
	f.disk -= disk
	f.gpus -= gpus
	f.ports = rest

	alloc := v.allocRole
	if alloc == "" {
		alloc = p.cfg.Role
	}
	var base []mesos.Resource
	addScalar := func(name string, val float64) {
		if val > epsilon {
			base = append(base, scalarResource(name, val, alloc))
		}
	}
	addScalar(resCPUs, cpus)
	addScalar(resMem, mem)
	addScalar(resGPUs, gpus)
	if len(ports) > 0 {
		base = append(base, portsResource(portsToRanges(ports), alloc))
	}

	e := p.edit(i.GetId())
	if e == nil {
		e = i
	}
	inc := e.GetIncarnation() + 1
	taskID := taskIDFor(e.GetId(), inc)

	epoch := nextEpoch(e)
	ri := reservationFor(p.cfg.Role, p.cfg.Principal, p.st.FrameworkID, e.GetId(), epoch)
	var reserve, taskRes []mesos.Resource
	for _, b := range base {
		rr := reserved(b, ri)
		reserve = append(reserve, rr)
		taskRes = append(taskRes, rr)
	}
	if disk > epsilon {
		reserve = append(reserve, reserved(scalarResource(resDisk, disk, alloc), ri))
	}
	if sandbox > epsilon {
		taskRes = append(taskRes, reserved(scalarResource(resDisk, sandbox, alloc), ri))
	}
	var create []mesos.Resource
	var local []*v1.LocalVolume
	for _, vol := range vols {
		pid := persistenceIDFor(appID, vol.GetContainerPath(), p.cfg.NewID())
		vr := volumeResource(vol.GetPersistent().GetSize(), alloc, ri, pid, vol.GetContainerPath(), p.cfg.Principal)
		create = append(create, vr)
		taskRes = append(taskRes, vr)
		local = append(local, &v1.LocalVolume{
			PersistenceId: pid, InstanceId: e.GetId(), ContainerPath: vol.GetContainerPath(),
			SizeMib: vol.GetPersistent().GetSize(), AgentId: o.AgentID.Value,
		})
	}
	ti, err := buildTaskInfo(a, taskID, o, taskRes, ports)
	if err != nil {
		p.event(&v1.Event{Type: "instance_changed_event", AppId: appID, InstanceId: e.GetId(), Message: "cannot launch: " + err.Error()})
		r.badApps[appID] = true
		return nil, nil, false
	}
	e.Resident = true
	e.AgentAttributes = copyAttrs(agent.attributes)
	e.AgentNotice = maintenanceNotice(o.Unavailability)
	e.Reservation = &v1.Reservation{
		InstanceId:   e.GetId(),
		State:        v1.ReservationState_RESERVATION_STATE_PENDING,
		AgentId:      o.AgentID.Value,
		Hostname:     o.Hostname,
		PendingUntil: timestamppb.New(p.now.Add(p.cfg.ReservationTimeout)),
		Role:         p.cfg.Role,
		Principal:    p.cfg.Principal,
		Cpus:         cpus,
		Mem:          mem,
		Disk:         sandbox,
		Gpus:         gpus,
		Ports:        append([]uint32(nil), ports...),
		Volumes:      local,
		Epoch:        epoch,
	}
	if epoch > e.GetMaxEpoch() {
		e.MaxEpoch = epoch
	}
	ops := []mesos.Offer_Operation{calls.OpReserve(reserve...)}
	if len(create) > 0 {
		ops = append(ops, calls.OpCreate(create...))
	}
	p.notePlaced(a, cs, agent, r)
	if move != nil {
		// The new berth of a move: the restore fills it before the app's
		// task launches there.
		p.changed[e.GetId()] = true
		launch, ok := p.launchCopy(move, a, e, o, taskRes)
		if !ok {
			return nil, nil, false
		}
		p.setStep(e, stepRestore, fmt.Sprintf("new berth (epoch %d) on agent %s, restoring backup %s", epoch, o.AgentID.Value, move.GetSourceBackupId()))
		return append(ops, launch), nil, true
	}
	labelTask(&ti, e)
	p.startTask(e, a, taskID, o, ports, inc)
	return append(ops, calls.OpLaunch(ti)), nil, true
}

// placedValues counts, per constraint field, the values of the agents that
// hold the app's instances (berths or live tasks).
func (p *planner) placedValues(a *v1.App, cs []appmodel.Placement, r *offerRound) map[string]*placedValues {
	if m, ok := r.values[a.GetId()]; ok {
		return m
	}
	m := map[string]*placedValues{}
	for _, c := range cs {
		if m[c.Field] == nil {
			m[c.Field] = &placedValues{counts: map[string]int{}}
		}
	}
	for _, i := range p.each(p.appInstanceIDs(a.GetId())) {
		if i.GetAppId() != a.GetId() || goalOf(i) == v1.Goal_GOAL_DECOMMISSIONED {
			continue
		}
		agentID, host := "", ""
		switch {
		case hasBerth(i):
			agentID, host = i.GetReservation().GetAgentId(), i.GetReservation().GetHostname()
		case taskLive(i.GetTask()):
			agentID, host = i.GetTask().GetAgentId(), i.GetTask().GetHostname()
		default:
			continue
		}
		ai, ok := p.st.Mem.agents[agentID]
		if !ok {
			// Not offered since this leader started (e.g. a full agent): use
			// what was recorded at placement.
			ai = agentInfo{hostname: host, attributes: i.GetAgentAttributes()}
		}
		for field, pv := range m {
			if val, ok := ai.fieldValue(field); ok {
				pv.counts[val]++
			}
		}
	}
	r.values[a.GetId()] = m
	return m
}

func (p *planner) notePlaced(a *v1.App, cs []appmodel.Placement, agent agentInfo, r *offerRound) {
	if len(cs) == 0 {
		return
	}
	m := p.placedValues(a, cs, r)
	for field, pv := range m {
		if val, ok := agent.fieldValue(field); ok {
			pv.counts[val]++
		}
	}
}

func copyAttrs(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
