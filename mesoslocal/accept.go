package mesoslocal

import (
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

const maxRefuse = 365 * 24 * time.Hour

// accept handles ACCEPT (and DECLINE, an ACCEPT without operations).
func (c *Cluster) accept(fw *framework, offerIDs []mesos.OfferID, ops []mesos.Offer_Operation, filters *mesos.Filters) {
	offers, err := c.validateOffers(fw, offerIDs)
	if err != nil {
		// The whole call is dropped: live offers go back without a filter,
		// every task is reported lost, operations with an id get an error.
		for _, o := range offers {
			c.removeOffer(o)
		}
		c.log.Warn("dropping ACCEPT with invalid offers", "framework_id", fw.id, "stream_id", fw.streamID, "err", err)
		for _, op := range ops {
			for _, ti := range launchTasks(op) {
				c.masterUpdate(fw, mesos.TaskStatus{
					TaskID:  ti.TaskID,
					State:   fw.lostState(mesos.TASK_DROPPED).Enum(),
					Reason:  mesos.REASON_INVALID_OFFERS.Enum(),
					Message: proto.String(err.Error()),
					AgentID: &ti.AgentID,
				})
			}
			if op.ID != nil && op.Type != mesos.Offer_Operation_LAUNCH && op.Type != mesos.Offer_Operation_LAUNCH_GROUP {
				c.operationError(fw, op.ID, "", err.Error())
			}
		}
		c.kickAllocation()
		return
	}
	a, role := offers[0].agent, offers[0].role
	pool := newRindex(nil)
	for _, o := range offers {
		pool.add(o.res...)
		c.removeOffer(o)
	}
	original := pool.slice()
	if !a.active || a.gone {
		reason := mesos.REASON_AGENT_DISCONNECTED
		if a.gone {
			reason = mesos.REASON_AGENT_REMOVED
		}
		for _, op := range ops {
			for _, ti := range launchTasks(op) {
				c.masterUpdate(fw, mesos.TaskStatus{TaskID: ti.TaskID, State: fw.lostState(mesos.TASK_DROPPED).Enum(),
					Reason: reason.Enum(), Message: proto.String("Agent " + a.id + " is not available"), AgentID: &ti.AgentID})
			}
		}
		return
	}
	a.res.beginJournal()
	for i := range ops {
		c.applyOperation(fw, a, role, pool, &ops[i])
	}
	if a.res.endJournal() {
		c.checkpointAgent(a)
	}
	// Converted but unused resources come back at once; the rest is
	// filtered for refuse_seconds.
	left := pool.slice()
	converted := left.minus(original...)
	c.addFilter(fw, a, role, left.minus(converted...), filters)
}

// decline handles DECLINE: each of the framework's offers is released and
// filtered; unknown offers are ignored (Mesos' Master::decline).
func (c *Cluster) decline(fw *framework, ids []mesos.OfferID, filters *mesos.Filters) {
	for _, id := range ids {
		o := c.offers[id.Value]
		if o == nil || o.fw != fw {
			c.log.Debug("ignoring DECLINE of an unknown offer", "framework_id", fw.id, "offer_id", id.Value)
			continue
		}
		c.removeOffer(o)
		c.addFilter(fw, o.agent, o.role, o.res, filters)
	}
}

// addFilter refuses res on the agent for refuse_seconds, as Mesos'
// allocator does (recoverResources): unset, negative or invalid values mean
// the default (5s), zero means no filter, at most a year, and a filter
// lasts at least one allocation interval so that it holds for the next
// allocation (MESOS-4302).
func (c *Cluster) addFilter(fw *framework, a *agent, role string, refused rset, filters *mesos.Filters) {
	refuse := c.cfg.DefaultRefuse
	if filters != nil && filters.RefuseSeconds != nil {
		v := *filters.RefuseSeconds
		switch {
		case math.IsNaN(v), v < 0:
		case v >= maxRefuse.Seconds():
			refuse = maxRefuse
		default:
			refuse = time.Duration(v * float64(time.Second))
		}
	}
	if refuse > 0 && refuse < c.cfg.AllocationInterval {
		refuse = c.cfg.AllocationInterval
	}
	if refuse > 0 && !refused.empty() {
		fw.filters[a.id] = append(fw.filters[a.id], offerFilter{role: role, res: refused, until: time.Now().Add(refuse)})
	}
}

func launchTasks(op mesos.Offer_Operation) []mesos.TaskInfo {
	switch op.Type {
	case mesos.Offer_Operation_LAUNCH:
		return op.GetLaunch().GetTaskInfos()
	case mesos.Offer_Operation_LAUNCH_GROUP:
		return op.GetLaunchGroup().GetTaskGroup().Tasks
	}
	return nil
}

// validateOffers mirrors offer::validate. It returns the valid offers of
// this framework even on error, so they can be released.
func (c *Cluster) validateOffers(fw *framework, ids []mesos.OfferID) ([]*offer, error) {
	var offers []*offer
	var firstErr error
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	if len(ids) == 0 {
		fail(errors.New("No offers specified"))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id.Value] {
			fail(fmt.Errorf("Duplicate offer %s in the ACCEPT call", id.Value))
			continue
		}
		seen[id.Value] = true
		o := c.offers[id.Value]
		if o == nil {
			fail(fmt.Errorf("Offer %s is no longer valid", id.Value))
			continue
		}
		if o.fw != fw {
			fail(fmt.Errorf("Offer %s has invalid framework %s (expected %s)", id.Value, o.fw.id, fw.id))
			continue
		}
		if len(offers) > 0 && offers[0].agent != o.agent {
			fail(fmt.Errorf("Aggregated offers must belong to one single agent: offer %s is on agent %s, offer %s on agent %s", offers[0].id, offers[0].agent.id, o.id, o.agent.id))
		}
		if len(offers) > 0 && offers[0].role != o.role {
			fail(fmt.Errorf("Aggregated offers must be allocated to the same role: offer %s is for role %q, offer %s for role %q", offers[0].id, offers[0].role, o.id, o.role))
		}
		offers = append(offers, o)
	}
	return offers, firstErr
}

