package scheduler

import (
	"context"
	"errors"
	"fmt"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// placementDecision is an offers decision that placed perOffer new
// instances on each of offers agents (one ACCEPT each), declined one more
// offer and acknowledged one status of an instance it also writes.
func placementDecision(offers, perOffer int) Decision {
	d := Decision{Plan: &v1.SchedulerPlanCommand{IfLeaderTerm: 7, DeleteInstances: []string{"gone"}}}
	for o := 0; o < offers; o++ {
		agent := mesos.AgentID{Value: fmt.Sprintf("A%d", o)}
		var tasks []mesos.TaskInfo
		for k := 0; k < perOffer; k++ {
			iid := instanceIDFor("/db", fmt.Sprintf("u-%d-%d", o, k))
			d.Plan.PutInstances = append(d.Plan.PutInstances, &v1.Instance{Id: iid, AppId: "/db"})
			tasks = append(tasks, mesos.TaskInfo{TaskID: mesos.TaskID{Value: taskIDFor(iid, 1)}, AgentID: agent})
		}
		d.Calls = append(d.Calls, calls.Accept(calls.OfferOperations{calls.OpLaunch(tasks...)}.WithOffers(mesos.OfferID{Value: fmt.Sprintf("O%d", o)})))
	}
	// An instance the plan writes that an acknowledgement also names.
	acked := instanceIDFor("/db", "u-0-0")
	d.Calls = append(d.Calls, calls.Decline(mesos.OfferID{Value: "Ox"}), calls.Acknowledge("A0", taskIDFor(acked, 1), []byte("u")))
	return d
}

func TestSplitPlanSmallPlanIsOnePart(t *testing.T) {
	d := placementDecision(3, 10)
	parts, rest := splitPlan(d, 100)
	if len(parts) != 1 || parts[0].plan != d.Plan || len(parts[0].calls) != len(d.Calls) || len(rest) != 0 {
		t.Fatalf("%d parts, %d calls after; want the decision as one part", len(parts), len(rest))
	}
}

// Each ACCEPT goes out with the part holding its instances, or a later
// one; every instance is written exactly once; no part but an ACCEPT's
// own exceeds the bound; what other calls name is committed first.
func TestSplitPlanKeepsWriteAheadPerAccept(t *testing.T) {
	d := placementDecision(10, 30)
	parts, rest := splitPlan(d, 100)
	if len(parts) < 4 {
		t.Fatalf("%d parts for 300 instances with a bound of 100", len(parts))
	}
	committedAt := map[string]int{}
	for k, p := range parts {
		if p.plan == nil {
			continue
		}
		if k > 0 && len(p.plan.GetPutInstances()) > 100 {
			t.Fatalf("part %d writes %d instances, bound 100", k, len(p.plan.GetPutInstances()))
		}
		if p.plan.GetIfLeaderTerm() != 7 {
			t.Fatalf("part %d lost the plan's leader term", k)
		}
		if k > 0 && len(p.plan.GetDeleteInstances()) > 0 {
			t.Fatalf("part %d deletes instances; only the first part may", k)
		}
		for _, i := range p.plan.GetPutInstances() {
			if _, dup := committedAt[i.GetId()]; dup {
				t.Fatalf("instance %s written twice", i.GetId())
			}
			committedAt[i.GetId()] = k
		}
	}
	if len(committedAt) != len(d.Plan.GetPutInstances()) {
		t.Fatalf("%d instances written, want %d", len(committedAt), len(d.Plan.GetPutInstances()))
	}
	if fmt.Sprint(parts[0].plan.GetDeleteInstances()) != "[gone]" {
		t.Fatalf("first part deletes %v, want [gone]", parts[0].plan.GetDeleteInstances())
	}
	accepts := 0
	for k, p := range parts {
		for _, c := range p.calls {
			if c.Type == scheduler.Call_ACCEPT {
				accepts++
			}
			for _, id := range callInstances(c) {
				if at, ok := committedAt[id]; ok && at > k {
					t.Fatalf("a %s call of part %d names %s, committed only in part %d", c.Type, k, id, at)
				}
			}
		}
	}
	if accepts != 10 {
		t.Fatalf("%d ACCEPTs in the parts, want 10", accepts)
	}
	if len(rest) != 1 || rest[0].Type != scheduler.Call_ACKNOWLEDGE {
		t.Fatalf("calls after the last part: %v, want the acknowledgement", rest)
	}
	if at := committedAt[instanceIDFor("/db", "u-0-0")]; at != 0 {
		t.Fatalf("the acknowledged instance is committed in part %d, want the first", at)
	}
	declined := false
	for _, c := range parts[0].calls {
		declined = declined || c.Type == scheduler.Call_DECLINE
	}
	if !declined {
		t.Fatal("the DECLINE does not go out with the first part")
	}
}

// splitPlan copies each field of the plan into its first part by name: a
// field added to SchedulerPlanCommand must be added there too.
func TestSplitPlanKnowsEveryPlanField(t *testing.T) {
	known := map[string]bool{"put_instances": true, "delete_instances": true, "put_deployments": true,
		"delete_deployments": true, "if_leader_term": true, "put_backups": true}
	fields := (&v1.SchedulerPlanCommand{}).ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if name := string(fields.Get(i).Name()); !known[name] {
			t.Errorf("SchedulerPlanCommand.%s is not carried by splitPlan", name)
		}
	}
}

