package mesoslocal

import (
	"container/heap"
	"sort"
	"strconv"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// allocationLoop makes offers every AllocationInterval (or sooner when
// kicked) and resends overdue status updates.
func (c *Cluster) allocationLoop() {
	t := time.NewTicker(c.cfg.AllocationInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-c.allocKick:
		}
		c.mu.Lock()
		if !c.closed {
			now := time.Now()
			c.allocate(now)
			c.makeInverseOffers(now)
			c.retryUpdates(now)
			c.checkDrained()
		}
		c.mu.Unlock()
	}
}

const maxOffersPerEvent = 1000

// maxOffersEventBytes bounds the encoded offers of one OFFERS event, well
// under mesos-go's 4 MiB frame limit (an offer alone larger than this
// still goes out, alone in its event).
const maxOffersEventBytes = 1 << 20

func newOffersEvent() *scheduler.Event {
	return &scheduler.Event{Type: scheduler.Event_OFFERS, Offers: &scheduler.Event_Offers{}}
}

// kickAllocation asks for an allocation round soon (coalesced).
func (c *Cluster) kickAllocation() {
	select {
	case c.allocKick <- struct{}{}:
	default:
	}
}

// minAllocatable is Mesos' default --min_allocatable_resources
// (cpus:0.01|mem:32): an offer must carry at least one of them.
func minAllocatable(s rset) bool {
	return s.scalar("cpus") >= 0.01 || s.scalar("mem") >= 32
}

// allocate offers every agent's available resources: one offer per agent
// and role, unreserved resources to one framework at a time (rotating),
// reserved ones only to frameworks in their role.
//
// A round only looks at agents that may have something to offer: those
// whose free resources changed since their last visit (Cluster.dirty),
// those whose refused resources' filter has expired (Cluster.wakes), or
// all of them after a change that concerns every agent (a framework
// subscribed, revived or changed its roles: Cluster.allDirty). Any other
// agent was visited before with nothing left that could be offered, and
// nothing that decides an offer has changed since, so a visit would make no
// offer: the offers are exactly those of a round over every agent.
func (c *Cluster) allocate(now time.Time) {
	var fws []*framework
	for _, fw := range c.frameworks {
		if fw.connected && fw.sub != nil {
			fws = append(fws, fw)
		}
	}
	if len(fws) == 0 {
		return
	}
	sort.Slice(fws, func(i, j int) bool { return fws[i].id < fws[j].id })
	c.allocTick++
	for len(c.wakes) > 0 && now.After(c.wakes[0].at) {
		w := heap.Pop(&c.wakes).(wake)
		if w.a.wakeAt.Equal(w.at) {
			w.a.wakeAt = time.Time{}
			c.markDirty(w.a)
		}
	}
	visit := c.dirty
	if c.allDirty {
		visit = c.agentList
	} else {
		sort.Slice(visit, func(i, j int) bool { return visit[i].listPos < visit[j].listPos })
	}
	for _, a := range c.dirty {
		a.dirty = false
	}
	c.dirty = nil
	c.allDirty = false
	made := map[*framework][]*offer{}
	n := len(fws)
	for _, a := range visit {
		i := a.listPos
		if !a.active || a.gone || a.deactivated || !a.res.hasFree() {
			continue
		}
		avail := a.res.free()
		for j := 0; j < n && !avail.empty(); j++ {
			fw := fws[(i+c.allocTick+j)%n]
			for _, role := range fw.roles {
				if fw.suppressed[role] {
					continue
				}
				// avail holds one entry per identity, so avail − cand is
				// what the filter leaves out.
				cand, rest := avail.split(func(r *mesos.Resource) bool {
					return allocatableTo(r, role) && (fw.refinement || len(r.Reservations) <= 1) && r.Revocable == nil
				})
				if cand.empty() || !minAllocatable(cand) {
					continue
				}
				if filtered, until := fw.isFiltered(a.id, role, cand, now); filtered {
					c.wakeAfter(a, until)
					continue
				}
				o := &offer{id: c.masterID + "-O" + strconv.Itoa(c.nextOfferID), fw: fw, agent: a, role: role, res: cand, created: now}
				c.nextOfferID++
				c.offers[o.id] = o
				fw.offers[o.id] = o
				a.offers[o] = struct{}{}
				a.res.use(cand...)
				avail = rest
				made[fw] = append(made[fw], o)
				c.count(frameworkKey(fw)+"offers/sent", 1)
			}
		}
	}
	for _, fw := range fws {
		offers := made[fw]
		if len(offers) == 0 {
			continue
		}
		// Large rounds are split so that no event exceeds mesos-go's 4 MiB
		// RecordIO frame limit: by count, and by size, since an agent's
		// offer carries every reservation and volume on it (1,000 offers of
		// 10 labelled berths each are about 15 MiB).
		ev := newOffersEvent()
		size := 0
		for _, o := range offers {
			mo := c.renderOffer(o)
			n := mo.Size()
			if len(ev.Offers.Offers) > 0 && (len(ev.Offers.Offers) == maxOffersPerEvent || size+n > maxOffersEventBytes) {
				c.sendEvent(fw, ev)
				ev, size = newOffersEvent(), 0
			}
			ev.Offers.Offers = append(ev.Offers.Offers, mo)
			size += n
		}
		c.sendEvent(fw, ev)
	}
	if c.afterAllocate != nil {
		c.afterAllocate(now, fws)
	}
}

