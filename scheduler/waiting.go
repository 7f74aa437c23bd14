package scheduler

import (
	"sort"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/berth-dev/berth/appmodel"
)

// Why an offer did not fit a waiting instance: Marathon's NoOfferMatchReason
// names, in the order of its reason funnel (mesosphere.marathon.plugin
// ... NoOfferMatchReason.reasonFunnel).
const (
	ReasonUnfulfilledRole                 = "UnfulfilledRole"
	ReasonUnfulfilledConstraint           = "UnfulfilledConstraint"
	ReasonNoCorrespondingReservationFound = "NoCorrespondingReservationFound"
	ReasonAgentMaintenance                = "AgentMaintenance"
	ReasonInsufficientCpus                = "InsufficientCpus"
	ReasonInsufficientMemory              = "InsufficientMemory"
	ReasonInsufficientDisk                = "InsufficientDisk"
	ReasonInsufficientGpus                = "InsufficientGpus"
	ReasonInsufficientPorts               = "InsufficientPorts"
	ReasonDeclinedScarceResources         = "DeclinedScarceResources"
)

// ReasonFunnel lists every reason in Marathon's order: an offer declined for
// several reasons counts under the first of them.
var ReasonFunnel = []string{
	ReasonUnfulfilledRole, ReasonUnfulfilledConstraint, ReasonNoCorrespondingReservationFound,
	ReasonAgentMaintenance, ReasonInsufficientCpus, ReasonInsufficientMemory, ReasonInsufficientDisk,
	ReasonInsufficientGpus, ReasonInsufficientPorts, ReasonDeclinedScarceResources,
}

// OfferOutcome is what one offer meant to one app with instances waiting
// for an offer: used (an instance was placed or relaunched on it) or not,
// and then why (Reasons, in funnel order). Decide returns them; the driver
// keeps them in the leader's memory (Live), never in Raft.
type OfferOutcome struct {
	AppID    string
	OfferID  string
	AgentID  string
	Hostname string
	Used     bool
	Reasons  []string
}

// offerNotes collects, during the matching of one offer, what happened to
// each waiting app: used, or the reasons it was declined for (a bit per
// reason of ReasonFunnel).
type offerNotes struct {
	used    map[string]bool
	reasons map[string]uint16
	// slices caches one Reasons slice per set of reasons, shared by the
	// outcomes (read-only): many apps are declined for the same reasons.
	slices map[uint16][]string
}

func (n *offerNotes) reset() {
	n.used = map[string]bool{}
	n.reasons = map[string]uint16{}
	if n.slices == nil {
		n.slices = map[uint16][]string{}
	}
}

func (n *offerNotes) use(appID string) { n.used[appID] = true }

func (n *offerNotes) decline(appID string, why ...string) {
	for _, w := range why {
		for k, r := range ReasonFunnel {
			if r == w {
				n.reasons[appID] |= 1 << k
			}
		}
	}
}

// outcomes turns the notes of one offer into one outcome per waiting app
// (sorted by app id); an app neither served nor refused by the offer (the
// per-offer launch cap was reached first) gets none.
func (n *offerNotes) outcomes(o *mesos.Offer, waiting []string) []OfferOutcome {
	var out []OfferOutcome
	for _, appID := range waiting {
		oc := OfferOutcome{AppID: appID, OfferID: o.ID.Value, AgentID: o.AgentID.Value, Hostname: o.Hostname}
		mask := n.reasons[appID]
		switch {
		case n.used[appID]:
			oc.Used = true
		case mask != 0:
			rs, ok := n.slices[mask]
			if !ok {
				for k, r := range ReasonFunnel {
					if mask&(1<<k) != 0 {
						rs = append(rs, r)
					}
				}
				n.slices[mask] = rs
			}
			oc.Reasons = rs
		default:
			continue
		}
		out = append(out, oc)
	}
	return out
}

// waitingApps lists, sorted, the apps of the given instances.
func (p *planner) waitingApps(ids []string) []string {
	set := map[string]bool{}
	for _, id := range ids {
		set[p.inst(id).GetAppId()] = true
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// shortfalls names the resources an offer's pool lacks for one need.
func shortfalls(f *pool, cpus, mem, disk, gpus float64, ports []appmodel.Port) []string {
	var why []string
	if f.cpus+epsilon < cpus {
		why = append(why, ReasonInsufficientCpus)
	}
	if f.mem+epsilon < mem {
		why = append(why, ReasonInsufficientMemory)
	}
	if f.disk+epsilon < disk {
		why = append(why, ReasonInsufficientDisk)
	}
	if f.gpus+epsilon < gpus {
		why = append(why, ReasonInsufficientGpus)
	}
	if _, _, ok := pickPorts(ports, f.ports); !ok {
		why = append(why, ReasonInsufficientPorts)
	}
	return why
}

// usable is what a stateless task may take from an offer: the unreserved
// pool (when its acceptedResourceRoles allow "*") plus the reserved
// resources of its accepted roles. hasRole is false when the offer holds
// nothing of any accepted role.
func (v *offerView) usable(unreserved bool, roles map[string]bool) (f pool, hasRole bool) {
	if unreserved {
		f = v.free
		f.ports = append([]mesos.Value_Range(nil), v.free.ports...)
		hasRole = true
	}
	for k := range v.reserved {
		e := &v.reserved[k]
		if !roles[e.role] {
			continue
		}
		hasRole = true
		if e.res.Name == resPorts {
			if e.res.Ranges != nil {
				f.ports = append(f.ports, e.res.Ranges.Range...)
			}
			continue
		}
		if s := f.scalar(e.res.Name); s != nil {
			*s += scalarOf(&e.res)
		}
	}
	f.ports = normalizeRanges(f.ports)
	return f, hasRole
}
