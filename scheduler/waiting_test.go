package scheduler

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// liveRound runs one tick and one round of offers, feeding what the driver
// feeds into live.
func (h *harness) liveRound(live *Live) Decision {
	h.tick()
	h.deliver()
	live.syncWaiting(waitingInstances(h.state()))
	d := h.offers()
	live.recordOffers(d.OfferOutcomes, h.now)
	h.deliver()
	h.tick()
	live.syncWaiting(waitingInstances(h.state()))
	return d
}

func declined(rs []*v1.OfferRejections) map[string]int32 {
	out := map[string]int32{}
	for _, r := range rs {
		if r.GetDeclined() > 0 {
			out[r.GetReason()] = r.GetDeclined()
		}
	}
	return out
}

// TestWaitingReasons: an instance that no offer fits says why, per app, as
// Marathon's /v2/queue processedOffersSummary does
// (docs/docs/rest-api ... queue: processedOffersSummary,
// rejectSummaryLaunchAttempt, lastUnusedOffers): more memory than any agent
// has is InsufficientMemory, a constraint no agent meets is
// UnfulfilledConstraint; an app that fits is not in the queue; nothing of it
// is committed.
func TestWaitingReasons(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, map[string]string{"rack": "r1"})
	h.master.addAgent("A2", "host2", 4, 1024, 1000, 31000, 31010, map[string]string{"rack": "r2"})
	live := NewLive()
	live.start(nil, nil)

	big := residentApp("/big", "v1", 1)
	big.Mem = proto.Float64(4096)
	pinned := statelessApp("/pinned", "v1", 2)
	pinned.Constraints = []*v1.Constraint{{Field: "rack", Operator: "LIKE", Value: proto.String("r9")}}
	ok := statelessApp("/ok", "v1", 1)
	h.store.putApp(big, "")
	h.store.putApp(pinned, "")
	h.store.putApp(ok, "")

	before := h.store.index
	for range 3 {
		h.liveRound(live)
		h.advance(5 * time.Second)
	}
	q := live.Queue("")
	if len(q) != 2 || q[0].GetAppId() != "/big" || q[1].GetAppId() != "/pinned" {
		t.Fatalf("queue = %v", q)
	}
	bigQ, pinQ := q[0], q[1]
	if len(bigQ.GetInstanceIds()) != 1 || len(pinQ.GetInstanceIds()) != 2 {
		t.Fatalf("waiting instances: %v, %v", bigQ.GetInstanceIds(), pinQ.GetInstanceIds())
	}
	s := bigQ.GetProcessedOffersSummary()
	// Two agents, three rounds: six offers, none used.
	if s.GetProcessedOffersCount() != 6 || s.GetUnusedOffersCount() != 6 || s.GetLastUsedOfferAt() != "" || s.GetLastUnusedOfferAt() == "" {
		t.Fatalf("big summary = %v", s)
	}
	if got := declined(s.GetRejectSummaryLaunchAttempt()); !reflect.DeepEqual(got, map[string]int32{ReasonInsufficientMemory: 6}) {
		t.Fatalf("big reasons = %v", got)
	}
	if n := len(s.GetRejectSummaryLaunchAttempt()); n != len(ReasonFunnel) {
		t.Fatalf("every reason is listed (Marathon lists all): %d", n)
	}
	if got := declined(pinQ.GetProcessedOffersSummary().GetRejectSummaryLastOffers()); !reflect.DeepEqual(got, map[string]int32{ReasonUnfulfilledConstraint: 6}) {
		t.Fatalf("pinned reasons = %v", got)
	}
	if lu := bigQ.GetLastUnusedOffers(); len(lu) != 6 || lu[0].GetAgentId() != "A1" || !reflect.DeepEqual(lu[0].GetReasons(), []string{ReasonInsufficientMemory}) {
		t.Fatalf("last unused offers = %v", lu)
	}

	// Offers are not Raft writes: after the first rounds (creating the
	// instances, placing /ok) the rounds commit nothing more.
	mid := h.store.index
	for range 20 {
		h.liveRound(live)
		h.advance(5 * time.Second)
	}
	if h.store.index != mid {
		t.Fatalf("waiting rounds committed %d entries (before %d)", h.store.index-mid, mid-before)
	}
	q = live.Queue("/big")
	if len(q) != 1 || q[0].GetProcessedOffersSummary().GetProcessedOffersCount() != 46 || len(q[0].GetLastUnusedOffers()) != maxLastUnusedOffers {
		t.Fatalf("after more rounds: %v", q)
	}
	// The funnel: each offer counts once, under its first reason.
	last := q[0].GetProcessedOffersSummary().GetRejectSummaryLastOffers()
	if last[0].GetProcessed() != int32(maxLastUnusedOffers) {
		t.Fatalf("last offers processed = %v", last)
	}

	// Scaled down to what fits: the app waits no more and leaves the queue
	// (its next wait starts a new launch attempt).
	h.store.putApp(withInstances(big, "v2", 0), "")
	h.liveRound(live)
	if q := live.Queue("/big"); len(q) != 0 {
		t.Fatalf("/big still queued: %v", q)
	}
	live.stop()
	if q := live.Queue(""); q != nil {
		t.Fatalf("a stopped Live serves %v", q)
	}
}

// TestWaitingBerthElsewhere: a resident instance whose berth is on one agent
// waits for that agent's offer; every other agent's offer is
// NoCorrespondingReservationFound (Marathon's reason for a resident
// instance offered no resources of its reservation).
func TestWaitingBerthElsewhere(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	app := residentApp("/pg", "v1", 1)
	h.store.putApp(app, "")
	h.settle()
	h.master.addAgent("A2", "host2", 4, 1024, 1000, 31000, 31010, nil)
	inst := h.only("/pg")
	h.master.crash(inst.GetTask().GetId())
	h.deliver()
	h.advance(time.Hour) // past any backoff
	h.tick()
	d := h.offers()
	var got []OfferOutcome
	for _, oc := range d.OfferOutcomes {
		got = append(got, OfferOutcome{AppID: oc.AppID, AgentID: oc.AgentID, Used: oc.Used, Reasons: oc.Reasons})
	}
	want := []OfferOutcome{
		{AppID: "/pg", AgentID: "A1", Used: true},
		{AppID: "/pg", AgentID: "A2", Reasons: []string{ReasonNoCorrespondingReservationFound}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("outcomes = %+v, want %+v", got, want)
	}
}
