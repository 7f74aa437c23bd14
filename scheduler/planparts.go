package scheduler

import (
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// maxPlanInstances bounds the instances one commit writes when a decision
// placed many: an allocation round can place thousands of instances, and
// one Raft entry holding all of them commits more slowly than the same
// instances in several entries (the FSM's transaction grows beyond what it
// keeps writable), while no ACCEPT of the round could go out before the
// whole of it committed. In parts, the first ACCEPTs reach the master while
// the next part commits.
const maxPlanInstances = 1000

// planPart is a piece of a decision's plan and the calls that may be sent
// once it (and every part before it) committed.
type planPart struct {
	plan  *v1.SchedulerPlanCommand // nil: nothing to commit
	calls []*scheduler.Call
}

// splitPlan cuts a decision into parts committed one after the other, each
// writing at most max instances where the ACCEPTs allow it, and returns
// the calls to send after the last part. Invariant 1 holds part by part:
// a later part holds only instances that exactly one call names, an
// ACCEPT of that part, so each ACCEPT goes out after everything it implies
// committed (its own part and every part before it). The first part holds
// everything else the plan writes (deletions, deployments, backups,
// instances other calls name), the first ACCEPTs and the DECLINEs (which
// imply no operation); every other call (KILL, ACKNOWLEDGE, ...) goes
// after the last part. A plan of at most max instances is one part with
// all the calls.
func splitPlan(d Decision, max int) ([]planPart, []*scheduler.Call) {
	if d.Plan == nil || len(d.Plan.GetPutInstances()) <= max {
		return []planPart{{plan: d.Plan, calls: d.Calls}}, nil
	}
	refs := map[string]int{}
	for _, c := range d.Calls {
		for _, id := range callInstances(c) {
			refs[id]++
		}
	}
	put := map[string]bool{}
	for _, i := range d.Plan.GetPutInstances() {
		put[i.GetId()] = true
	}
	group := map[string]int{} // instance → part (absent: the first)
	parts := []planPart{{}}
	var rest []*scheduler.Call
	var first []*scheduler.Call
	n := 0 // instances in the last part
	for _, c := range d.Calls {
		switch c.Type {
		case scheduler.Call_ACCEPT:
		case scheduler.Call_DECLINE:
			first = append(first, c)
			continue
		default:
			rest = append(rest, c)
			continue
		}
		var own []string
		for _, id := range callInstances(c) {
			if refs[id] == 1 && put[id] {
				own = append(own, id)
			}
		}
		if len(own) == 0 {
			first = append(first, c)
			continue
		}
		if len(parts) == 1 || n+len(own) > max {
			parts = append(parts, planPart{plan: &v1.SchedulerPlanCommand{IfLeaderTerm: d.Plan.GetIfLeaderTerm()}})
			n = 0
		}
		last := len(parts) - 1
		parts[last].calls = append(parts[last].calls, c)
		for _, id := range own {
			group[id] = last
		}
		n += len(own)
	}
	// The first part: what no later part took.
	p := d.Plan
	head := &v1.SchedulerPlanCommand{
		DeleteInstances:   p.GetDeleteInstances(),
		PutDeployments:    p.GetPutDeployments(),
		DeleteDeployments: p.GetDeleteDeployments(),
		IfLeaderTerm:      p.GetIfLeaderTerm(),
		PutBackups:        p.GetPutBackups(),
	}
	for _, i := range p.GetPutInstances() {
		if g, ok := group[i.GetId()]; ok {
			parts[g].plan.PutInstances = append(parts[g].plan.PutInstances, i)
		} else {
			head.PutInstances = append(head.PutInstances, i)
		}
	}
	parts[0] = planPart{plan: head, calls: first}
	if len(head.GetPutInstances()) == 0 && len(head.GetDeleteInstances()) == 0 && len(head.GetPutDeployments()) == 0 &&
		len(head.GetDeleteDeployments()) == 0 && len(head.GetPutBackups()) == 0 {
		parts[0].plan = nil
	}
	return parts, rest
}
