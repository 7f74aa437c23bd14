package scheduler

import (
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// indexedStore is the part of *fsm.Store that lets the driver keep its
// snapshot up to date instead of copying the whole store for each decision.
type indexedStore interface {
	// LastIndex is the Raft index of the last entry applied to the store.
	LastIndex() uint64
	Instance(id string) *v1.Instance
	Deployment(id string) *v1.Deployment
}

// snapshots keeps the driver's State between decisions. Copying every
// instance for each status update costs O(instances) per update, which
// with thousands of tasks makes placement and reconciliation quadratic. A
// snapshot is reused while the store has not changed (its Watch channel,
// taken before the snapshot, is open); after the driver's own commit it is
// brought up to date by re-reading only what the plan touched, provided
// that commit is the only entry applied since (the store's index moved by
// exactly one). Anything else (an API write, a snapshot restore, a Raft
// entry that skipped the FSM) takes a fresh snapshot.
type snapshots struct {
	store   Store
	st      *State
	watch   <-chan struct{}
	index   uint64
	indexed bool
}

// get returns a State of store's current content with mem as its memory.
func (c *snapshots) get(store Store, mem *Memory) *State {
	if c.st != nil && c.store == store && !closed(c.watch) {
		c.st.Mem = mem
		return c.st
	}
	c.store = store
	c.watch = store.Watch()
	is, ok := store.(indexedStore)
	c.indexed = ok
	if ok {
		c.index = is.LastIndex()
	}
	c.st = NewState(store, mem)
	return c.st
}

// committed updates the snapshot after plan was committed and applied to
// store, or drops it when other changes may have been applied too.
func (c *snapshots) committed(store Store, plan *v1.SchedulerPlanCommand) {
	is, ok := store.(indexedStore)
	if c.st == nil || !ok || !c.indexed || c.store != store {
		c.drop()
		return
	}
	// Watch first: anything applied after this closes watch, so the next
	// get takes a fresh snapshot.
	watch := store.Watch()
	if is.LastIndex() != c.index+1 {
		c.drop()
		return
	}
	st := c.st
	refresh := func(id string) {
		if cur := is.Instance(id); cur != nil {
			st.Instances[id] = cur
		} else {
			delete(st.Instances, id)
		}
	}
	for _, i := range plan.GetPutInstances() {
		refresh(i.GetId())
	}
	for _, id := range plan.GetDeleteInstances() {
		refresh(id)
	}
	refreshDeployment := func(id string) {
		if cur := is.Deployment(id); cur != nil {
			st.Deployments[id] = cur
		} else {
			delete(st.Deployments, id)
		}
	}
	for _, d := range plan.GetPutDeployments() {
		refreshDeployment(d.GetId())
	}
	for _, id := range plan.GetDeleteDeployments() {
		refreshDeployment(id)
	}
	st.changed()
	c.watch = watch
	c.index++
}

// drop forgets the snapshot: the next get takes a fresh one.
func (c *snapshots) drop() { c.st = nil }

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