// operationError reports OPERATION_ERROR for a dropped operation with an id.
func (c *Cluster) operationError(fw *framework, id *mesos.OperationID, agentID, msg string) {
	st := mesos.OperationStatus{OperationID: id, State: mesos.OPERATION_ERROR, Message: proto.String(msg)}
	if agentID != "" {
		st.AgentID = &mesos.AgentID{Value: agentID}
	}
	c.sendEvent(fw, &scheduler.Event{Type: scheduler.Event_UPDATE_OPERATION_STATUS,
		UpdateOperationStatus: &scheduler.Event_UpdateOperationStatus{Status: st}})
}

// applyOperation applies one offer operation to the pool (and the agent),
// changing the pool in place. Invalid operations are dropped and change
// nothing.
func (c *Cluster) applyOperation(fw *framework, a *agent, role string, pool *rindex, op *mesos.Offer_Operation) {
	drop := func(err error) {
		c.log.Warn("dropping invalid operation", "op", op.Type.String(), "framework_id", fw.id, "stream_id", fw.streamID, "agent_id", a.id, "err", err)
		if op.ID != nil {
			c.operationError(fw, op.ID, a.id, err.Error())
		}
	}
	if op.ID != nil {
		switch op.Type {
		case mesos.Offer_Operation_LAUNCH, mesos.Offer_Operation_LAUNCH_GROUP:
			for _, ti := range launchTasks(*op) {
				c.masterUpdate(fw, mesos.TaskStatus{TaskID: ti.TaskID, State: mesos.TASK_ERROR.Enum(), Reason: mesos.REASON_TASK_INVALID.Enum(),
					Message: proto.String("Operation IDs are not supported on LAUNCH or LAUNCH_GROUP operations"), AgentID: &ti.AgentID})
			}
		default:
			drop(fmt.Errorf("operation feedback ('id' set) requires an agent with the RESOURCE_PROVIDER capability, which mesos-local agents lack"))
		}
		return
	}
	switch op.Type {
	case mesos.Offer_Operation_RESERVE:
		if op.Reserve == nil {
			drop(errors.New("Expecting 'reserve' to be present"))
			return
		}
		if err := c.reserve(fw, a, role, pool, op.Reserve); err != nil {
			drop(fmt.Errorf("Invalid RESERVE operation: %w", err))
		}
	case mesos.Offer_Operation_UNRESERVE:
		if op.Unreserve == nil {
			drop(errors.New("Expecting 'unreserve' to be present"))
			return
		}
		if err := c.unreserve(fw, a, role, pool, op.Unreserve.Resources); err != nil {
			drop(fmt.Errorf("Invalid UNRESERVE operation: %w", err))
		}
	case mesos.Offer_Operation_CREATE:
		if op.Create == nil {
			drop(errors.New("Expecting 'create' to be present"))
			return
		}
		if err := c.create(fw, a, role, pool, op.Create.Volumes); err != nil {
			drop(fmt.Errorf("Invalid CREATE operation: %w", err))
		}
	case mesos.Offer_Operation_DESTROY:
		if op.Destroy == nil {
			drop(errors.New("Expecting 'destroy' to be present"))
			return
		}
		if err := c.destroy(fw, a, role, pool, op.Destroy.Volumes); err != nil {
			drop(fmt.Errorf("Invalid DESTROY operation: %w", err))
		}
	case mesos.Offer_Operation_LAUNCH:
		if op.Launch == nil {
			drop(errors.New("Expecting 'launch' to be present"))
			return
		}
		c.launch(fw, a, role, pool, op.Launch.TaskInfos)
	case mesos.Offer_Operation_LAUNCH_GROUP:
		if op.LaunchGroup == nil {
			drop(errors.New("Expecting 'launch_group' to be present"))
			return
		}
		c.launchGroup(fw, a, role, pool, op.LaunchGroup)
	default:
		drop(fmt.Errorf("operation type %v is not supported by mesos-local", op.Type))
	}
}

