package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// An instance that does not fit an offer ends the offer for its app, not
// for the apps whose instances wait behind it: on an agent with room for
// two small instances, the big app's three older instances do not fit
// (noted once, with their reason) and the small app's two are placed;
// a second agent with room for one big instance takes one of them.
func TestOfferTriesEveryAppWaiting(t *testing.T) {
	h := newHarness(t)
	st := &State{FrameworkID: "fw", Apps: map[string]*v1.App{}, Instances: map[string]*v1.Instance{},
		Deployments: map[string]*v1.Deployment{}, Backups: map[string]*v1.Backup{}, Mem: NewMemory()}
	big := residentApp("/big", "v1", 3)
	big.Cpus = proto.Float64(4)
	small := residentApp("/small", "v1", 2)
	for _, a := range []*v1.App{big, small} {
		st.Apps[a.GetId()] = a
	}
	created := time.Unix(1_800_000_000, 0)
	add := func(a *v1.App, n int, at time.Time) {
		for j := range n {
			id := fmt.Sprintf("%s.instance-%d", strings.TrimPrefix(a.GetId(), "/"), j)
			st.Instances[id] = &v1.Instance{Id: id, AppId: a.GetId(), AppVersion: "v1", Goal: v1.Goal_GOAL_RUNNING,
				Reservation: &v1.Reservation{InstanceId: id, State: v1.ReservationState_RESERVATION_STATE_NONE},
				CreatedAt:   timestamppb.New(at), Resident: true}
		}
	}
	add(big, 3, created)                    // older: tried first
	add(small, 2, created.Add(time.Second)) // behind them
	h.master.addAgent("S1", "small-host", 1.5, 1024, 1000, 31000, 31010, nil)
	h.master.addAgent("S2", "big-host", 4.5, 1024, 1000, 31000, 31010, nil)
	d := Decide(st, Offers{Offers: h.master.makeOffers()}, created.Add(time.Minute), h.cfg)

	on := map[string][]string{}
	for _, i := range d.Plan.GetPutInstances() {
		on[i.GetReservation().GetAgentId()] = append(on[i.GetReservation().GetAgentId()], i.GetId())
	}
	slices.Sort(on["S1"])
	if want := []string{"small.instance-0", "small.instance-1"}; !slices.Equal(on["S1"], want) {
		t.Errorf("placed on the small agent: %v, want %v", on["S1"], want)
	}
	if want := []string{"big.instance-0"}; !slices.Equal(on["S2"], want) {
		t.Errorf("placed on the big agent: %v, want %v", on["S2"], want)
	}
	var reasons []string
	for _, oc := range d.OfferOutcomes {
		if oc.AgentID == "S1" && oc.AppID == "/big" {
			reasons = oc.Reasons
		}
	}
	if !slices.Equal(reasons, []string{ReasonInsufficientCpus}) {
		t.Errorf("why /big did not fit the small agent: %v, want [%s]", reasons, ReasonInsufficientCpus)
	}
	var accepted int
	for _, c := range d.Calls {
		if c.GetAccept() != nil {
			accepted += len(c.GetAccept().GetOfferIDs())
		}
	}
	if accepted != 2 {
		t.Errorf("%d offers accepted, want both", accepted)
	}
}
