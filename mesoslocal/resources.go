package mesoslocal

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// Resources are kept internally in one canonical form: the "post reservation
// refinement" format (a reservations stack, no legacy role/reservation
// fields) and without allocation info. Values inside a stored Resource are
// never mutated in place: arithmetic always builds fresh value pointers, so a
// Resource may be shared with an event that is being encoded elsewhere.
type rset []mesos.Resource

// milli rounds a scalar the way Mesos does (fixed point, three decimals).
func milli(v float64) int64 { return int64(math.Round(v * 1000)) }

func fromMilli(m int64) float64 { return float64(m) / 1000 }

func isEmptyRes(r *mesos.Resource) bool {
	switch r.GetType() {
	case mesos.SCALAR:
		return milli(r.GetScalar().GetValue()) <= 0
	case mesos.RANGES:
		return len(r.GetRanges().GetRange()) == 0
	case mesos.SET:
		return len(r.GetSet().GetItem()) == 0
	}
	return true
}

// normRanges sorts and merges overlapping or adjacent ranges.
func normRanges(in []mesos.Value_Range) []mesos.Value_Range {
	if len(in) == 0 {
		return nil
	}
	rs := append([]mesos.Value_Range(nil), in...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Begin < rs[j].Begin })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.Begin <= last.End+1 && last.End != math.MaxUint64 {
			if r.End > last.End {
				last.End = r.End
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func subRanges(a, b []mesos.Value_Range) []mesos.Value_Range {
	a = normRanges(a)
	for _, s := range normRanges(b) {
		var next []mesos.Value_Range
		for _, r := range a {
			if s.End < r.Begin || s.Begin > r.End {
				next = append(next, r)
				continue
			}
			if s.Begin > r.Begin {
				next = append(next, mesos.Value_Range{Begin: r.Begin, End: s.Begin - 1})
			}
			if s.End < r.End {
				next = append(next, mesos.Value_Range{Begin: s.End + 1, End: r.End})
			}
		}
		a = next
	}
	return a
}

func containsRanges(a, b []mesos.Value_Range) bool {
	a = normRanges(a)
	for _, s := range normRanges(b) {
		ok := false
		for _, r := range a {
			if s.Begin >= r.Begin && s.End <= r.End {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func setItems(items []string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, i := range items {
		m[i] = true
	}
	return m
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// withValue returns a shallow copy of r carrying a fresh value.
func addValue(a, b mesos.Resource) mesos.Resource {
	switch a.GetType() {
	case mesos.SCALAR:
		a.Scalar = &mesos.Value_Scalar{Value: fromMilli(milli(a.GetScalar().GetValue()) + milli(b.GetScalar().GetValue()))}
	case mesos.RANGES:
		a.Ranges = &mesos.Value_Ranges{Range: normRanges(append(append([]mesos.Value_Range(nil), a.GetRanges().GetRange()...), b.GetRanges().GetRange()...))}
	case mesos.SET:
		m := setItems(a.GetSet().GetItem())
		for _, i := range b.GetSet().GetItem() {
			m[i] = true
		}
		a.Set = &mesos.Value_Set{Item: sortedKeys(m)}
	}
	return a
}

func subValue(a, b mesos.Resource) mesos.Resource {
	switch a.GetType() {
	case mesos.SCALAR:
		v := milli(a.GetScalar().GetValue()) - milli(b.GetScalar().GetValue())
		if v < 0 {
			v = 0
		}
		a.Scalar = &mesos.Value_Scalar{Value: fromMilli(v)}
	case mesos.RANGES:
		a.Ranges = &mesos.Value_Ranges{Range: subRanges(a.GetRanges().GetRange(), b.GetRanges().GetRange())}
	case mesos.SET:
		m := setItems(a.GetSet().GetItem())
		for _, i := range b.GetSet().GetItem() {
			delete(m, i)
		}
		a.Set = &mesos.Value_Set{Item: sortedKeys(m)}
	}
	return a
}

func containsValue(a, b mesos.Resource) bool {
	switch a.GetType() {
	case mesos.SCALAR:
		return milli(b.GetScalar().GetValue()) <= milli(a.GetScalar().GetValue())
	case mesos.RANGES:
		return containsRanges(a.GetRanges().GetRange(), b.GetRanges().GetRange())
	case mesos.SET:
		m := setItems(a.GetSet().GetItem())
		for _, i := range b.GetSet().GetItem() {
			if !m[i] {
				return false
			}
		}
		return true
	}
	return false
}

// keyIndex finds the first entry of a set with a given identity, computing
// each entry's key once.
type keyIndex struct {
	keys []string
	pos  map[string]int // first live position per key (large sets only)
	dups bool           // some key appears twice: fall back to scanning
	dead []bool         // removed entries (nil: none)
}

// smallSet is the size up to which a scan beats building a map.
const smallSet = 8

func newKeyIndex(s rset) *keyIndex {
	ix := &keyIndex{keys: make([]string, len(s))}
	for i := range s {
		ix.keys[i] = resKey(&s[i])
	}
	if len(s) > smallSet {
		ix.pos = make(map[string]int, len(s))
		for i, k := range ix.keys {
			if _, ok := ix.pos[k]; ok {
				ix.dups = true
				ix.pos = nil
				break
			}
			ix.pos[k] = i
		}
	}
	return ix
}

func (ix *keyIndex) find(k string) int {
	if ix.pos != nil {
		if i, ok := ix.pos[k]; ok {
			return i
		}
		return -1
	}
	for i, kk := range ix.keys {
		if kk == k && (ix.dead == nil || !ix.dead[i]) {
			return i
		}
	}
	return -1
}

func (ix *keyIndex) append(k string) {
	ix.keys = append(ix.keys, k)
	if ix.pos != nil {
		ix.pos[k] = len(ix.keys) - 1
	} else if !ix.dups && len(ix.keys) > smallSet {
		pos := make(map[string]int, len(ix.keys))
		for i, kk := range ix.keys {
			if _, ok := pos[kk]; ok {
				ix.dups = true
				return
			}
			pos[kk] = i
		}
		ix.pos = pos
	}
}

// kill marks entry i removed: find skips it from now on.
func (ix *keyIndex) kill(i int) {
	if ix.dead == nil {
		ix.dead = make([]bool, len(ix.keys))
	}
	ix.dead[i] = true
	if ix.pos != nil {
		delete(ix.pos, ix.keys[i]) // no duplicates when pos is set
	}
}

// plus returns s + others (s is not modified).
func (s rset) plus(others ...mesos.Resource) rset {
	out := append(rset(nil), s...)
	if len(others) == 0 {
		return out
	}
	ix := newKeyIndex(out)
	for i := range others {
		o := &others[i]
		if isEmptyRes(o) {
			continue
		}
		k := resKey(o)
		if j := ix.find(k); j >= 0 {
			// Non-shared volumes are unique; keep the first copy's volume info.
			out[j] = addValue(out[j], *o)
			continue
		}
		out = append(out, *o)
		ix.append(k)
	}
	return out
}

// minus returns s - others, clamped at zero (s is not modified).
func (s rset) minus(others ...mesos.Resource) rset {
	out := append(rset(nil), s...)
	if len(others) == 0 || len(out) == 0 {
		return out
	}
	ix := newKeyIndex(out)
	for i := range others {
		o := &others[i]
		j := ix.find(resKey(o))
		if j < 0 {
			continue
		}
		out[j] = subValue(out[j], *o)
		if isEmptyRes(&out[j]) {
			ix.kill(j)
		}
	}
	if ix.dead == nil {
		return out
	}
	kept := out[:0]
	for i := range out {
		if !ix.dead[i] {
			kept = append(kept, out[i])
		}
	}
	clear(out[len(kept):])
	return kept
}

// contains reports whether every resource in o is within s.
func (s rset) contains(o rset) bool {
	want := rset(nil).plus(o...)
	if len(want) == 0 {
		return true
	}
	if len(s) == 0 {
		return false
	}
	ix := newKeyIndex(s)
	for i := range want {
		j := ix.find(resKey(&want[i]))
		if j < 0 || !containsValue(s[j], want[i]) {
			return false
		}
	}
	return true
}

func (s rset) empty() bool {
	for i := range s {
		if !isEmptyRes(&s[i]) {
			return false
		}
	}
	return true
}

// scalar sums the named scalar resource over every reservation.
func (s rset) scalar(name string) float64 {
	var m int64
	for i := range s {
		if s[i].Name == name && s[i].GetType() == mesos.SCALAR {
			m += milli(s[i].GetScalar().GetValue())
		}
	}
	return fromMilli(m)
}

// split returns the resources for which keep is true and the others.
func (s rset) split(keep func(*mesos.Resource) bool) (yes, no rset) {
	for i := range s {
		if keep(&s[i]) {
			yes = append(yes, s[i])
		} else {
			no = append(no, s[i])
		}
	}
	return yes, no
}

// filter returns the resources for which keep is true.
func (s rset) filter(keep func(*mesos.Resource) bool) rset {
	var out rset
	for i := range s {
		if keep(&s[i]) {
			out = append(out, s[i])
		}
	}
	return out
}

func (s rset) String() string {
	parts := make([]string, 0, len(s))
	for _, r := range s {
		parts = append(parts, formatRes(r))
	}
	return strings.Join(parts, "; ")
}

func formatRes(r mesos.Resource) string {
	var v string
	switch r.GetType() {
	case mesos.SCALAR:
		v = strconv.FormatFloat(r.GetScalar().GetValue(), 'f', -1, 64)
	case mesos.RANGES:
		var ps []string
		for _, x := range r.GetRanges().GetRange() {
			ps = append(ps, fmt.Sprintf("%d-%d", x.Begin, x.End))
		}
		v = "[" + strings.Join(ps, ",") + "]"
	case mesos.SET:
		v = "{" + strings.Join(r.GetSet().GetItem(), ",") + "}"
	}
	role := "*"
	if n := len(r.Reservations); n > 0 {
		role = r.Reservations[n-1].GetRole()
	}
	s := fmt.Sprintf("%s(%s):%s", r.Name, role, v)
	if p := r.GetDisk().GetPersistence(); p != nil {
		s += "[" + p.ID + "]"
	}
	return s
}

// reservationRole is the role of the innermost reservation, or "*".
func reservationRole(r *mesos.Resource) string {
	if n := len(r.Reservations); n > 0 {
		return r.Reservations[n-1].GetRole()
	}
	return "*"
}

func isDynamic(r *mesos.Resource) bool {
	n := len(r.Reservations)
	return n > 0 && r.Reservations[n-1].GetType() == mesos.Resource_ReservationInfo_DYNAMIC
}

func isVolume(r *mesos.Resource) bool { return r.GetDisk().GetPersistence() != nil }

// isSubrole reports whether role equals parent or is nested under it.
func isSubrole(role, parent string) bool {
	return role == parent || (len(role) > len(parent) && role[len(parent)] == '/' && strings.HasPrefix(role, parent))
}

// allocatableTo reports whether r may be offered to role: unreserved
// resources go to anyone, reserved ones only to their role and its children.
func allocatableTo(r *mesos.Resource, role string) bool {
	n := len(r.Reservations)
	return n == 0 || isSubrole(role, r.Reservations[n-1].GetRole())
}

// popReservation returns r with its innermost reservation removed.
func popReservation(r mesos.Resource) mesos.Resource {
	if n := len(r.Reservations); n > 0 {
		r.Reservations = append([]mesos.Resource_ReservationInfo(nil), r.Reservations[:n-1]...)
		if n == 1 {
			r.Reservations = nil
		}
	}
	return r
}

// withoutVolume strips the persistence and volume of a disk resource,
// keeping its source.
func withoutVolume(r mesos.Resource) mesos.Resource {
	if r.Disk == nil {
		return r
	}
	if r.Disk.Source == nil {
		r.Disk = nil
	} else {
		r.Disk = &mesos.Resource_DiskInfo{Source: r.Disk.Source}
	}
	r.Shared = nil
	return r
}

// validateRoleName checks a role the way Mesos does (roles::validate).
func validateRoleName(role string) error {
	if role == "" {
		return fmt.Errorf("role must not be empty")
	}
	if role == "*" {
		return nil
	}
	if strings.HasPrefix(role, "/") || strings.HasSuffix(role, "/") {
		return fmt.Errorf("role %q must not start or end with '/'", role)
	}
	for _, part := range strings.Split(role, "/") {
		switch {
		case part == "":
			return fmt.Errorf("role %q must not contain two adjacent slashes", role)
		case part == "." || part == ".." || part == "*":
			return fmt.Errorf("role %q must not contain %q as a component", role, part)
		case strings.HasPrefix(part, "-"):
			return fmt.Errorf("role %q: component %q must not start with '-'", role, part)
		case strings.IndexFunc(part, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return fmt.Errorf("role %q must not contain whitespace or control characters", role)
		}
	}
	return nil
}

// validateID checks task, executor and persistence IDs (common::validation::validateID).
func validateID(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s must not be empty", what)
	case len(id) > 255:
		return fmt.Errorf("%s %q must not be longer than 255 characters", what, id)
	case id == "." || id == "..":
		return fmt.Errorf("%s %q must not be '.' or '..'", what, id)
	case strings.ContainsAny(id, "/\\"):
		return fmt.Errorf("%s %q must not contain '/' or '\\'", what, id)
	case strings.IndexFunc(id, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0:
		return fmt.Errorf("%s %q must only contain printable characters and no whitespace", what, id)
	}
	return nil
}

// upgradeResource validates a resource sent by a framework (in either
// reservation format) and converts it to the canonical form.
func upgradeResource(in mesos.Resource) (mesos.Resource, error) {
	return canonResource(deepCopy(&in))
}

// canonResource is upgradeResource without the deep copy, for a resource
// the caller owns and drops (one decoded from a call): the result may share
// nested values with r, which is fine since mesos-local never changes a
// resource's nested values in place (values are replaced, see ledger).
func canonResource(r mesos.Resource) (mesos.Resource, error) {
	name := r.Name
	if name == "" {
		return r, fmt.Errorf("resource name must not be empty")
	}
	if r.Type == nil {
		return r, fmt.Errorf("resource %q: type must be set", name)
	}
	switch r.GetType() {
	case mesos.SCALAR:
		if r.Scalar == nil || r.Ranges != nil || r.Set != nil {
			return r, fmt.Errorf("resource %q: SCALAR needs exactly a scalar value", name)
		}
		v := r.Scalar.Value
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return r, fmt.Errorf("resource %q: invalid scalar value %v", name, v)
		}
	case mesos.RANGES:
		if r.Ranges == nil || r.Scalar != nil || r.Set != nil {
			return r, fmt.Errorf("resource %q: RANGES needs exactly a ranges value", name)
		}
		for _, x := range r.Ranges.Range {
			if x.Begin > x.End {
				return r, fmt.Errorf("resource %q: range [%d-%d] begins after it ends", name, x.Begin, x.End)
			}
		}
		r.Ranges = &mesos.Value_Ranges{Range: normRanges(r.Ranges.Range)}
	case mesos.SET:
		if r.Set == nil || r.Scalar != nil || r.Ranges != nil {
			return r, fmt.Errorf("resource %q: SET needs exactly a set value", name)
		}
	default:
		return r, fmt.Errorf("resource %q: unsupported type %v", name, r.GetType())
	}
	if r.Disk != nil && name != "disk" {
		return r, fmt.Errorf("resource %q: disk info is only allowed on 'disk' resources", name)
	}
	if r.Disk != nil && r.Disk.Source != nil && r.Disk.Source.GetType() == mesos.Resource_DiskInfo_Source_UNKNOWN {
		return r, fmt.Errorf("resource %q: disk source type must be set", name)
	}
	if r.Shared != nil && !isVolume(&r) {
		return r, fmt.Errorf("resource %q: only persistent volumes can be shared", name)
	}
	legacyRole := r.Role != nil && *r.Role != "*"
	if len(r.Reservations) > 0 {
		if legacyRole || r.Reservation != nil {
			return r, fmt.Errorf("resource %q mixes the 'role'/'reservation' format with 'reservations'", name)
		}
		for i, ri := range r.Reservations {
			if ri.Type == nil || ri.GetType() == mesos.Resource_ReservationInfo_UNKNOWN {
				return r, fmt.Errorf("resource %q: reservations[%d].type must be STATIC or DYNAMIC", name, i)
			}
			if ri.Role == nil {
				return r, fmt.Errorf("resource %q: reservations[%d].role must be set", name, i)
			}
			if ri.GetRole() == "*" {
				return r, fmt.Errorf("resource %q: reservations[%d].role must not be '*'", name, i)
			}
			if err := validateRoleName(ri.GetRole()); err != nil {
				return r, fmt.Errorf("resource %q: reservations[%d]: %v", name, i, err)
			}
			if i > 0 {
				if ri.GetType() != mesos.Resource_ReservationInfo_DYNAMIC {
					return r, fmt.Errorf("resource %q: reservations[%d] refines a reservation and must be DYNAMIC", name, i)
				}
				if prev := r.Reservations[i-1].GetRole(); !(len(ri.GetRole()) > len(prev) && isSubrole(ri.GetRole(), prev)) {
					return r, fmt.Errorf("resource %q: reservations[%d].role %q must be a child of %q", name, i, ri.GetRole(), prev)
				}
			}
		}
	} else if legacyRole {
		if err := validateRoleName(*r.Role); err != nil {
			return r, fmt.Errorf("resource %q: %v", name, err)
		}
		ri := mesos.Resource_ReservationInfo{Role: proto.String(*r.Role)}
		if r.Reservation != nil {
			if r.Reservation.Role != nil && r.Reservation.GetRole() != *r.Role {
				return r, fmt.Errorf("resource %q: reservation.role %q differs from role %q", name, r.Reservation.GetRole(), *r.Role)
			}
			ri.Type = mesos.Resource_ReservationInfo_DYNAMIC.Enum()
			ri.Principal = r.Reservation.Principal
			ri.Labels = r.Reservation.Labels
		} else {
			ri.Type = mesos.Resource_ReservationInfo_STATIC.Enum()
		}
		r.Reservations = []mesos.Resource_ReservationInfo{ri}
	} else if r.Reservation != nil {
		return r, fmt.Errorf("resource %q: 'reservation' is set but the role is '*' (unreserved resources cannot carry a reservation)", name)
	}
	r.Role = nil
	r.Reservation = nil
	r.AllocationInfo = nil
	return r, nil
}

func upgradeResources(in []mesos.Resource) (rset, error) {
	return convertResources(in, upgradeResource)
}

// canonResources is upgradeResources for resources the caller owns and
// drops (those of a decoded call): no deep copy (canonResource). An ACCEPT
// of 750 resident instances deep-copied every resource twice before.
func canonResources(in []mesos.Resource) (rset, error) {
	return convertResources(in, canonResource)
}

func convertResources(in []mesos.Resource, conv func(mesos.Resource) (mesos.Resource, error)) (rset, error) {
	out := make(rset, 0, len(in))
	for i, r := range in {
		u, err := conv(r)
		if err != nil {
			return nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// resourceFormat selects how resources are rendered for a consumer.
type resourceFormat int

const (
	formatPreRefinement  resourceFormat = iota // legacy role + reservation
	formatPostRefinement                       // reservations stack only
	formatEndpoint                             // both (operator API), as Mesos' ENDPOINT format
)

// render converts canonical resources for output. Resources that cannot be
// expressed in the legacy format (refined reservations) are skipped for
// pre-refinement consumers; the allocator never offers them to those.
func render(s rset, f resourceFormat, allocRole string) []mesos.Resource {
	out := make([]mesos.Resource, 0, len(s))
	for _, r := range s {
		n := len(r.Reservations)
		switch f {
		case formatPreRefinement:
			if n > 1 {
				continue
			}
			r.Role = proto.String("*")
			if n == 1 {
				ri := r.Reservations[0]
				r.Role = proto.String(ri.GetRole())
				if ri.GetType() == mesos.Resource_ReservationInfo_DYNAMIC {
					r.Reservation = &mesos.Resource_ReservationInfo{Principal: ri.Principal, Labels: ri.Labels}
				}
			}
			r.Reservations = nil
		case formatEndpoint:
			if n == 1 {
				ri := r.Reservations[0]
				r.Role = proto.String(ri.GetRole())
				if ri.GetType() == mesos.Resource_ReservationInfo_DYNAMIC {
					r.Reservation = &mesos.Resource_ReservationInfo{Principal: ri.Principal, Labels: ri.Labels}
				}
			}
		}
		if allocRole != "" {
			r.AllocationInfo = &mesos.Resource_AllocationInfo{Role: proto.String(allocRole)}
		}
		out = append(out, r)
	}
	return out
}

// parseResources parses the agent's --resources syntax:
// "cpus:4;mem:8192;disk:20000;ports:[31000-32000];gpus(role):1;zones:{a,b}".
func parseResources(spec string) (rset, error) {
	var out rset
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		colon := strings.Index(part, ":")
		if colon < 0 {
			return nil, fmt.Errorf("resource %q: expected name:value", part)
		}
		name, value := strings.TrimSpace(part[:colon]), strings.TrimSpace(part[colon+1:])
		role := "*"
		if i := strings.Index(name, "("); i >= 0 {
			if !strings.HasSuffix(name, ")") {
				return nil, fmt.Errorf("resource %q: unterminated role", part)
			}
			role = name[i+1 : len(name)-1]
			name = name[:i]
			if err := validateRoleName(role); err != nil {
				return nil, fmt.Errorf("resource %q: %v", part, err)
			}
		}
		if name == "" {
			return nil, fmt.Errorf("resource %q: empty name", part)
		}
		r := mesos.Resource{Name: name}
		switch {
		case strings.HasPrefix(value, "["):
			if !strings.HasSuffix(value, "]") {
				return nil, fmt.Errorf("resource %q: ranges must end with ']'", part)
			}
			var ranges []mesos.Value_Range
			for _, rg := range strings.Split(value[1:len(value)-1], ",") {
				rg = strings.TrimSpace(rg)
				if rg == "" {
					continue
				}
				lo, hi, ok := strings.Cut(rg, "-")
				b, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 64)
				e := b
				var err2 error
				if ok {
					e, err2 = strconv.ParseUint(strings.TrimSpace(hi), 10, 64)
				}
				if err1 != nil || err2 != nil || b > e {
					return nil, fmt.Errorf("resource %q: bad range %q", part, rg)
				}
				ranges = append(ranges, mesos.Value_Range{Begin: b, End: e})
			}
			r.Type = mesos.RANGES.Enum()
			r.Ranges = &mesos.Value_Ranges{Range: normRanges(ranges)}
		case strings.HasPrefix(value, "{"):
			if !strings.HasSuffix(value, "}") {
				return nil, fmt.Errorf("resource %q: sets must end with '}'", part)
			}
			var items []string
			for _, it := range strings.Split(value[1:len(value)-1], ",") {
				if it = strings.TrimSpace(it); it != "" {
					items = append(items, it)
				}
			}
			r.Type = mesos.SET.Enum()
			r.Set = &mesos.Value_Set{Item: items}
		default:
			v, err := strconv.ParseFloat(value, 64)
			if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("resource %q: %q is not a non-negative number", part, value)
			}
			r.Type = mesos.SCALAR.Enum()
			r.Scalar = &mesos.Value_Scalar{Value: fromMilli(milli(v))}
		}
		if role != "*" {
			r.Reservations = []mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_STATIC.Enum(), Role: proto.String(role)}}
		}
		out = out.plus(r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no resources in %q", spec)
	}
	return out, nil
}
