package mesoslocal

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

func simCluster(t *testing.T, mod func(*Config)) *Cluster {
	return startCluster(t, func(cfg *Config) {
		cfg.Simulate = true
		if mod != nil {
			mod(cfg)
		}
	})
}

// agentTotal is the agent's total resources (canonical form).
func (c *Cluster) agentTotal(id string) rset {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.agents[id].res.totalSet()
}

func (c *Cluster) firstAgent() string { return c.AgentIDs()[0] }

func TestOffersOnePerAgentAndRole(t *testing.T) {
	c := simCluster(t, func(cfg *Config) {
		cfg.Agents = 2
		cfg.AgentResources = "cpus:2;mem:1024;cpus(b):1;mem(b):64;disk:100"
	})
	s := subscribe(t, c, &mesos.FrameworkInfo{User: "u", Name: "multi", Roles: []string{"a", "b"},
		Capabilities: []mesos.FrameworkInfo_Capability{{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE}}})
	seen := map[string]bool{}
	for len(seen) < 4 {
		e := s.await("offers", func(e *scheduler.Event) bool { return e.Type == scheduler.Event_OFFERS })
		for _, o := range e.Offers.Offers {
			key := o.AgentID.Value + "/" + o.GetAllocationInfo().GetRole()
			if seen[key] {
				t.Fatalf("two offers for %s", key)
			}
			seen[key] = true
			if o.Hostname != "127.0.0.1" || o.FrameworkID.Value != s.fwID {
				t.Fatalf("offer fields: %+v", o)
			}
			for _, r := range o.Resources {
				if r.GetAllocationInfo().GetRole() != o.GetAllocationInfo().GetRole() {
					t.Fatalf("resource allocation role %q in offer for %q", r.GetAllocationInfo().GetRole(), o.GetAllocationInfo().GetRole())
				}
				if !unreservedRes(r) && (o.GetAllocationInfo().GetRole() != "b" || r.GetRole() != "b") {
					t.Fatalf("role %q offered %v", o.GetAllocationInfo().GetRole(), r)
				}
			}
		}
	}
}

func TestDeclineFilterReviveSuppress(t *testing.T) {
	c := simCluster(t, func(cfg *Config) { cfg.DefaultRefuse = 200 * time.Millisecond })
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("first", nil)
	s.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(time.Hour)))
	if e := s.tryAwait(func(e *scheduler.Event) bool { return e.Type == scheduler.Event_OFFERS }, 500*time.Millisecond); e != nil {
		t.Fatalf("offer despite a 1h filter: %v", e.Offers.Offers[0].ID)
	}
	s.mustCall(calls.Revive())
	o = s.awaitOffer("after REVIVE", nil)
	// Without refuse_seconds the default filter applies, then lapses.
	s.mustCall(calls.Decline(o.ID))
	start := time.Now()
	o = s.awaitOffer("after the default filter", nil)
	if time.Since(start) < 150*time.Millisecond {
		t.Fatalf("re-offered after %v, before the default refuse", time.Since(start))
	}
	s.mustCall(calls.Suppress())
	s.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(0)))
	// Offers outstanding before SUPPRESS may still arrive; drain and decline with no filter.
	for {
		e := s.tryAwait(func(e *scheduler.Event) bool { return e.Type == scheduler.Event_OFFERS }, 400*time.Millisecond)
		if e == nil {
			break
		}
		for _, o := range e.Offers.Offers {
			s.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(0)))
		}
	}
	s.mustCall(calls.Revive())
	s.awaitOffer("after un-suppressing", nil)
}

func TestAcceptWithInvalidOffers(t *testing.T) {
	c := simCluster(t, nil)
	for _, pa := range []bool{false, true} {
		info := frameworkInfo("*")
		want := mesos.TASK_LOST
		if pa {
			info.Capabilities = append(info.Capabilities, mesos.FrameworkInfo_Capability{Type: mesos.FrameworkInfo_Capability_PARTITION_AWARE})
			want = mesos.TASK_DROPPED
		}
		s := subscribe(t, c, info)
		o := s.awaitOffer("any", nil)
		bogus := mesos.OfferID{Value: "no-such-offer"}
		task := shellTask("t", o, "true", allocated("*", scalar("cpus", 0.1)))
		s.mustCall(calls.Accept(calls.OfferOperations{calls.OpLaunch(task)}.WithOffers(o.ID, bogus)))
		st := s.awaitUpdate("t", want)
		if st.GetReason() != mesos.REASON_INVALID_OFFERS || st.GetSource() != mesos.SOURCE_MASTER || st.UUID != nil {
			t.Fatalf("update %v", st)
		}
		s.close()
	}
}

