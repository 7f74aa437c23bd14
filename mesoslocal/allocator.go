package mesoslocal

import (
	"fmt"
	"sort"
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
			c.retryUpdates(now)
		}
		c.mu.Unlock()
	}
}

const maxOffersPerEvent = 1000

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
	made := map[*framework][]*offer{}
	n := len(fws)
	for i, a := range c.agentList {
		if !a.active || a.gone {
			continue
		}
		avail := a.available()
		if avail.empty() {
			continue
		}
		for j := 0; j < n && !avail.empty(); j++ {
			fw := fws[(i+c.allocTick+j)%n]
			for _, role := range fw.roles {
				if fw.suppressed[role] {
					continue
				}
				cand := avail.filter(func(r *mesos.Resource) bool {
					return allocatableTo(r, role) && (fw.refinement || len(r.Reservations) <= 1) && r.Revocable == nil
				})
				if cand.empty() || !minAllocatable(cand) || fw.isFiltered(a.id, role, cand, now) {
					continue
				}
				o := &offer{id: fmt.Sprintf("%s-O%d", c.masterID, c.nextOfferID), fw: fw, agent: a, role: role, res: cand, created: now}
				c.nextOfferID++
				c.offers[o.id] = o
				fw.offers[o.id] = o
				a.offers[o] = struct{}{}
				avail = avail.minus(cand...)
				made[fw] = append(made[fw], o)
			}
		}
	}
	for _, fw := range fws {
		offers := made[fw]
		if len(offers) == 0 {
			continue
		}
		// Large rounds are split so that no event exceeds mesos-go's 4 MiB
		// RecordIO frame limit.
		for len(offers) > 0 {
			n := min(len(offers), maxOffersPerEvent)
			ev := &scheduler.Event{Type: scheduler.Event_OFFERS, Offers: &scheduler.Event_Offers{Offers: make([]mesos.Offer, 0, n)}}
			for _, o := range offers[:n] {
				ev.Offers.Offers = append(ev.Offers.Offers, c.renderOffer(o))
			}
			c.sendEvent(fw, ev)
			offers = offers[n:]
		}
	}
}

func (fw *framework) isFiltered(agentID, role string, cand rset, now time.Time) bool {
	fs := fw.filters[agentID]
	if len(fs) == 0 {
		return false
	}
	kept := fs[:0]
	filtered := false
	for _, f := range fs {
		if now.After(f.until) {
			continue
		}
		kept = append(kept, f)
		if f.role == role && f.res.contains(cand) {
			filtered = true
		}
	}
	if len(kept) == 0 {
		delete(fw.filters, agentID)
	} else {
		fw.filters[agentID] = kept
	}
	return filtered
}

func (c *Cluster) renderOffer(o *offer) mesos.Offer {
	mo := mesos.Offer{
		ID:             mesos.OfferID{Value: o.id},
		FrameworkID:    mesos.FrameworkID{Value: o.fw.id},
		AgentID:        mesos.AgentID{Value: o.agent.id},
		Hostname:       o.agent.hostname,
		Resources:      render(o.res, o.fw.format(), o.role),
		AllocationInfo: &mesos.Resource_AllocationInfo{Role: proto.String(o.role)},
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
	for _, o := range fw.offers {
		if rescind {
			c.rescindOffer(o)
		} else {
			c.removeOffer(o)
		}
	}
}
