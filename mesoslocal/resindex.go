package mesoslocal

import (
	"encoding/binary"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// codecMessage is a message with generated protobuf code (mesos-go's).
type codecMessage[T any] interface {
	*T
	proto.Message
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

// deepCopy returns a deep copy of in through its generated codec, several
// times cheaper than proto.Clone's reflection. A message that does not
// survive the round trip (a required field missing, as JSON input may
// leave it) is copied with proto.Clone instead.
func deepCopy[T any, P codecMessage[T]](in P) T {
	if b, err := in.Marshal(); err == nil {
		var out T
		if P(&out).Unmarshal(b) == nil {
			return out
		}
	}
	return *proto.Clone(in).(P)
}

// Resource identity and indexed resource sets.
//
// Two resources are "the same resource" (their values may be added or
// subtracted) when everything but their value and their volume's container
// path/mode is equal; see Mesos' Resources::operator==. resKey encodes that
// identity as a string so that sets can be indexed by it. The encoding is
// length-prefixed and tagged, so distinct identities never share a key.

// appendResKey appends r's identity key to b.
func appendResKey(b []byte, r *mesos.Resource) []byte {
	b = appendKeyString(b, r.Name)
	b = binary.AppendUvarint(b, uint64(uint32(r.GetType())))
	for i := range r.Reservations {
		ri := &r.Reservations[i]
		b = append(b, 'R')
		b = binary.AppendUvarint(b, uint64(uint32(ri.GetType())))
		b = appendKeyString(b, ri.GetRole())
		b = appendKeyString(b, ri.GetPrincipal())
		for _, l := range ri.GetLabels().GetLabels() {
			b = append(b, 'L')
			b = appendKeyString(b, l.Key)
			if l.Value != nil {
				b = append(b, 1)
				b = appendKeyString(b, *l.Value)
			} else {
				b = append(b, 0)
			}
		}
	}
	if d := r.Disk; d != nil {
		if p := d.Persistence; p != nil {
			b = append(b, 'P')
			b = appendKeyString(b, p.ID)
		}
		if s := d.Source; s != nil {
			b = append(b, 'S')
			b = binary.AppendUvarint(b, uint64(uint32(s.GetType())))
			b = appendKeyString(b, s.GetPath().GetRoot())
			b = appendKeyString(b, s.GetMount().GetRoot())
			b = appendKeyString(b, s.GetID())
			b = appendKeyString(b, s.GetProfile())
		}
	}
	if r.Revocable != nil {
		b = append(b, 'v')
	}
	if r.Shared != nil {
		b = append(b, 's')
	}
	if r.ProviderID != nil {
		b = append(b, 'p')
		b = appendKeyString(b, r.ProviderID.Value)
	}
	return b
}

func appendKeyString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// resKey identifies which resources may be merged: everything except the
// value and the volume's container path/mode (which describe a use, not the
// resource itself; see Mesos' Resources::operator==).
func resKey(r *mesos.Resource) string {
	var buf [128]byte
	return string(appendResKey(buf[:0], r))
}

// sameValue reports whether a and b (of one identity) hold equal values.
func sameValue(a, b *mesos.Resource) bool {
	switch a.GetType() {
	case mesos.SCALAR:
		return milli(a.GetScalar().GetValue()) == milli(b.GetScalar().GetValue())
	case mesos.RANGES:
		x, y := normRanges(a.GetRanges().GetRange()), normRanges(b.GetRanges().GetRange())
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	case mesos.SET:
		return containsValue(*a, *b) && containsValue(*b, *a)
	}
	return isEmptyRes(a) && isEmptyRes(b)
}

// rindex is a mutable resource set indexed by identity: at most one
// non-empty entry per identity, kept in the order in which identities were
// first added (an identity that drops to nothing and comes back goes to the
// end), exactly as rset.plus and rset.minus order a set. Lookups, additions
// and subtractions cost one key computation, not a scan.
//
// Like rset, an rindex never mutates a value in place: each change stores
// fresh value pointers, so resources handed out by slice may be shared.
type rindex struct {
	ents []rentry
	pos  map[string]int // key → index in ents of the live entry
	dead int            // removed entries still in ents
}

type rentry struct {
	key  string
	r    mesos.Resource
	live bool
}

func newRindex(s rset) *rindex {
	x := &rindex{pos: make(map[string]int, len(s))}
	x.add(s...)
	return x
}

// len is the number of (non-empty) resources in the set.
func (x *rindex) len() int { return len(x.pos) }

func (x *rindex) empty() bool { return len(x.pos) == 0 }

// add merges rs into the set (rset.plus).
func (x *rindex) add(rs ...mesos.Resource) {
	var buf [128]byte
	for i := range rs {
		o := &rs[i]
		if isEmptyRes(o) {
			continue
		}
		k := appendResKey(buf[:0], o)
		if j, ok := x.pos[string(k)]; ok {
			x.ents[j].r = addValue(x.ents[j].r, *o)
			continue
		}
		x.pos[string(k)] = len(x.ents)
		x.ents = append(x.ents, rentry{key: string(k), r: *o, live: true})
	}
}

// sub subtracts rs from the set, clamped at zero; resources that become
// empty leave the set (rset.minus).
func (x *rindex) sub(rs ...mesos.Resource) {
	var buf [128]byte
	for i := range rs {
		o := &rs[i]
		j, ok := x.pos[string(appendResKey(buf[:0], o))]
		if !ok {
			continue
		}
		e := &x.ents[j]
		e.r = subValue(e.r, *o)
		if isEmptyRes(&e.r) {
			x.remove(j)
		}
	}
}

func (x *rindex) remove(j int) {
	e := &x.ents[j]
	delete(x.pos, e.key)
	*e = rentry{}
	x.dead++
	if x.dead > 32 && x.dead > len(x.ents)/2 {
		x.compact()
	}
}

func (x *rindex) compact() {
	out := x.ents[:0]
	for _, e := range x.ents {
		if e.live {
			x.pos[e.key] = len(out)
			out = append(out, e)
		}
	}
	clear(x.ents[len(out):])
	x.ents = out
	x.dead = 0
}

// get returns the set's resource with r's identity, or nil.
func (x *rindex) get(r *mesos.Resource) *mesos.Resource {
	var buf [128]byte
	if j, ok := x.pos[string(appendResKey(buf[:0], r))]; ok {
		return &x.ents[j].r
	}
	return nil
}

// contains reports whether every resource in o is within the set
// (rset.contains).
func (x *rindex) contains(o rset) bool {
	if len(o) == 1 {
		if isEmptyRes(&o[0]) {
			return true
		}
		have := x.get(&o[0])
		return have != nil && containsValue(*have, o[0])
	}
	for _, r := range rset(nil).plus(o...) {
		have := x.get(&r)
		if have == nil || !containsValue(*have, r) {
			return false
		}
	}
	return true
}

// slice returns the set's resources in order (a fresh rset).
func (x *rindex) slice() rset {
	if len(x.pos) == 0 {
		return nil
	}
	out := make(rset, 0, len(x.pos))
	for i := range x.ents {
		if x.ents[i].live {
			out = append(out, x.ents[i].r)
		}
	}
	return out
}

func (x *rindex) clone() *rindex {
	y := &rindex{ents: make([]rentry, 0, len(x.pos)), pos: make(map[string]int, len(x.pos))}
	for _, e := range x.ents {
		if e.live {
			y.pos[e.key] = len(y.ents)
			y.ents = append(y.ents, e)
		}
	}
	return y
}

func (x *rindex) String() string { return x.slice().String() }

// ledger is an agent's resources: its total, indexed by identity, and for
// each resource the part that is free (used by no task, executor or
// offer). It replaces recomputing total − used − offered on every
// allocation: tasks, executors and offers take resources with use and give
// them back with release, and operations that convert resources (RESERVE,
// CREATE, ...) change the total and the free part together, since they only
// ever apply to free (offered, then released) resources.
//
// The free resources are listed in the total's order, which is the order
// total.minus(used...) produced.
type ledger struct {
	ents  []lentry
	pos   map[string]int
	dead  int
	nfree int // live entries with free resources

	// vols counts the live entries of each persistent volume, by
	// volumeKey: CREATE checks a persistence id is free without a scan.
	vols map[string]int

	version uint64                  // counts changes (for consistency checks)
	journal map[string]journalEntry // see beginJournal
}

type lentry struct {
	key   string
	total mesos.Resource
	free  mesos.Resource // the total's identity with the free value
	live  bool
}

type journalEntry struct {
	had   bool
	total mesos.Resource
}

func newLedger(total rset) *ledger {
	l := &ledger{pos: make(map[string]int, len(total)), vols: map[string]int{}}
	l.addTotal(total...)
	return l
}

func (e *lentry) hasFree() bool { return !isEmptyRes(&e.free) }

func (l *ledger) lookup(r *mesos.Resource) (int, bool) {
	var buf [128]byte
	j, ok := l.pos[string(appendResKey(buf[:0], r))]
	return j, ok
}

// note records an entry's total before its first change in a journal.
func (l *ledger) note(key string, j int, had bool) {
	if l.journal == nil {
		return
	}
	if _, seen := l.journal[key]; seen {
		return
	}
	je := journalEntry{had: had}
	if had {
		je.total = l.ents[j].total
	}
	l.journal[key] = je
}

// addTotal adds resources to the total; they are free.
func (l *ledger) addTotal(rs ...mesos.Resource) {
	l.version++
	var buf [128]byte
	for i := range rs {
		o := &rs[i]
		if isEmptyRes(o) {
			continue
		}
		k := appendResKey(buf[:0], o)
		if j, ok := l.pos[string(k)]; ok {
			l.note(l.ents[j].key, j, true)
			e := &l.ents[j]
			e.total = addValue(e.total, *o)
			l.setFree(e, addValue(e.free, *o))
			continue
		}
		key := string(k)
		l.note(key, 0, false)
		l.pos[key] = len(l.ents)
		l.ents = append(l.ents, lentry{key: key, total: *o, free: *o, live: true})
		l.nfree++
		if p := o.GetDisk().GetPersistence(); p != nil {
			l.vols[volumeKey(reservationRole(o), p.ID)]++
		}
	}
}

func volumeKey(role, persistenceID string) string { return role + "\x00" + persistenceID }

// hasVolume reports whether the total holds the persistent volume id of
// role.
func (l *ledger) hasVolume(role, persistenceID string) bool {
	return l.vols[volumeKey(role, persistenceID)] > 0
}

// subTotal removes free resources from the total.
func (l *ledger) subTotal(rs ...mesos.Resource) {
	l.version++
	for i := range rs {
		o := &rs[i]
		j, ok := l.lookup(o)
		if !ok {
			continue
		}
		e := &l.ents[j]
		l.note(e.key, j, true)
		e.total = subValue(e.total, *o)
		l.setFree(e, subValue(e.free, *o))
		if isEmptyRes(&e.total) {
			l.remove(j)
		}
	}
}

// use marks resources as used (by a task, executor or offer).
func (l *ledger) use(rs ...mesos.Resource) {
	l.version++
	for i := range rs {
		if j, ok := l.lookup(&rs[i]); ok {
			e := &l.ents[j]
			if sameValuePointers(&e.free, &rs[i]) {
				// rs[i] came from free(): all of it is taken.
				l.setFree(e, emptied(e.free))
				continue
			}
			l.setFree(e, subValue(e.free, rs[i]))
		}
	}
}

// sameValuePointers reports whether a and b share their value (and so hold
// equal values, values being immutable).
func sameValuePointers(a, b *mesos.Resource) bool {
	switch a.GetType() {
	case mesos.SCALAR:
		return a.Scalar != nil && a.Scalar == b.Scalar
	case mesos.RANGES:
		return a.Ranges != nil && a.Ranges == b.Ranges
	case mesos.SET:
		return a.Set != nil && a.Set == b.Set
	}
	return false
}

// emptied returns r with an empty value of its type.
func emptied(r mesos.Resource) mesos.Resource {
	switch r.GetType() {
	case mesos.SCALAR:
		r.Scalar = &mesos.Value_Scalar{}
	case mesos.RANGES:
		r.Ranges = &mesos.Value_Ranges{}
	case mesos.SET:
		r.Set = &mesos.Value_Set{}
	}
	return r
}

// release gives used resources back.
func (l *ledger) release(rs ...mesos.Resource) {
	l.version++
	for i := range rs {
		if isEmptyRes(&rs[i]) {
			continue
		}
		if j, ok := l.lookup(&rs[i]); ok {
			e := &l.ents[j]
			l.setFree(e, addValue(e.free, rs[i]))
		}
	}
}

func (l *ledger) setFree(e *lentry, v mesos.Resource) {
	before := e.hasFree()
	e.free = v
	switch after := e.hasFree(); {
	case before && !after:
		l.nfree--
	case !before && after:
		l.nfree++
	}
}

func (l *ledger) remove(j int) {
	e := &l.ents[j]
	if e.hasFree() {
		l.nfree--
	}
	delete(l.pos, e.key)
	if p := e.total.GetDisk().GetPersistence(); p != nil {
		k := volumeKey(reservationRole(&e.total), p.ID)
		if l.vols[k]--; l.vols[k] <= 0 {
			delete(l.vols, k)
		}
	}
	*e = lentry{}
	l.dead++
	if l.dead > 32 && l.dead > len(l.ents)/2 {
		out := l.ents[:0]
		for _, e := range l.ents {
			if e.live {
				l.pos[e.key] = len(out)
				out = append(out, e)
			}
		}
		clear(l.ents[len(out):])
		l.ents = out
		l.dead = 0
	}
}

// total returns the agent's total resources in order.
func (l *ledger) totalSet() rset {
	out := make(rset, 0, len(l.pos))
	for i := range l.ents {
		if l.ents[i].live {
			out = append(out, l.ents[i].total)
		}
	}
	return out
}

// free returns the free resources in the total's order.
func (l *ledger) free() rset {
	if l.nfree == 0 {
		return nil
	}
	out := make(rset, 0, l.nfree)
	for i := range l.ents {
		if e := &l.ents[i]; e.live && e.hasFree() {
			out = append(out, e.free)
		}
	}
	return out
}

// hasFree reports whether any resource is free.
func (l *ledger) hasFree() bool { return l.nfree > 0 }

// totalOf returns the total resource with r's identity, or nil.
func (l *ledger) totalOf(r *mesos.Resource) *mesos.Resource {
	if j, ok := l.lookup(r); ok {
		return &l.ents[j].total
	}
	return nil
}

// totalContains reports whether the total contains r.
func (l *ledger) totalContains(r *mesos.Resource) bool {
	if isEmptyRes(r) {
		return true
	}
	t := l.totalOf(r)
	return t != nil && containsValue(*t, *r)
}

// beginJournal starts recording total changes; endJournal reports whether
// the total differs from what it was at beginJournal, as a comparison of
// the whole set would (values only, volume use ignored).
func (l *ledger) beginJournal() { l.journal = map[string]journalEntry{} }

func (l *ledger) endJournal() (changed bool) {
	for key, je := range l.journal {
		j, live := l.pos[key]
		switch {
		case !je.had && !live, je.had && !live && isEmptyRes(&je.total):
		case je.had != live:
			changed = true
		case !sameValue(&je.total, &l.ents[j].total):
			changed = true
		}
	}
	l.journal = nil
	return changed
}