func TestBadOperationsAreDroppedOthersRun(t *testing.T) {
	c := simCluster(t, nil)
	s := subscribe(t, c, berthInfo())
	o := s.awaitOffer("any", nil)
	star := scalar("cpus", 1)
	star.Reservations = []mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String("*")}}
	wrongPrincipal := reserved(scalar("mem", 32), "berth", "mallory", nil)
	noRes := shellTask("nores", o, "true", nil)
	both := shellTask("both", o, "true", allocated("berth", scalar("cpus", 0.1)))
	both.Executor = &mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: "e"}}
	tooBig := shellTask("big", o, "true", allocated("berth", scalar("cpus", 100)))
	badHC := shellTask("badhc", o, "true", allocated("berth", scalar("cpus", 0.1)))
	badHC.HealthCheck = &mesos.HealthCheck{Type: mesos.HealthCheck_HTTP}
	good := shellTask("good", o, "true", allocated("berth", scalar("cpus", 0.1)))
	opID := &mesos.OperationID{Value: "op-1"}
	withID := calls.OpReserve(reserved(scalar("cpus", 0.5), "berth", "berth", nil))
	withID.ID = opID
	s.mustCall(calls.Accept(calls.OfferOperations{
		calls.OpReserve(star),
		calls.OpReserve(wrongPrincipal),
		withID,
		calls.OpLaunch(noRes, both, tooBig, badHC),
		calls.OpLaunch(good),
	}.WithOffers(o.ID)))
	for _, id := range []string{"nores", "both", "big", "badhc"} {
		st := s.awaitUpdate(id, mesos.TASK_ERROR)
		if st.GetReason() != mesos.REASON_TASK_INVALID || st.GetMessage() == "" {
			t.Fatalf("%s: %v", id, st)
		}
	}
	s.awaitUpdate("good", mesos.TASK_RUNNING)
	e := s.await("OPERATION_ERROR", func(e *scheduler.Event) bool { return e.Type == scheduler.Event_UPDATE_OPERATION_STATUS })
	if st := e.UpdateOperationStatus.Status; st.State != mesos.OPERATION_ERROR || st.OperationID.Value != "op-1" {
		t.Fatalf("operation status %v", st)
	}
	for _, r := range c.agentTotal(c.firstAgent()) {
		if len(r.Reservations) > 0 {
			t.Fatalf("invalid RESERVE applied: %v", formatRes(r))
		}
	}
	for _, op := range c.Operations() {
		if op.Op == "RESERVE" {
			t.Fatalf("RESERVE logged although dropped: %+v", op)
		}
	}
}

func TestReservationFormatsAndRoleVisibility(t *testing.T) {
	c := simCluster(t, nil)
	legacy := subscribe(t, c, frameworkInfo("db")) // no RESERVATION_REFINEMENT
	o := legacy.awaitOffer("any", nil)
	for _, r := range o.Resources {
		if r.GetRole() != "*" || len(r.Reservations) > 0 {
			t.Fatalf("legacy offer resource %v", r)
		}
	}
	lbl := labels("k", "v")
	legacy.mustCall(calls.Accept(calls.OfferOperations{
		calls.OpReserve(reservedLegacy(scalar("cpus", 1), "db", "p", lbl), reservedLegacy(scalar("disk", 50), "db", "p", lbl)),
	}.WithOffers(o.ID)).With(calls.RefuseSeconds(0)))
	o = legacy.awaitOffer("reserved, legacy format", func(o mesos.Offer) bool {
		return offerHas(o, func(r mesos.Resource) bool { return r.GetRole() == "db" })
	})
	for _, r := range o.Resources {
		if len(r.Reservations) > 0 {
			t.Fatalf("legacy framework got refined format: %v", r)
		}
		if r.GetRole() == "db" && (r.Reservation == nil || !r.Reservation.GetLabels().Equivalent(lbl) || r.Reservation.GetPrincipal() != "p" || r.Reservation.Role != nil || r.Reservation.Type != nil) {
			t.Fatalf("legacy reservation %v", r.Reservation)
		}
	}
	legacy.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(time.Hour)))
	legacy.close()

	// A refinement-capable framework in the same role sees the new format.
	infoNew := frameworkInfo("db", mesos.FrameworkInfo_Capability_MULTI_ROLE, mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT)
	refined := subscribe(t, c, infoNew)
	o = refined.awaitOffer("reserved, new format", func(o mesos.Offer) bool {
		return offerHas(o, func(r mesos.Resource) bool { return len(r.Reservations) == 1 })
	})
	for _, r := range o.Resources {
		if r.Role != nil || r.Reservation != nil {
			t.Fatalf("refined framework got legacy fields: %v", r)
		}
		if n := len(r.Reservations); n == 1 && (r.Reservations[0].GetRole() != "db" || r.Reservations[0].GetType() != mesos.Resource_ReservationInfo_DYNAMIC || !r.Reservations[0].GetLabels().Equivalent(lbl)) {
			t.Fatalf("refined reservation %v", r.Reservations[0])
		}
	}
	refined.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(time.Hour)))

	// Another role never sees them.
	other := subscribe(t, c, frameworkInfo("web"))
	for i := 0; i < 3; i++ {
		o := other.awaitOffer("role web", nil)
		for _, r := range o.Resources {
			if !unreservedRes(r) {
				t.Fatalf("role web offered %v", r)
			}
		}
		other.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(0)))
	}
}

