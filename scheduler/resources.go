package scheduler

import (
	"fmt"
	"math"
	"sort"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// Label keys carried by every resource Berth reserves (docs/ARCHITECTURE.md).
const (
	LabelFrameworkID = "berth_framework_id"
	LabelInstanceID  = "berth_instance_id"
)

// Resource names used in offers and operations.
const (
	resCPUs  = "cpus"
	resMem   = "mem"
	resDisk  = "disk"
	resGPUs  = "gpus"
	resPorts = "ports"
)

// epsilon absorbs float noise in scalar comparisons; Mesos itself works in
// fixed point with three decimals.
const epsilon = 0.0005

// offerView classifies the resources of one offer: the unreserved pool that
// new placements draw from, resources reserved for a role without Berth
// labels (usable by stateless apps that accept the role), and the groups
// of resources carrying Berth's labels, keyed by instance id.
type offerView struct {
	offer     *mesos.Offer
	allocRole string
	free      pool
	// reserved are reserved resources without Berth instance labels, in
	// offer order.
	reserved []reservedEntry
	// labelled holds resources reserved with our framework id, by instance
	// id and epoch (groupKey).
	labelled map[string]*labelledGroup
}

// labelledGroup is every resource of one offer labelled with one instance
// id and one berth epoch.
type labelledGroup struct {
	instanceID string
	epoch      uint64
	// plain are non-volume reserved resources (cpus, mem, disk, ports...).
	plain []mesos.Resource
	// volumes are persistent volumes, keyed by persistence id.
	volumes map[string]mesos.Resource
}

// pool is an amount of unreserved resources that placements consume.
type pool struct {
	cpus, mem, disk, gpus float64
	ports                 []mesos.Value_Range
}

func scalarOf(r *mesos.Resource) float64 {
	if r.Scalar == nil {
		return 0
	}
	return r.Scalar.Value
}

func allocRoleOf(o *mesos.Offer) string {
	if o.AllocationInfo != nil && o.AllocationInfo.Role != nil {
		return *o.AllocationInfo.Role
	}
	for i := range o.Resources {
		if ai := o.Resources[i].AllocationInfo; ai != nil && ai.Role != nil {
			return *ai.Role
		}
	}
	return ""
}

// isUnreserved is true for a resource without any reservation in either
// format (new `reservations[]`, or old `role` + `reservation`).
func isUnreserved(r *mesos.Resource) bool {
	if len(r.Reservations) > 0 || r.Reservation != nil {
		return false
	}
	return r.Role == nil || *r.Role == "" || *r.Role == "*"
}

// currentReservation returns the innermost reservation of a resource, in
// either format.
func currentReservation(r *mesos.Resource) *mesos.Resource_ReservationInfo {
	if n := len(r.Reservations); n > 0 {
		return &r.Reservations[n-1]
	}
	return r.Reservation
}

func labelValue(ls *mesos.Labels, key string) (string, bool) {
	if ls == nil {
		return "", false
	}
	for _, l := range ls.Labels {
		if l.Key == key {
			if l.Value == nil {
				return "", true
			}
			return *l.Value, true
		}
	}
	return "", false
}

// newOfferView classifies an offer. Resources labelled for another framework
// id, revocable resources, resources from resource providers and disks
// with a source or volume that Berth did not make are ignored: Berth
// neither uses nor collects them. Reserved resources without a Berth
// instance label (static reservations, others' dynamic ones) are kept
// apart for stateless apps whose acceptedResourceRoles allow them.
func newOfferView(o *mesos.Offer, frameworkID string) *offerView {
	v := &offerView{offer: o, allocRole: allocRoleOf(o), labelled: map[string]*labelledGroup{}}
	for i := range o.Resources {
		r := &o.Resources[i]
		if r.Revocable != nil || r.ProviderID != nil || r.Shared != nil {
			continue
		}
		if isUnreserved(r) {
			if r.Disk != nil {
				continue // mount/path disks and the like: not for us
			}
			switch r.Name {
			case resCPUs:
				v.free.cpus += scalarOf(r)
			case resMem:
				v.free.mem += scalarOf(r)
			case resDisk:
				v.free.disk += scalarOf(r)
			case resGPUs:
				v.free.gpus += scalarOf(r)
			case resPorts:
				if r.Ranges != nil {
					v.free.ports = append(v.free.ports, r.Ranges.Range...)
				}
			}
			continue
		}
		res := currentReservation(r)
		iid, labelled := labelValue(res.GetLabels(), LabelInstanceID)
		if !labelled || iid == "" {
			if r.Disk == nil {
				c := *r
				if c.Ranges != nil {
					c.Ranges = &mesos.Value_Ranges{Range: normalizeRanges(c.Ranges.Range)}
				}
				v.reserved = append(v.reserved, reservedEntry{role: reservationRole(r), res: c})
			}
			continue
		}
		fid, ok := labelValue(res.Labels, LabelFrameworkID)
		if !ok || fid != frameworkID || frameworkID == "" {
			continue
		}
		epoch := labelEpoch(res.Labels)
		key := groupKey(iid, epoch)
		g := v.labelled[key]
		if g == nil {
			g = &labelledGroup{instanceID: iid, epoch: epoch, volumes: map[string]mesos.Resource{}}
			v.labelled[key] = g
		}
		if r.Disk != nil && r.Disk.Persistence != nil {
			g.volumes[r.Disk.Persistence.ID] = *r
		} else {
			g.plain = append(g.plain, *r)
		}
	}
	v.free.ports = normalizeRanges(v.free.ports)
	return v
}

// groupKey keys a labelled group: instance id, then epoch, so that the
// berths of one instance sort together, oldest epoch first.
func groupKey(instanceID string, epoch uint64) string {
	return instanceID + "\x00" + fmt.Sprintf("%020d", epoch)
}

// labelledGroups returns the labelled groups in groupKey order.
func (v *offerView) labelledGroups() []*labelledGroup {
	keys := make([]string, 0, len(v.labelled))
	for k := range v.labelled {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	gs := make([]*labelledGroup, 0, len(keys))
	for _, k := range keys {
		gs = append(gs, v.labelled[k])
	}
	return gs
}

// sum adds up a named scalar over plain resources.
func (g *labelledGroup) sum(name string) float64 {
	var t float64
	for i := range g.plain {
		if g.plain[i].Name == name {
			t += scalarOf(&g.plain[i])
		}
	}
	return t
}

// ports lists the port ranges of the group.
func (g *labelledGroup) portRanges() []mesos.Value_Range {
	var rs []mesos.Value_Range
	for i := range g.plain {
		if g.plain[i].Name == resPorts && g.plain[i].Ranges != nil {
			rs = append(rs, g.plain[i].Ranges.Range...)
		}
	}
	return normalizeRanges(rs)
}

// all returns every resource of the group, plain ones first, volumes sorted
// by persistence id.
func (g *labelledGroup) all() []mesos.Resource {
	out := append([]mesos.Resource(nil), g.plain...)
	for _, id := range g.volumeIDs() {
		out = append(out, g.volumes[id])
	}
	return out
}

func (g *labelledGroup) volumeIDs() []string {
	ids := make([]string, 0, len(g.volumes))
	for id := range g.volumes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// normalizeRanges sorts and merges port ranges.
func normalizeRanges(in []mesos.Value_Range) []mesos.Value_Range {
	if len(in) == 0 {
		return nil
	}
	rs := append([]mesos.Value_Range(nil), in...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Begin < rs[j].Begin })
	out := []mesos.Value_Range{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.Begin <= last.End+1 {
			if r.End > last.End {
				last.End = r.End
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func rangesContain(rs []mesos.Value_Range, p uint64) bool {
	for _, r := range rs {
		if p >= r.Begin && p <= r.End {
			return true
		}
	}
	return false
}

// removePort takes one port out of a normalized range list.
func removePort(rs []mesos.Value_Range, p uint64) []mesos.Value_Range {
	out := make([]mesos.Value_Range, 0, len(rs)+1)
	for _, r := range rs {
		if p < r.Begin || p > r.End {
			out = append(out, r)
			continue
		}
		if r.Begin < p {
			out = append(out, mesos.Value_Range{Begin: r.Begin, End: p - 1})
		}
		if p < r.End {
			out = append(out, mesos.Value_Range{Begin: p + 1, End: r.End})
		}
	}
	return out
}

// portsToRanges turns a port list into normalized ranges.
func portsToRanges(ports []uint32) []mesos.Value_Range {
	rs := make([]mesos.Value_Range, 0, len(ports))
	for _, p := range ports {
		rs = append(rs, mesos.Value_Range{Begin: uint64(p), End: uint64(p)})
	}
	return normalizeRanges(rs)
}

// round3 rounds to Mesos' fixed-point precision so that sums and
// differences of scalars stay exact on the wire.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// scalarResource builds a scalar resource allocated to role.
func scalarResource(name string, value float64, allocRole string) mesos.Resource {
	t := mesos.SCALAR
	r := mesos.Resource{Name: name, Type: &t, Scalar: &mesos.Value_Scalar{Value: round3(value)}}
	if allocRole != "" {
		role := allocRole
		r.AllocationInfo = &mesos.Resource_AllocationInfo{Role: &role}
	}
	return r
}

// portsResource builds a ports resource allocated to role.
func portsResource(rs []mesos.Value_Range, allocRole string) mesos.Resource {
	t := mesos.RANGES
	r := mesos.Resource{Name: resPorts, Type: &t, Ranges: &mesos.Value_Ranges{Range: rs}}
	if allocRole != "" {
		role := allocRole
		r.AllocationInfo = &mesos.Resource_AllocationInfo{Role: &role}
	}
	return r
}

// reservationFor is the dynamic reservation Berth pushes onto resources of
// one instance.
func reservationFor(role, principal, frameworkID, instanceID string, epoch uint64) mesos.Resource_ReservationInfo {
	typ := mesos.Resource_ReservationInfo_DYNAMIC
	ri := mesos.Resource_ReservationInfo{
		Type: &typ,
		Role: strPtr(role),
		Labels: &mesos.Labels{Labels: []mesos.Label{
			{Key: LabelFrameworkID, Value: strPtr(frameworkID)},
			{Key: LabelInstanceID, Value: strPtr(instanceID)},
		}},
	}
	if epoch > 0 {
		ri.Labels.Labels = append(ri.Labels.Labels, mesos.Label{Key: LabelEpoch, Value: strPtr(epochLabel(epoch))})
	}
	if principal != "" {
		ri.Principal = strPtr(principal)
	}
	return ri
}

// reserved returns a copy of r with the reservation pushed (new format).
func reserved(r mesos.Resource, ri mesos.Resource_ReservationInfo) mesos.Resource {
	r.Role = nil
	r.Reservation = nil
	r.Reservations = append(append([]mesos.Resource_ReservationInfo(nil), r.Reservations...), ri)
	return r
}

// withoutVolume strips a volume's persistence and volume info: the shape
// of the reserved disk that UNRESERVE expects once the volume is destroyed.
func withoutVolume(r mesos.Resource) mesos.Resource {
	if r.Disk != nil {
		d := *r.Disk
		d.Persistence = nil
		d.Volume = nil
		if d.Source == nil {
			r.Disk = nil
		} else {
			r.Disk = &d
		}
	}
	return r
}

// volumeResource builds a persistent volume on reserved disk.
func volumeResource(sizeMiB float64, allocRole string, ri mesos.Resource_ReservationInfo, persistenceID, containerPath, principal string) mesos.Resource {
	r := reserved(scalarResource(resDisk, sizeMiB, allocRole), ri)
	mode := mesos.RW
	p := &mesos.Resource_DiskInfo_Persistence{ID: persistenceID}
	if principal != "" {
		p.Principal = strPtr(principal)
	}
	r.Disk = &mesos.Resource_DiskInfo{
		Persistence: p,
		Volume:      &mesos.Volume{Mode: &mode, ContainerPath: containerPath},
	}
	return r
}

func strPtr(s string) *string { return &s }
