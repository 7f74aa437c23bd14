package scheduler

import (
	"errors"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// snapshots keeps the driver's State between decisions. Copying every
// instance for each status update costs O(instances) per update, which
// with thousands of tasks makes placement and reconciliation quadratic. A
// snapshot is reused while the store has not changed (its Watch channel,
// taken before the snapshot, is open); after the driver's own commit it is
// brought up to date by re-reading only what the plan touched, provided
// that commit is the only entry applied since (the store's index moved by
// exactly one). Anything else (an API write, a snapshot restore, a Raft
// entry that skipped the FSM) takes a fresh snapshot. The driver's periodic
// full pass drops the snapshot first, so that at least once per
// TickInterval (fullPassGap, when passes are slow) a decision reads the
// store as it is, whatever this cache may have missed.
//
// It also keeps what changed for the next scoped pass (see changes.go):
// the driver notes what its plans write, and a fresh read names what
// differs from the read before it.
type snapshots struct {
	store Store
	st    *State
	watch <-chan struct{}
	index uint64

	// last is the latest State read (kept when dropped): a fresh read is
	// compared with it. pending is what changed since the last pass took
	// it; unknown is set when a change could not be named (no read before,
	// or a swapped store), so the next pass must be the full one; covered
	// is set by full until the next read, which the full pass looks at
	// whole.
	last    *State
	pending Changes
	unknown bool
	covered bool
	// fresh is set while st is a read of the store as it is: read whole,
	// not updated in place since, and its watch open.
	fresh bool
}

// get returns a State of store's current content with mem as its memory.
func (c *snapshots) get(store Store, mem *Memory) (*State, error) {
	if c.st != nil && c.store == store && !closed(c.watch) {
		c.st.Mem = mem
		return c.st, nil
	}
	// Watch first: anything applied after the view closes watch, so the
	// next get takes a fresh snapshot.
	watch := store.Watch()
	view := store.Snapshot()
	st, err := NewState(view, mem)
	if err != nil {
		c.drop()
		return nil, err
	}
	switch {
	case c.covered:
	case c.last != nil && c.store == store:
		c.pending.add(diffStates(c.last, st))
	default:
		c.unknown = true
	}
	c.covered = false
	c.store, c.st, c.watch, c.index, c.last = store, st, watch, view.Index(), st
	c.fresh = true
	return st, nil
}

// note adds what a plan of the driver's writes to what changed.
func (c *snapshots) note(ch *Changes) { c.pending.add(ch) }

// take returns what changed since the last take, or ok false when that
// cannot be named (the next pass must be the full one).
func (c *snapshots) take() (ch *Changes, ok bool) {
	taken, unknown := c.pending, c.unknown
	c.pending, c.unknown = Changes{}, false
	return &taken, !unknown
}

// full drops the snapshot for the full pass: it reads the store afresh
// and looks at everything, so what changed so far is covered.
func (c *snapshots) full() {
	if c.st != nil && c.fresh && !closed(c.watch) {
		// Nothing was applied since the snapshot was read whole: a new
		// read would be the same (at 100,000 instances a read costs a
		// new leader a fifth of a second per full pass).
		c.pending, c.unknown, c.covered = Changes{}, false, false
		return
	}
	c.drop()
	c.pending, c.unknown, c.covered = Changes{}, false, true
}

// committed updates the snapshot after plan was committed and applied to
// store, or drops it when other changes may have been applied too.
func (c *snapshots) committed(store Store, plan *v1.SchedulerPlanCommand) {
	c.fresh = false // updated in place below, or dropped
	if c.st == nil || c.store != store || len(plan.GetPutBackups()) > 0 {
		// Backup records change rarely: read them afresh.
		c.drop()
		return
	}
	watch := store.Watch()
	view := store.Snapshot()
	if view.Index() != c.index+1 {
		c.drop()
		return
	}
	st := c.st
	var added, removed []string
	seen := map[string]bool{}
	refresh := func(id string) error {
		if seen[id] {
			return nil // the view's record is in place already
		}
		seen[id] = true
		cur, err := view.Instance(id)
		if err != nil {
			return err
		}
		_, had := st.Instances[id]
		switch {
		case cur != nil && !had:
			added = append(added, id)
		case cur == nil && had:
			removed = append(removed, id)
		}
		if cur != nil {
			st.Instances[id] = cur
		} else {
			delete(st.Instances, id)
		}
		return nil
	}
	refreshDeployment := func(id string) error {
		cur, err := view.Deployment(id)
		if err != nil {
			return err
		}
		if cur != nil {
			st.Deployments[id] = cur
		} else {
			delete(st.Deployments, id)
		}
		return nil
	}
	var errs []error
	for _, i := range plan.GetPutInstances() {
		errs = append(errs, refresh(i.GetId()))
	}
	for _, id := range plan.GetDeleteInstances() {
		errs = append(errs, refresh(id))
	}
	for _, d := range plan.GetPutDeployments() {
		errs = append(errs, refreshDeployment(d.GetId()))
	}
	for _, id := range plan.GetDeleteDeployments() {
		errs = append(errs, refreshDeployment(id))
	}
	if errors.Join(errs...) != nil {
		c.drop()
		return
	}
	// Lazy reads now go to the view that holds the refreshed instances.
	st.lookup, st.AppVersion = view.InstanceByTaskID, view.AppVersion
	st.updated(added, removed)
	c.watch = watch
	c.index = view.Index()
}

// drop forgets the snapshot: the next get takes a fresh one.
func (c *snapshots) drop() { c.st, c.fresh = nil, false }

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
