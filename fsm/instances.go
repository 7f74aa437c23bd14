package fsm

import (
	"iter"
	"strings"

	"github.com/google/btree"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// instanceSet is the store's instances table: every instance by id, and the
// indexes that find one by persistence id, by app and by task. It is kept
// in copy-on-write B-trees rather than in memdb: memdb's radix trees cost
// each entry of each index a node, a leaf, a copy of its key and two
// channels, about 450 bytes, and at 100,000 instances (two entries each)
// that was 90 MB of every server's 213 MiB store, and a fifth of a
// follower's CPU in placement went into radix inserts (BENCHMARKS.md,
// issue 14). A B-tree entry here is a pointer, or two with its key.
//
// A set is immutable once published: a write transaction changes a clone
// (O(1), the trees' nodes are shared and copied on the first write to
// each), and the store publishes it with the memdb transaction's commit.
// Readers hold the set of their snapshot and never see a change.
type instanceSet struct {
	byID *btree.BTreeG[*v1.Instance]
	// byVolume: the persistence ids of the instances' berths, each owned
	// by one instance (invariant 2; putInstance checks it).
	byVolume *btree.BTreeG[instanceRef]
	// byApp and byTask hold only the instances whose ids do not follow the
	// format (invariant 5, ids.go): the others are found through byID, by
	// their id's prefix, or by the instance id a task id carries.
	byApp  *btree.BTreeG[instanceRef] // key: app id + "\x00" + instance id
	byTask *btree.BTreeG[instanceRef] // key: task id
}

// instanceRef is an index entry: a key and the instance it finds.
type instanceRef struct {
	key  string
	inst *v1.Instance
}

// instanceDegree is the B-trees' degree: nodes of up to 31 entries, so a
// write copies a few small nodes on its path.
const instanceDegree = 16

func lessInstance(a, b *v1.Instance) bool { return a.GetId() < b.GetId() }
func lessRef(a, b instanceRef) bool       { return a.key < b.key }

func newInstanceSet() *instanceSet {
	return &instanceSet{
		byID:     btree.NewG(instanceDegree, lessInstance),
		byVolume: btree.NewG(instanceDegree, lessRef),
		byApp:    btree.NewG(instanceDegree, lessRef),
		byTask:   btree.NewG(instanceDegree, lessRef),
	}
}

// clone returns a copy to write to; s is unchanged and stays readable
// concurrently. Only the writer may clone (btree.Clone writes s's
// copy-on-write context, which readers do not read).
func (s *instanceSet) clone() *instanceSet {
	return &instanceSet{byID: s.byID.Clone(), byVolume: s.byVolume.Clone(), byApp: s.byApp.Clone(), byTask: s.byTask.Clone()}
}

func (s *instanceSet) len() int { return s.byID.Len() }

// get returns the instance with this id, or nil.
func (s *instanceSet) get(id string) *v1.Instance {
	inst, _ := s.byID.Get(&v1.Instance{Id: id})
	return inst
}

// byVolumeID returns the instance whose berth holds this persistence id,
// or nil.
func (s *instanceSet) byVolumeID(pid string) *v1.Instance {
	r, _ := s.byVolume.Get(instanceRef{key: pid})
	return r.inst
}

// byOddTask returns the instance indexed by this task id (one whose task
// id does not carry its instance id), or nil.
func (s *instanceSet) byOddTask(taskID string) *v1.Instance {
	r, _ := s.byTask.Get(instanceRef{key: taskID})
	return r.inst
}

// all yields every instance in id order.
func (s *instanceSet) all() iter.Seq[*v1.Instance] {
	return func(yield func(*v1.Instance) bool) {
		s.byID.Ascend(func(i *v1.Instance) bool { return yield(i) })
	}
}

// ofApp yields the instances of one app: those whose ids carry the app's
// prefix in id order (other apps may share the prefix: filtered), then
// the few indexed by app.
func (s *instanceSet) ofApp(appID string) iter.Seq[*v1.Instance] {
	return func(yield func(*v1.Instance) bool) {
		prefix := instanceIDPrefix(appID)
		more := true
		s.byID.AscendGreaterOrEqual(&v1.Instance{Id: prefix}, func(i *v1.Instance) bool {
			if !strings.HasPrefix(i.GetId(), prefix) {
				return false
			}
			if i.GetAppId() == appID {
				more = yield(i)
			}
			return more
		})
		if !more {
			return
		}
		key := appID + "\x00"
		s.byApp.AscendGreaterOrEqual(instanceRef{key: key}, func(r instanceRef) bool {
			if !strings.HasPrefix(r.key, key) {
				return false
			}
			more = yield(r.inst)
			return more
		})
	}
}

// appKey is inst's key in byApp, or "" when its id carries its app's
// prefix (not indexed).
func appKey(inst *v1.Instance) string {
	if strings.HasPrefix(inst.GetId(), instanceIDPrefix(inst.GetAppId())) {
		return ""
	}
	return inst.GetAppId() + "\x00" + inst.GetId()
}

// oddTaskKey is inst's key in byTask, or "" when it has no task or its
// task id carries its id (not indexed).
func oddTaskKey(inst *v1.Instance) string {
	t := inst.GetTask().GetId()
	if t == "" || InstanceIDOfTask(t) == inst.GetId() {
		return ""
	}
	return t
}

// volumeIDs are the persistence ids of inst's berth.
func volumeIDs(inst *v1.Instance) []string {
	vols := activeReservation(inst).GetVolumes()
	ids := make([]string, 0, len(vols))
	for _, v := range vols {
		if pid := v.GetPersistenceId(); pid != "" {
			ids = append(ids, pid)
		}
	}
	return ids
}

// put stores inst, replacing the instance with its id (whose index
// entries go). The caller checked that its volumes and task are its own.
func (s *instanceSet) put(inst *v1.Instance) {
	if old, ok := s.byID.ReplaceOrInsert(inst); ok {
		s.unindex(old)
	}
	for _, pid := range volumeIDs(inst) {
		s.byVolume.ReplaceOrInsert(instanceRef{pid, inst})
	}
	if k := appKey(inst); k != "" {
		s.byApp.ReplaceOrInsert(instanceRef{k, inst})
	}
	if k := oddTaskKey(inst); k != "" {
		s.byTask.ReplaceOrInsert(instanceRef{k, inst})
	}
}

// delete removes the instance with this id, if any.
func (s *instanceSet) delete(id string) {
	if old, ok := s.byID.Delete(&v1.Instance{Id: id}); ok {
		s.unindex(old)
	}
}

// unindex removes the index entries that point to old (put then adds
// those of the instance that replaces it).
func (s *instanceSet) unindex(old *v1.Instance) {
	drop := func(t *btree.BTreeG[instanceRef], key string) {
		if r, ok := t.Get(instanceRef{key: key}); ok && r.inst == old {
			t.Delete(r)
		}
	}
	for _, pid := range volumeIDs(old) {
		drop(s.byVolume, pid)
	}
	if k := appKey(old); k != "" {
		drop(s.byApp, k)
	}
	if k := oddTaskKey(old); k != "" {
		drop(s.byTask, k)
	}
}