// checkAllocation verifies that resources sent by the framework were
// allocated to the offer's role.
func checkAllocation(in []mesos.Resource, role string) error {
	for i, r := range in {
		if ai := r.AllocationInfo; ai != nil && ai.Role != nil && *ai.Role != role {
			return fmt.Errorf("resources[%d] (%s) is allocated to role %q, but the offer is for role %q", i, r.Name, *ai.Role, role)
		}
	}
	return nil
}

func (c *Cluster) checkPrincipal(fw *framework, what, principal string, set bool) error {
	if fp := fw.info.GetPrincipal(); fp != "" && set && principal != fp {
		return fmt.Errorf("%s principal %q does not match the framework's principal %q", what, principal, fp)
	}
	return nil
}

func (c *Cluster) reserve(fw *framework, a *agent, role string, pool *rindex, op *mesos.Offer_Operation_Reserve) error {
	if len(op.Source) > 0 {
		return errors.New("'reserve.source' (reservation updates) is not supported")
	}
	if len(op.Resources) == 0 {
		return errors.New("no resources to reserve")
	}
	if err := checkAllocation(op.Resources, role); err != nil {
		return err
	}
	res, err := canonResources(op.Resources)
	if err != nil {
		return err
	}
	var source rset
	for i := range res {
		r := &res[i]
		n := len(r.Reservations)
		if n == 0 {
			return fmt.Errorf("resources[%d] (%s) has no reservation", i, r.Name)
		}
		ri := r.Reservations[n-1]
		if ri.GetType() != mesos.Resource_ReservationInfo_DYNAMIC {
			return fmt.Errorf("resources[%d] (%s): a RESERVE must add a DYNAMIC reservation", i, r.Name)
		}
		if ri.GetRole() != role && !(isSubrole(ri.GetRole(), role)) {
			return fmt.Errorf("resources[%d] (%s): reservation role %q is not the offer's allocation role %q (or a child of it)", i, r.Name, ri.GetRole(), role)
		}
		if n > 1 && !fw.refinement {
			return fmt.Errorf("resources[%d] (%s): refined reservations require the RESERVATION_REFINEMENT capability", i, r.Name)
		}
		if isVolume(r) {
			return fmt.Errorf("resources[%d]: persistent volume %q cannot be reserved", i, r.Disk.Persistence.ID)
		}
		if err := c.checkPrincipal(fw, "reservation", ri.GetPrincipal(), ri.Principal != nil); err != nil {
			return fmt.Errorf("resources[%d] (%s): %v", i, r.Name, err)
		}
		source = append(source, popReservation(*r))
	}
	if !pool.contains(source) {
		return fmt.Errorf("offered resources {%s} do not contain {%s}", pool, rset(nil).plus(source...))
	}
	a.res.subTotal(source...)
	a.res.addTotal(res...)
	c.recordOp("RESERVE", fw, a.id, nil, nil, res)
	pool.sub(source...)
	pool.add(res...)
	return nil
}

