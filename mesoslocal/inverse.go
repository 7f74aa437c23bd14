package mesoslocal

import (
	"math"
	"sort"
	"strconv"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/allocator"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// Inverse offers (Mesos' hierarchical allocator, generateInverseOffers):
// a framework with resources offered or allocated on an agent whose
// machine is scheduled for maintenance (DRAINING) gets an inverse offer
// for that agent, at most one outstanding per (framework, agent). Its
// answer, ACCEPT_INVERSE_OFFERS or DECLINE_INVERSE_OFFERS, is advisory: it
// is recorded for GET_MAINTENANCE_STATUS and, through the filter it
// carries (default 5s), delays the next inverse offer. Outstanding ones
// are rescinded when the machine leaves the schedule or goes DOWN, or the
// agent goes away.

// inverseOffer is an outstanding inverse offer.
type inverseOffer struct {
	id    string
	fw    *framework
	agent *agent
}

func inverseKey(fwID, agentID string) string { return fwID + "/" + agentID }

// makeInverseOffers sends inverse offers for scheduled agents (c.mu held).
func (c *Cluster) makeInverseOffers(now time.Time) {
	if c.schedule == nil {
		return
	}
	made := map[*framework][]mesos.InverseOffer{}
	for _, a := range c.agentList {
		if a.gone || a.down || !a.active || a.deactivated {
			continue
		}
		w := c.window(a)
		if w == nil {
			continue
		}
		for _, fw := range c.sortedFrameworks() {
			key := inverseKey(fw.id, a.id)
			if !fw.connected || fw.sub == nil || c.inverseByKey[key] != nil || now.Before(c.inverseRefused[key]) || !c.usesAgent(fw, a) {
				continue
			}
			io := &inverseOffer{id: c.masterID + "-O" + strconv.Itoa(c.nextOfferID), fw: fw, agent: a}
			c.nextOfferID++
			c.inverse[io.id] = io
			c.inverseByKey[key] = io
			made[fw] = append(made[fw], mesos.InverseOffer{
				OfferID: mesos.OfferID{Value: io.id}, URL: c.agentURL(a), FrameworkID: mesos.FrameworkID{Value: fw.id},
				AgentID: &mesos.AgentID{Value: a.id}, Unavailability: w.Unavailability,
			})
		}
	}
	for fw, ios := range made {
		c.sendEvent(fw, &scheduler.Event{Type: scheduler.Event_INVERSE_OFFERS, InverseOffers: &scheduler.Event_InverseOffers{InverseOffers: ios}})
	}
}

// usesAgent is true when the framework has tasks alive or offers on the agent.
func (c *Cluster) usesAgent(fw *framework, a *agent) bool {
	for t := range a.tasks {
		if t.fwID == fw.id {
			return true
		}
	}
	for o := range a.offers {
		if o.fw == fw {
			return true
		}
	}
	return false
}

// answerInverseOffers handles ACCEPT_INVERSE_OFFERS and
// DECLINE_INVERSE_OFFERS: the answer is recorded, the inverse offer ends,
// and its filter delays the next one.
func (c *Cluster) answerInverseOffers(fw *framework, ids []mesos.OfferID, filters *mesos.Filters, accept bool) {
	status := allocator.InverseOfferStatus_DECLINE
	if accept {
		status = allocator.InverseOfferStatus_ACCEPT
	}
	now := time.Now()
	for _, id := range ids {
		io := c.inverse[id.Value]
		if io == nil || io.fw != fw {
			c.log.Debug("ignoring an answer to an unknown inverse offer", "framework_id", fw.id, "inverse_offer_id", id.Value)
			continue
		}
		c.dropInverseOffer(io, false)
		if c.inverseStatus[io.agent.id] == nil {
			c.inverseStatus[io.agent.id] = map[string]allocator.InverseOfferStatus{}
		}
		c.inverseStatus[io.agent.id][fw.id] = allocator.InverseOfferStatus{Status: status.Enum(), FrameworkID: mesos.FrameworkID{Value: fw.id}, Timestamp: mesos.TimeInfo{Nanoseconds: now.UnixNano()}}
		refuse := c.cfg.DefaultRefuse
		if filters != nil && filters.RefuseSeconds != nil && !math.IsNaN(*filters.RefuseSeconds) && *filters.RefuseSeconds >= 0 {
			refuse = time.Duration(min(*filters.RefuseSeconds, maxRefuse.Seconds()) * float64(time.Second))
		}
		c.inverseRefused[inverseKey(fw.id, io.agent.id)] = now.Add(max(refuse, c.cfg.AllocationInterval))
	}
}

// dropInverseOffer ends an inverse offer, telling its framework when
// rescind is set.
func (c *Cluster) dropInverseOffer(io *inverseOffer, rescind bool) {
	delete(c.inverse, io.id)
	delete(c.inverseByKey, inverseKey(io.fw.id, io.agent.id))
	if rescind {
		c.sendEvent(io.fw, &scheduler.Event{Type: scheduler.Event_RESCIND_INVERSE_OFFER,
			RescindInverseOffer: &scheduler.Event_RescindInverseOffer{InverseOfferID: mesos.OfferID{Value: io.id}}})
	}
}

// rescindInverseOffers ends the outstanding inverse offers that match.
func (c *Cluster) rescindInverseOffers(match func(*inverseOffer) bool, rescind bool) {
	ids := make([]string, 0, len(c.inverse))
	for id, io := range c.inverse {
		if match(io) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		c.dropInverseOffer(c.inverse[id], rescind)
	}
}

// inverseStatuses are the recorded answers of frameworks about an agent,
// for GET_MAINTENANCE_STATUS.
func (c *Cluster) inverseStatuses(m mesos.MachineID) []allocator.InverseOfferStatus {
	var out []allocator.InverseOfferStatus
	for _, a := range c.agentList {
		if machineKey(c.machineOf(a)) != machineKey(m) {
			continue
		}
		ids := make([]string, 0, len(c.inverseStatus[a.id]))
		for id := range c.inverseStatus[a.id] {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			out = append(out, c.inverseStatus[a.id][id])
		}
	}
	return out
}