// markDirty queues an agent whose free resources changed for the next
// allocation round.
func (c *Cluster) markDirty(a *agent) {
	if !a.dirty {
		a.dirty = true
		c.dirty = append(c.dirty, a)
	}
}

// markAllDirty makes the next allocation round look at every agent.
func (c *Cluster) markAllDirty() { c.allDirty = true }

// wakeAfter makes the first allocation round after t look at the agent
// again: a filter that refused its resources ends at t.
func (c *Cluster) wakeAfter(a *agent, t time.Time) {
	if !a.wakeAt.IsZero() && !t.Before(a.wakeAt) {
		return
	}
	a.wakeAt = t
	heap.Push(&c.wakes, wake{at: t, a: a})
}

type wake struct {
	at time.Time
	a  *agent
}

// wakeQueue is a min-heap of wakes by time. An entry whose time is no
// longer its agent's wakeAt is stale and ignored.
type wakeQueue []wake

func (q wakeQueue) Len() int           { return len(q) }
func (q wakeQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q wakeQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *wakeQueue) Push(x any)        { *q = append(*q, x.(wake)) }
func (q *wakeQueue) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = wake{}
	*q = old[:len(old)-1]
	return w
}

// isFiltered reports whether a live filter of the framework refuses cand
// for role on the agent, and then until when the earliest of those
// filters lasts. Expired filters are dropped.
func (fw *framework) isFiltered(agentID, role string, cand rset, now time.Time) (bool, time.Time) {
	fs := fw.filters[agentID]
	if len(fs) == 0 {
		return false, time.Time{}
	}
	kept := fs[:0]
	filtered := false
	var until time.Time
	for _, f := range fs {
		if now.After(f.until) {
			continue
		}
		kept = append(kept, f)
		if f.role == role && f.res.contains(cand) {
			if !filtered || f.until.Before(until) {
				until = f.until
			}
			filtered = true
		}
	}
	clear(fs[len(kept):])
	if len(kept) == 0 {
		delete(fw.filters, agentID)
	} else {
		fw.filters[agentID] = kept
	}
	return filtered, until
}

func (c *Cluster) renderOffer(o *offer) mesos.Offer {
	mo := mesos.Offer{
		ID:             mesos.OfferID{Value: o.id},
		FrameworkID:    mesos.FrameworkID{Value: o.fw.id},
		AgentID:        mesos.AgentID{Value: o.agent.id},
		Hostname:       o.agent.hostname,
		Resources:      render(o.res, o.fw.format(), o.role),
		AllocationInfo: &mesos.Resource_AllocationInfo{Role: proto.String(o.role)},
		URL:            c.agentURL(o.agent),
		Attributes:     o.agent.attrs,
		Unavailability: c.unavailability(o.agent),
	}
	seen := map[string]bool{}
	for t := range o.agent.tasks {
		if t.fwID == o.fw.id && !seen[t.executorID] {
			seen[t.executorID] = true
			mo.ExecutorIDs = append(mo.ExecutorIDs, mesos.ExecutorID{Value: t.executorID})
		}
	}
	sort.Slice(mo.ExecutorIDs, func(i, j int) bool { return mo.ExecutorIDs[i].Value < mo.ExecutorIDs[j].Value })
	return mo
}

// removeOffer drops an offer; its resources become available again.
func (c *Cluster) removeOffer(o *offer) {
	if _, ok := o.agent.offers[o]; ok {
		o.agent.res.release(o.res...)
		c.markDirty(o.agent)
	}
	delete(c.offers, o.id)
	delete(o.fw.offers, o.id)
	delete(o.agent.offers, o)
}

// rescindOffer drops an offer and tells its framework.
func (c *Cluster) rescindOffer(o *offer) {
	c.removeOffer(o)
	c.sendEvent(o.fw, &scheduler.Event{Type: scheduler.Event_RESCIND, Rescind: &scheduler.Event_Rescind{OfferID: mesos.OfferID{Value: o.id}}})
}

func (c *Cluster) removeFrameworkOffers(fw *framework, rescind bool) {
	c.rescindInverseOffers(func(io *inverseOffer) bool { return io.fw == fw }, rescind)
	for _, o := range fw.offers {
		if rescind {
			c.rescindOffer(o)
		} else {
			c.removeOffer(o)
		}
	}
}
