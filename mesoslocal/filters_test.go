package mesoslocal

import (
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// allocRound is the number of allocation rounds that have started.
func (c *Cluster) allocRound() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.allocTick
}

// awaitRoundsAfter waits until n more allocation rounds have run than had
// started at from. A round counts itself and runs entirely under the master
// lock, so reading from+n (under the lock) means round from+n is complete.
func (c *Cluster) awaitRoundsAfter(t *testing.T, from, n int) {
	t.Helper()
	eventually(t, "allocation rounds", func() bool { return c.allocRound() >= from+n })
}

// outstandingOffers is the number of offers the framework holds.
func (c *Cluster) outstandingOffers(fwID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frameworks[fwID].offers)
}

func (c *Cluster) frameworkConnected(fwID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	fw := c.frameworks[fwID]
	return fw != nil && fw.connected
}

// TestDisconnectClearsFilters: a framework whose stream breaks is
// deactivated, and deactivation drops its offer filters (Mesos'
// Master::deactivate → allocator deactivateFramework clears offerFilters),
// so after resubscribing it is offered what it had declined before.
func TestDisconnectClearsFilters(t *testing.T) {
	c := simCluster(t, nil)
	info := frameworkInfo("*")
	a := subscribe(t, c, info)
	o := a.awaitOffer("first", nil)
	a.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(time.Hour)))
	a.close()
	eventually(t, "framework disconnected", func() bool { return !c.frameworkConnected(a.fwID) })

	info.ID = &mesos.FrameworkID{Value: a.fwID}
	b := subscribe(t, c, info)
	if b.fwID != a.fwID {
		t.Fatalf("resubscribed as %s, want %s", b.fwID, a.fwID)
	}
	b.awaitOffer("the declined agent after resubscribing", func(x mesos.Offer) bool { return x.AgentID == o.AgentID })
}

// TestFailoverKeepsFilters: a SUBSCRIBE that takes over a connected
// framework does not deactivate it (Master::_failoverFramework), so its
// filters stay.
func TestFailoverKeepsFilters(t *testing.T) {
	c := simCluster(t, nil)
	info := frameworkInfo("*")
	a := subscribe(t, c, info)
	o := a.awaitOffer("first", nil)
	a.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(time.Hour)))

	info.ID = &mesos.FrameworkID{Value: a.fwID}
	b := subscribe(t, c, info)
	a.await("failover ERROR", func(e *scheduler.Event) bool { return e.Type == scheduler.Event_ERROR })
	from := c.allocRound()
	c.awaitRoundsAfter(t, from, 3)
	if n := c.outstandingOffers(b.fwID); n != 0 {
		t.Fatalf("%d offers after failover despite the 1h filter", n)
	}
	b.mustCall(calls.Revive())
	b.awaitOffer("after REVIVE", nil)
}

// TestNegativeRefuseSecondsUsesDefault: Mesos' allocator (recoverResources)
// replaces a negative refuse_seconds with the default filter, it does not
// drop the filter.
func TestNegativeRefuseSecondsUsesDefault(t *testing.T) {
	c := simCluster(t, func(cfg *Config) { cfg.DefaultRefuse = time.Hour })
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("first", nil)
	s.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(-time.Second)))
	from := c.allocRound()
	c.awaitRoundsAfter(t, from, 3)
	if n := c.outstandingOffers(s.fwID); n != 0 {
		t.Fatalf("%d offers after a decline with refuse_seconds -1 (the default filter is 1h)", n)
	}
	s.mustCall(calls.Revive())
	s.awaitOffer("after REVIVE", nil)
}

// TestFilterOutlastsNextAllocation: a filter shorter than the allocation
// interval still holds for the next allocation (the allocator stretches
// it to one interval, MESOS-4302); it then lapses.
func TestFilterOutlastsNextAllocation(t *testing.T) {
	c := simCluster(t, func(cfg *Config) { cfg.AllocationInterval = 200 * time.Millisecond })
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("first", nil)
	s.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(time.Millisecond)))
	from := c.allocRound()
	c.awaitRoundsAfter(t, from, 1)
	if n := c.outstandingOffers(s.fwID); n != 0 {
		t.Fatalf("%d offers in the allocation right after a 1ms filter", n)
	}
	s.awaitOffer("once the filter lapsed", func(x mesos.Offer) bool { return x.AgentID == o.AgentID })
}