// Through the driver's loop: an allocation round placing more than one
// part's worth of instances commits part after part, each part's ACCEPTs
// queued only once it committed; when a later part fails, the ACCEPTs of
// the parts before stand (they committed) and the offers of the failed
// parts are declined, none of their ACCEPTs sent.
func TestLoopPlacementPartsWriteAhead(t *testing.T) {
	h := newHarness(t)
	for n := 0; n < 15; n++ {
		// 200 instances each
		h.master.addAgent(fmt.Sprintf("A%d", n), fmt.Sprintf("host%d", n), 100, 1<<20, 1<<30, 31000, 32000, nil)
	}
	app := residentApp("/db", "v1", 2400)
	app.PortDefinitions = nil
	h.store.putApp(app, "d1")
	for len(h.instancesOf("/db")) < 2400 {
		h.tick()
	}
	offers := h.master.makeOffers()
	var out *sender
	committed := map[string]bool{}
	commits, failAt := 0, 3
	deps := Deps{
		Store: func() Store { return h.store },
		Commit: func(_ context.Context, plan *v1.SchedulerPlanCommand) error {
			commits++
			for _, c := range out.queued() {
				for _, id := range callInstances(c) {
					if !committed[id] && c.Type == scheduler.Call_ACCEPT {
						t.Errorf("ACCEPT naming %s queued before its part committed", id)
					}
				}
			}
			if commits == failAt {
				return errors.New("not leader")
			}
			for _, i := range plan.GetPutInstances() {
				committed[i.GetId()] = true
			}
			return h.store.commit(plan)
		},
		SetFrameworkID: func(context.Context, string) error { return nil },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := New(h.cfg, deps)
	out = newSender(ctx, nil, "fw-1", s.log)
	l := &loop{s: s, ctx: ctx, out: out}
	l.apply(Offers{Offers: offers})
	if commits != failAt {
		t.Fatalf("%d commits, want %d (the plan in parts, the third failing)", commits, failAt)
	}
	accepted, declined := map[string]bool{}, map[string]bool{}
	for _, c := range out.queued() {
		switch c.Type {
		case scheduler.Call_ACCEPT:
			for _, id := range callInstances(c) {
				if !committed[id] {
					t.Fatalf("ACCEPT naming %s, which no committed part wrote, was queued", id)
				}
			}
			accepted[c.Accept.OfferIDs[0].Value] = true
		case scheduler.Call_DECLINE:
			for _, o := range c.Decline.OfferIDs {
				declined[o.Value] = true
			}
		}
	}
	if len(accepted) == 0 {
		t.Fatal("no ACCEPT of the committed parts was queued")
	}
	for _, o := range offers {
		if accepted[o.ID.Value] == declined[o.ID.Value] {
			t.Fatalf("offer %s: accepted %v, declined %v; want exactly one", o.ID.Value, accepted[o.ID.Value], declined[o.ID.Value])
		}
	}
}
