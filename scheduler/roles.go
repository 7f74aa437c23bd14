package scheduler

import (
	"fmt"
	"sort"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// reservedEntry is one offered resource reserved for a role (statically,
// or dynamically by someone else) that carries no Berth instance label: a
// stateless app whose acceptedResourceRoles list the role may use it. The
// entry keeps what is left of it in this offer round.
type reservedEntry struct {
	role string
	// res is the offered resource; its Scalar or Ranges hold what is left.
	res mesos.Resource
}

// reservationRole is the role of a reserved resource's innermost
// reservation, in either format.
func reservationRole(r *mesos.Resource) string {
	if n := len(r.Reservations); n > 0 {
		return r.Reservations[n-1].GetRole()
	}
	if r.Reservation != nil && r.Reservation.Role != nil {
		return *r.Reservation.Role
	}
	return r.GetRole()
}

// placementRefusal explains why an app's instances can never be placed by
// this framework, or returns "": an app.role other than the framework's
// (Berth subscribes with one role), or acceptedResourceRoles naming no
// role this framework is offered.
func placementRefusal(a *v1.App, frameworkRole string) string {
	if r := a.GetRole(); r != "" && r != frameworkRole {
		return fmt.Sprintf("app %s: role %q is not the framework's role %q: Berth subscribes to Mesos with the single role %q and cannot launch tasks for role %q",
			a.GetId(), r, frameworkRole, frameworkRole, r)
	}
	if unreserved, roles := appmodel.AcceptedRoles(a); !unreserved && !roles[frameworkRole] {
		return fmt.Sprintf("app %s: acceptedResourceRoles %q: this framework is offered only unreserved (\"*\") resources and resources reserved for role %q",
			a.GetId(), a.GetAcceptedResourceRoles(), frameworkRole)
	}
	return ""
}

// taskNeed is what one stateless task takes from an offer.
type taskNeed struct {
	cpus, mem, disk, gpus float64
	ports                 []appmodel.Port
}

func (f *pool) scalar(name string) *float64 {
	switch name {
	case resCPUs:
		return &f.cpus
	case resMem:
		return &f.mem
	case resDisk:
		return &f.disk
	case resGPUs:
		return &f.gpus
	}
	return nil
}

// take removes what one stateless task needs from the offer and returns
// the task's resources and host ports (in port spec order). Resources
// reserved for an accepted role come first, then unreserved ones if "*"
// is accepted. Nothing is taken when the offer cannot hold the task.
func (v *offerView) take(need taskNeed, unreserved bool, roles map[string]bool, allocRole string) ([]mesos.Resource, []uint32, bool) {
	usable := func(e *reservedEntry, name string) bool { return roles[e.role] && e.res.Name == name }
	scalars := []struct {
		name   string
		amount float64
	}{{resCPUs, need.cpus}, {resMem, need.mem}, {resGPUs, need.gpus}, {resDisk, need.disk}}
	for _, s := range scalars {
		if s.amount <= epsilon {
			continue
		}
		have := 0.0
		if unreserved {
			have += *v.free.scalar(s.name)
		}
		for k := range v.reserved {
			if e := &v.reserved[k]; usable(e, s.name) {
				have += scalarOf(&e.res)
			}
		}
		if have+epsilon < s.amount {
			return nil, nil, false
		}
	}
	// Reserved ranges first, so that dynamic ports come from them first
	// (the ranges of different resources never overlap).
	var avail []mesos.Value_Range
	for k := range v.reserved {
		if e := &v.reserved[k]; usable(e, resPorts) && e.res.Ranges != nil {
			avail = append(avail, e.res.Ranges.Range...)
		}
	}
	if unreserved {
		avail = append(avail, v.free.ports...)
	}
	ports, _, ok := pickPorts(need.ports, avail)
	if !ok {
		return nil, nil, false
	}

	// It fits: take it, reserved resources first.
	var out []mesos.Resource
	takeScalar := func(name string, amount float64) {
		left := amount
		for k := range v.reserved {
			e := &v.reserved[k]
			if left <= epsilon {
				break
			}
			if !usable(e, name) || scalarOf(&e.res) <= epsilon {
				continue
			}
			n := min(left, scalarOf(&e.res))
			e.res.Scalar = &mesos.Value_Scalar{Value: round3(scalarOf(&e.res) - n)}
			r := e.res
			r.Scalar = &mesos.Value_Scalar{Value: round3(n)}
			out = append(out, r)
			left -= n
		}
		if left > epsilon {
			f := v.free.scalar(name)
			*f -= left
			out = append(out, scalarResource(name, left, allocRole))
		}
	}
	for _, s := range scalars[:3] { // cpus, mem, gpus; disk after the ports
		if s.amount > epsilon {
			takeScalar(s.name, s.amount)
		}
	}
	if len(ports) > 0 {
		byEntry := map[int][]uint32{}
		var free []uint32
		for _, port := range ports {
			taken := false
			for k := range v.reserved {
				e := &v.reserved[k]
				if usable(e, resPorts) && e.res.Ranges != nil && rangesContain(e.res.Ranges.Range, uint64(port)) {
					e.res.Ranges = &mesos.Value_Ranges{Range: removePort(e.res.Ranges.Range, uint64(port))}
					byEntry[k] = append(byEntry[k], port)
					taken = true
					break
				}
			}
			if !taken {
				v.free.ports = removePort(v.free.ports, uint64(port))
				free = append(free, port)
			}
		}
		entries := make([]int, 0, len(byEntry))
		for k := range byEntry {
			entries = append(entries, k)
		}
		sort.Ints(entries)
		for _, k := range entries {
			r := v.reserved[k].res
			r.Ranges = &mesos.Value_Ranges{Range: portsToRanges(byEntry[k])}
			out = append(out, r)
		}
		if len(free) > 0 {
			out = append(out, portsResource(portsToRanges(free), allocRole))
		}
	}
	if need.disk > epsilon {
		takeScalar(resDisk, need.disk)
	}
	return out, ports, true
}

// placeTask launches a stateless instance's task on the offer: on
// unreserved resources, or on resources reserved for a role its
// acceptedResourceRoles list (never on resources carrying Berth labels).
func (p *planner) placeTask(a *v1.App, i *v1.Instance, o *mesos.Offer, v *offerView, r *offerRound, cs []appmodel.Placement, agent agentInfo) ([]mesos.Offer_Operation, []string, bool) {
	alloc := v.allocRole
	if alloc == "" {
		alloc = p.cfg.Role
	}
	unreserved, roles := appmodel.AcceptedRoles(a)
	need := taskNeed{cpus: appmodel.CPUs(a), mem: appmodel.Mem(a), disk: appmodel.Disk(a), gpus: appmodel.GPUs(a), ports: appmodel.Ports(a)}
	res, ports, ok := v.take(need, unreserved, roles, alloc)
	if !ok {
		f, hasRole := v.usable(unreserved, roles)
		if !hasRole {
			return nil, []string{ReasonUnfulfilledRole}, false
		}
		return nil, shortfalls(&f, need.cpus, need.mem, need.disk, need.gpus, need.ports), false
	}
	e := p.edit(i.GetId())
	if e == nil {
		e = i
	}
	inc := e.GetIncarnation() + 1
	taskID := taskIDFor(e.GetId(), inc)
	ti, err := buildTaskInfo(a, taskID, o, res, ports)
	if err != nil {
		p.event(&v1.Event{Type: "instance_changed_event", AppId: a.GetId(), InstanceId: e.GetId(), Message: "cannot launch: " + err.Error()})
		r.badApps[a.GetId()] = true
		return nil, nil, false
	}
	e.Resident = false
	e.Reservation = &v1.Reservation{InstanceId: e.GetId(), State: v1.ReservationState_RESERVATION_STATE_NONE}
	e.AgentAttributes = copyAttrs(agent.attributes)
	labelTask(&ti, e)
	p.startTask(e, a, taskID, o, ports, inc)
	p.notePlaced(a, cs, agent, r)
	return []mesos.Offer_Operation{calls.OpLaunch(ti)}, nil, true
}