func TestReservationMergeAndPartialUnreserve(t *testing.T) {
	c := simCluster(t, nil)
	s := subscribe(t, c, berthInfo())
	l1, l2 := labels("i", "1"), labels("i", "2")
	o := s.awaitOffer("any", nil)
	s.mustCall(calls.Accept(calls.OfferOperations{
		calls.OpReserve(reserved(scalar("cpus", 1), "berth", "berth", l1)),
		calls.OpReserve(reserved(scalar("cpus", 0.5), "berth", "berth", l1)),
		calls.OpReserve(reserved(scalar("cpus", 0.25), "berth", "berth", l2)),
	}.WithOffers(o.ID)).With(calls.RefuseSeconds(0)))
	cpusWith := func(o mesos.Offer, l *mesos.Labels) (float64, int) {
		n := 0
		v := sumScalar(o.Resources, "cpus", func(r mesos.Resource) bool {
			ok := len(r.Reservations) == 1 && r.Reservations[0].GetLabels().Equivalent(l)
			if ok {
				n++
			}
			return ok
		})
		return v, n
	}
	o = s.awaitOffer("merged reservations", func(o mesos.Offer) bool { v, _ := cpusWith(o, l1); return v > 0 })
	if v, n := cpusWith(o, l1); v != 1.5 || n != 1 {
		t.Fatalf("labels 1: %v cpus in %d resources, want 1.5 in 1", v, n)
	}
	if v, n := cpusWith(o, l2); v != 0.25 || n != 1 {
		t.Fatalf("labels 2: %v cpus in %d resources", v, n)
	}
	s.mustCall(calls.Accept(calls.OfferOperations{
		calls.OpUnreserve(reserved(scalar("cpus", 0.5), "berth", "berth", l1)),
	}.WithOffers(o.ID)).With(calls.RefuseSeconds(0)))
	o = s.awaitOffer("after partial unreserve", func(o mesos.Offer) bool { v, _ := cpusWith(o, l1); return v == 1 })
	if got := sumScalar(o.Resources, "cpus", nil); got != 4 {
		t.Fatalf("total cpus %v", got)
	}
}