func (c *Cluster) unreserve(fw *framework, a *agent, role string, pool *rindex, in []mesos.Resource) error {
	if len(in) == 0 {
		return errors.New("no resources to unreserve")
	}
	if err := checkAllocation(in, role); err != nil {
		return err
	}
	res, err := canonResources(in)
	if err != nil {
		return err
	}
	var freed rset
	for i := range res {
		r := &res[i]
		if !isDynamic(r) {
			return fmt.Errorf("resources[%d] (%s) is not dynamically reserved", i, formatRes(*r))
		}
		if isVolume(r) {
			return fmt.Errorf("resources[%d]: persistent volume %q must be destroyed before its resources can be unreserved", i, r.Disk.Persistence.ID)
		}
		if !allocatableTo(r, role) {
			return fmt.Errorf("resources[%d] (%s) is reserved for another role than %q", i, formatRes(*r), role)
		}
		freed = append(freed, popReservation(*r))
	}
	if !pool.contains(res) {
		hint := ""
		for _, t := range a.res.totalSet() {
			if isVolume(&t) {
				for _, r := range res {
					if r.Name == "disk" && resKey(&r) == resKey(ptr(withoutVolume(t))) {
						hint = fmt.Sprintf(" (persistent volume %q still uses this reservation: destroy it first)", t.Disk.Persistence.ID)
					}
				}
			}
		}
		return fmt.Errorf("offered resources {%s} do not contain {%s}%s", pool, rset(nil).plus(res...), hint)
	}
	a.res.subTotal(res...)
	a.res.addTotal(freed...)
	c.recordOp("UNRESERVE", fw, a.id, nil, nil, res)
	pool.sub(res...)
	pool.add(freed...)
	return nil
}

func ptr[T any](v T) *T { return &v }