func TestPersistentVolumeRules(t *testing.T) {
	c := simCluster(t, nil)
	s := subscribe(t, c, berthInfo())
	disk := reserved(scalar("disk", 100), "berth", "berth", nil)
	o := s.awaitOffer("any", nil)
	unreservedVol := volume(allocated("berth", scalar("disk", 10))[0], "v0", "data")
	ro := volume(disk, "vro", "data")
	ro.Disk.Volume.Mode = mesos.RO.Enum()
	hostPath := volume(disk, "vhp", "data")
	hostPath.Disk.Volume.HostPath = proto.String("/etc")
	badID := volume(disk, "a/b", "data")
	s.mustCall(calls.Accept(calls.OfferOperations{
		calls.OpReserve(disk),
		calls.OpCreate(unreservedVol), calls.OpCreate(ro), calls.OpCreate(hostPath), calls.OpCreate(badID),
		calls.OpCreate(volume(scalar50(), "v1", "data")),
		calls.OpCreate(volume(scalar50(), "v1", "data")), // same id, same role, same agent
	}.WithOffers(o.ID)).With(calls.RefuseSeconds(0)))
	eventually(t, "volume created", func() bool {
		return c.agentTotal(c.firstAgent()).contains(rset{mustUpgrade(t, volume(scalar50(), "v1", "data"))})
	})
	var vols []string
	for _, r := range c.agentTotal(c.firstAgent()) {
		if isVolume(&r) {
			vols = append(vols, r.Disk.Persistence.ID)
		}
	}
	if strings.Join(vols, ",") != "v1" {
		t.Fatalf("volumes %v, want only v1", vols)
	}
	// Unreserving the disk under the volume is refused; DESTROY of a
	// missing volume is refused; the volume in use cannot be destroyed.
	o = s.awaitOffer("with v1", func(o mesos.Offer) bool { return offerHas(o, hasVolume("v1")) })
	v1 := volume(scalar50(), "v1", "data")
	task := shellTask("user", o, "sleep 100", []mesos.Resource{v1, allocated("berth", scalar("cpus", 0.1))[0]})
	s.mustCall(calls.Accept(calls.OfferOperations{
		calls.OpUnreserve(disk),
		calls.OpDestroy(volume(scalar50(), "missing", "data")),
		calls.OpLaunch(task),
		calls.OpDestroy(v1),
	}.WithOffers(o.ID)).With(calls.RefuseSeconds(0)))
	s.awaitUpdate("user", mesos.TASK_RUNNING)
	total := c.agentTotal(c.firstAgent())
	if !total.contains(rset{mustUpgrade(t, v1)}) || total.scalar("disk") != 10000 {
		t.Fatalf("agent total changed: %s", total)
	}
	// While the task runs the volume is not offered.
	o = s.awaitOffer("without v1", nil)
	if offerHas(o, hasVolume("v1")) {
		t.Fatal("volume in use was offered")
	}
	s.mustCall(calls.Kill("user", o.AgentID.Value))
	s.awaitUpdate("user", mesos.TASK_KILLED)
	s.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(0)))
	o = s.awaitOffer("v1 back", func(o mesos.Offer) bool { return offerHas(o, hasVolume("v1")) })
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpDestroy(v1), calls.OpUnreserve(disk)}.WithOffers(o.ID)))
	eventually(t, "everything unreserved", func() bool {
		for _, r := range c.agentTotal(c.firstAgent()) {
			if len(r.Reservations) > 0 {
				return false
			}
		}
		return true
	})
}

func scalar50() mesos.Resource { return reserved(scalar("disk", 50), "berth", "berth", nil) }

func mustUpgrade(t *testing.T, r mesos.Resource) mesos.Resource {
	t.Helper()
	u, err := upgradeResource(r)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// An allocation round whose offers together exceed what mesos-go decodes
// in one RecordIO frame (4 MiB) is sent in several OFFERS events, each of
// at most maxOffersEventBytes of offers: a scheduler holding thousands of
// berths (each agent's offer carries all of its reservations and volumes)
// keeps its subscription.
func TestLargeOfferRoundIsSplitBySize(t *testing.T) {
	var attrs []string
	for i := 0; i < 150; i++ {
		attrs = append(attrs, fmt.Sprintf("attribute_number_%03d:a_fairly_long_attribute_value_to_make_offers_large_%03d", i, i))
	}
	const agents = 300 // well under maxOffersPerEvent: only the size splits
	c := startCluster(t, func(cfg *Config) {
		cfg.Agents = agents
		cfg.Simulate = true
		cfg.AgentAttributes = strings.Join(attrs, ";")
	})
	s := subscribe(t, c, frameworkInfo("*"))
	got, events, total := 0, 0, 0
	for got < agents {
		e := s.tryAwait(func(e *scheduler.Event) bool { return e.Type == scheduler.Event_OFFERS }, time.Minute)
		if e == nil {
			t.Fatalf("%d of %d offers within a minute", got, agents)
		}
		size := 0
		for i := range e.Offers.Offers {
			size += e.Offers.Offers[i].Size()
		}
		if len(e.Offers.Offers) > 1 && size > maxOffersEventBytes {
			t.Fatalf("an OFFERS event of %d offers carries %d bytes of offers, more than %d", len(e.Offers.Offers), size, maxOffersEventBytes)
		}
		got += len(e.Offers.Offers)
		total += size
		events++
	}
	if total <= maxOffersEventBytes || events < 2 {
		t.Fatalf("%d bytes of offers in %d events; the test needs a round larger than one event", total, events)
	}
}