func (c *Cluster) create(fw *framework, a *agent, role string, pool *rindex, in []mesos.Resource) error {
	if len(in) == 0 {
		return errors.New("no volumes to create")
	}
	if err := checkAllocation(in, role); err != nil {
		return err
	}
	vols, err := canonResources(in)
	if err != nil {
		return err
	}
	var source rset
	ids := map[string]bool{}
	var pids []string
	for i := range vols {
		v := &vols[i]
		if !isVolume(v) {
			return fmt.Errorf("volumes[%d]: expecting 'disk.persistence' to be set", i)
		}
		p := v.Disk.Persistence
		if err := validateID("volumes["+fmt.Sprint(i)+"].disk.persistence.id", p.ID); err != nil {
			return err
		}
		if v.Disk.Volume == nil {
			return fmt.Errorf("volumes[%d] (%q): expecting 'disk.volume' to be set", i, p.ID)
		}
		if v.Disk.Volume.GetMode() != mesos.RW {
			return fmt.Errorf("volumes[%d] (%q): read-only persistent volumes are not supported (mode must be RW)", i, p.ID)
		}
		if v.Disk.Volume.HostPath != nil {
			return fmt.Errorf("volumes[%d] (%q): expecting 'disk.volume.host_path' to be unset", i, p.ID)
		}
		if v.Disk.Volume.ContainerPath == "" {
			return fmt.Errorf("volumes[%d] (%q): 'disk.volume.container_path' must not be empty", i, p.ID)
		}
		if len(v.Reservations) == 0 {
			return fmt.Errorf("volumes[%d] (%q): persistent volumes cannot be created from unreserved resources", i, p.ID)
		}
		if v.Revocable != nil {
			return fmt.Errorf("volumes[%d] (%q): persistent volumes cannot be created from revocable resources", i, p.ID)
		}
		if v.Shared != nil && !fw.shared {
			return fmt.Errorf("volumes[%d] (%q): shared volumes require the SHARED_RESOURCES capability", i, p.ID)
		}
		if !allocatableTo(v, role) {
			return fmt.Errorf("volumes[%d] (%q) is reserved for another role than %q", i, p.ID, role)
		}
		if err := c.checkPrincipal(fw, "persistence", p.GetPrincipal(), p.Principal != nil); err != nil {
			return fmt.Errorf("volumes[%d] (%q): %v", i, p.ID, err)
		}
		vrole := reservationRole(v)
		if ids[volumeKey(vrole, p.ID)] || a.hasVolume(vrole, p.ID) {
			return fmt.Errorf("volumes[%d]: persistence ID %q is already in use for role %q on agent %s", i, p.ID, vrole, a.id)
		}
		ids[volumeKey(vrole, p.ID)] = true
		source = append(source, withoutVolume(*v))
		pids = append(pids, p.ID)
	}
	if !pool.contains(source) {
		return fmt.Errorf("offered resources {%s} do not contain {%s}", pool, rset(nil).plus(source...))
	}
	if !c.cfg.Simulate {
		for i := range vols {
			dir := c.volumePath(a, &vols[i])
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create volume directory %s: %v", dir, err)
			}
		}
	}
	a.res.subTotal(source...)
	a.res.addTotal(vols...)
	c.recordOp("CREATE", fw, a.id, nil, pids, vols)
	pool.sub(source...)
	pool.add(vols...)
	return nil
}

func (a *agent) hasVolume(role, id string) bool { return a.res.hasVolume(role, id) }

func (c *Cluster) destroy(fw *framework, a *agent, role string, pool *rindex, in []mesos.Resource) error {
	if len(in) == 0 {
		return errors.New("no volumes to destroy")
	}
	if err := checkAllocation(in, role); err != nil {
		return err
	}
	vols, err := canonResources(in)
	if err != nil {
		return err
	}
	var freed rset
	var pids []string
	for i := range vols {
		v := &vols[i]
		if !isVolume(v) {
			return fmt.Errorf("volumes[%d] (%s) is not a persistent volume", i, formatRes(*v))
		}
		id := v.Disk.Persistence.ID
		if !a.res.totalContains(v) {
			return fmt.Errorf("volumes[%d]: persistent volume %q does not exist on agent %s", i, id, a.id)
		}
		for t := range a.tasks {
			if t.res.contains(rset{*v}) {
				return fmt.Errorf("volumes[%d]: persistent volume %q is in use by task %s", i, id, t.info.TaskID.Value)
			}
		}
		freed = append(freed, withoutVolume(*v))
		pids = append(pids, id)
	}
	if !pool.contains(vols) {
		return fmt.Errorf("offered resources {%s} do not contain {%s}", pool, rset(nil).plus(vols...))
	}
	// Other offers holding these (shared) volumes are rescinded.
	for o := range a.offers {
		for _, v := range vols {
			if o.res.contains(rset{v}) {
				c.rescindOffer(o)
				break
			}
		}
	}
	if !c.cfg.Simulate {
		for i := range vols {
			// The data goes with the volume; only DESTROY deletes it.
			if err := os.RemoveAll(c.volumePath(a, &vols[i])); err != nil {
				c.log.Error("removing volume directory", "agent_id", a.id, "persistence_id", vols[i].Disk.Persistence.ID, "err", err)
			}
		}
	}
	a.res.subTotal(vols...)
	a.res.addTotal(freed...)
	c.recordOp("DESTROY", fw, a.id, nil, pids, vols)
	pool.sub(vols...)
	pool.add(freed...)
	return nil
}
