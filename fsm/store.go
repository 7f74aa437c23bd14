package fsm

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Store is the in-memory, indexed replica of Berth's state: apps with their
// version history, instances, reservations, volumes, deployments and the
// framework id. Only the FSM writes to it; everything else reads.
//
// Messages returned by Store are shared with the store: callers must not
// modify them (proto.Clone first).
type Store struct {
	db        *memdb.MemDB
	lastIndex atomic.Uint64

	// pub orders the publication of a write (memdb's commit and inst)
	// with the taking of snapshots, so that a snapshot's tables and
	// instances are of the same index.
	pub  sync.RWMutex
	inst *instanceSet // the instances table (instances.go), as published

	mu    sync.Mutex
	watch chan struct{}
}

// txn is a write transaction of the store: memdb's, for every table but
// the instances, and a clone of the instance set, published together by
// commit. Abort (memdb's) drops both: the clone is never published.
type txn struct {
	*memdb.Txn
	inst *instanceSet
}

// write starts a write transaction. Only the FSM's apply (one goroutine)
// and a restore building its own store write.
func (s *Store) write() *txn {
	return &txn{Txn: s.db.Txn(true), inst: s.inst.clone()}
}

// NewStore returns an empty store.
func NewStore() *Store {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is static; an error here is a programming error.
		panic("fsm: invalid state store schema: " + err.Error())
	}
	return &Store{db: db, inst: newInstanceSet(), watch: make(chan struct{})}
}

// Watch returns a channel that is closed at the next change to the store.
// Call Watch again after it fires.
func (s *Store) Watch() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watch
}

// notify wakes every Watch caller.
func (s *Store) notify() {
	s.mu.Lock()
	close(s.watch)
	s.watch = make(chan struct{})
	s.mu.Unlock()
}

// LastIndex is the Raft index of the last entry applied to the store.
func (s *Store) LastIndex() uint64 { return s.lastIndex.Load() }

// commit commits tx (nil: a new one), recording index as the store's
// applied index in the same transaction, and wakes the watchers.
func (s *Store) commit(tx *txn, index uint64) {
	if tx == nil {
		tx = s.write()
		defer tx.Abort()
	}
	if err := tx.Insert(tableMeta, &v1.MetaRecord{Key: metaAppliedIndex, Value: strconv.FormatUint(index, 10)}); err != nil {
		panic(fmt.Sprintf("fsm: record applied index %d: %v", index, err))
	}
	s.pub.Lock()
	tx.Commit()
	s.inst = tx.inst
	s.pub.Unlock()
	s.lastIndex.Store(index)
	s.notify()
}

// Snapshot is a read-only view of the store at one moment: every read
// through it sees the same applied index, however many tables it spans
// (as Nomad's StateStore.Snapshot). Taking one is cheap (a memdb read
// transaction over immutable trees); it never blocks writers and never
// changes.
//
// Messages returned by a Snapshot are shared with the store: callers must
// not modify them (proto.Clone first).
type Snapshot struct {
	tx    *memdb.Txn
	inst  *instanceSet
	index uint64
}

// Snapshot returns a view of the store as it is now.
func (s *Store) Snapshot() *Snapshot {
	s.pub.RLock()
	tx := s.db.Txn(false)
	snap := &Snapshot{tx: tx, inst: s.inst}
	s.pub.RUnlock()
	if raw, err := tx.First(tableMeta, "id", metaAppliedIndex); err == nil && raw != nil {
		snap.index, _ = strconv.ParseUint(raw.(*v1.MetaRecord).GetValue(), 10, 64)
	}
	return snap
}

// Index is the Raft index of the last entry applied to the store when the
// snapshot was taken.
func (s *Snapshot) Index() uint64 { return s.index }

func first[T any](s *Snapshot, table, index string, args ...any) (T, error) {
	var zero T
	raw, err := s.tx.First(table, index, args...)
	if err != nil {
		return zero, fmt.Errorf("read %s by %s: %w", table, index, err)
	}
	if raw == nil {
		return zero, nil
	}
	return raw.(T), nil
}

func all[T any](s *Snapshot, table, index string, args ...any) ([]T, error) {
	it, err := s.tx.Get(table, index, args...)
	if err != nil {
		return nil, fmt.Errorf("read %s by %s: %w", table, index, err)
	}
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(T))
	}
	return out, nil
}

// App returns the app with the given id, or nil.
func (s *Snapshot) App(id string) (*v1.App, error) { return first[*v1.App](s, tableApps, "id", id) }

// Apps returns every app, sorted by id.
func (s *Snapshot) Apps() ([]*v1.App, error) { return all[*v1.App](s, tableApps, "id") }

// AppVersion returns the app as it was stored at version, or nil.
func (s *Snapshot) AppVersion(id, version string) (*v1.App, error) {
	v, err := first[*v1.AppVersion](s, tableAppVersions, "id", id, version)
	return v.GetApp(), err
}

// AppVersions lists the stored versions of an app, newest first.
func (s *Snapshot) AppVersions(id string) ([]string, error) {
	vs, err := all[*v1.AppVersion](s, tableAppVersions, "app", id)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, v.GetVersion())
	}
	sort.SliceStable(out, func(i, j int) bool { return versionAfter(out[i], out[j]) })
	return out, nil
}

// Instance returns the instance with the given id, or nil.
func (s *Snapshot) Instance(id string) (*v1.Instance, error) {
	return s.inst.get(id), nil
}

// Instances returns every instance, sorted by id.
func (s *Snapshot) Instances() ([]*v1.Instance, error) {
	out := make([]*v1.Instance, 0, s.inst.len())
	for i := range s.inst.all() {
		out = append(out, i)
	}
	return out, nil
}

// InstancesByApp returns the instances of one app, sorted by id.
func (s *Snapshot) InstancesByApp(appID string) ([]*v1.Instance, error) {
	seq, err := s.InstancesOfApp(appID)
	if err != nil {
		return nil, err
	}
	out := slices.Collect(seq)
	// Ids in the format come in id order; the few that are not follow.
	if !slices.IsSortedFunc(out, compareIDs) {
		slices.SortFunc(out, compareIDs)
	}
	return out, nil
}

func compareIDs(a, b *v1.Instance) int { return strings.Compare(a.GetId(), b.GetId()) }

// InstancesOfApp returns the instances of one app, in no promised order,
// as a sequence to range over once: a pass over an app of thousands (its
// summary) without building their list.
func (s *Snapshot) InstancesOfApp(appID string) (iter.Seq[*v1.Instance], error) {
	return s.inst.ofApp(appID), nil
}

// InstanceByTaskID returns the instance whose current task has this id, or nil.
func (s *Snapshot) InstanceByTaskID(taskID string) (*v1.Instance, error) {
	return instanceByTask(s.inst, taskID), nil
}

// instanceByTask finds the instance whose current task is taskID: the
// instance the id names, or one indexed by task because its task id does
// not follow the format.
func instanceByTask(set *instanceSet, taskID string) *v1.Instance {
	if id := InstanceIDOfTask(taskID); id != "" {
		if inst := set.get(id); inst.GetTask().GetId() == taskID {
			return inst
		}
	}
	return set.byOddTask(taskID)
}

// activeReservation is the instance's berth, or nil when it has none
// (no reservation, or one in state NONE).
func activeReservation(inst *v1.Instance) *v1.Reservation {
	r := inst.GetReservation()
	if r.GetState() == v1.ReservationState_RESERVATION_STATE_NONE ||
		r.GetState() == v1.ReservationState_RESERVATION_STATE_UNSPECIFIED {
		return nil
	}
	return r
}

// reservationOf is the instance's berth as Reservation returns it: with
// the instance's id.
func reservationOf(inst *v1.Instance) *v1.Reservation {
	r := activeReservation(inst)
	if r != nil && r.GetInstanceId() != inst.GetId() {
		r = proto.Clone(r).(*v1.Reservation)
		r.InstanceId = inst.GetId()
	}
	return r
}

// volumeOf is one volume of the instance's berth as Volume returns it:
// with the instance's and the agent's id.
func volumeOf(inst *v1.Instance, v *v1.LocalVolume) *v1.LocalVolume {
	r := inst.GetReservation()
	if v.GetInstanceId() != inst.GetId() || v.GetAgentId() != r.GetAgentId() {
		v = proto.Clone(v).(*v1.LocalVolume)
		v.InstanceId = inst.GetId()
		v.AgentId = r.GetAgentId()
	}
	return v
}

// Reservation returns the reservation of an instance, or nil if it has none.
func (s *Snapshot) Reservation(instanceID string) (*v1.Reservation, error) {
	inst, err := s.Instance(instanceID)
	if err != nil || inst == nil {
		return nil, err
	}
	return reservationOf(inst), nil
}

// ReservationsByAgent returns the reservations made on one agent. It reads
// every instance (nothing on the hot paths asks it; an index would cost
// every instance memory).
func (s *Snapshot) ReservationsByAgent(agentID string) ([]*v1.Reservation, error) {
	insts, err := s.Instances()
	if err != nil {
		return nil, err
	}
	var out []*v1.Reservation
	for _, inst := range insts {
		if r := reservationOf(inst); r != nil && r.GetAgentId() == agentID {
			out = append(out, r)
		}
	}
	return out, nil
}

// Volume returns the persistent volume with the given persistence id, or nil.
func (s *Snapshot) Volume(persistenceID string) (*v1.LocalVolume, error) {
	inst := s.inst.byVolumeID(persistenceID)
	if inst == nil {
		return nil, nil
	}
	for _, v := range inst.GetReservation().GetVolumes() {
		if v.GetPersistenceId() == persistenceID {
			return volumeOf(inst, v), nil
		}
	}
	return nil, nil
}

// Volumes returns every known persistent volume, sorted by persistence id.
// It reads every instance.
func (s *Snapshot) Volumes() ([]*v1.LocalVolume, error) {
	insts, err := s.Instances()
	if err != nil {
		return nil, err
	}
	var out []*v1.LocalVolume
	for _, inst := range insts {
		for _, v := range activeReservation(inst).GetVolumes() {
			out = append(out, volumeOf(inst, v))
		}
	}
	slices.SortFunc(out, func(a, b *v1.LocalVolume) int { return strings.Compare(a.GetPersistenceId(), b.GetPersistenceId()) })
	return out, nil
}

// Deployment returns the deployment with the given id, or nil.
func (s *Snapshot) Deployment(id string) (*v1.Deployment, error) {
	return first[*v1.Deployment](s, tableDeployments, "id", id)
}

// Deployments returns every deployment, oldest first.
func (s *Snapshot) Deployments() ([]*v1.Deployment, error) {
	out, err := all[*v1.Deployment](s, tableDeployments, "id")
	if err != nil {
		return nil, err
	}
	sortDeployments(out)
	return out, nil
}

// DeploymentsByApp returns the deployments that affect an app, oldest first.
func (s *Snapshot) DeploymentsByApp(appID string) ([]*v1.Deployment, error) {
	out, err := all[*v1.Deployment](s, tableDeployments, "app", appID)
	if err != nil {
		return nil, err
	}
	sortDeployments(out)
	return out, nil
}

func sortDeployments(ds []*v1.Deployment) {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i].GetCreatedAt().AsTime(), ds[j].GetCreatedAt().AsTime()
		if a.Equal(b) {
			return ds[i].GetId() < ds[j].GetId()
		}
		return a.Before(b)
	})
}

// FrameworkID returns the Mesos framework id, or "" before the first
// subscription.
func (s *Snapshot) FrameworkID() (string, error) {
	m, err := first[*v1.MetaRecord](s, tableMeta, "id", metaFrameworkID)
	return m.GetValue(), err
}

// versionAfter reports whether version a is newer than b. Versions are RFC
// 3339 timestamps; ones that do not parse sort lexically after the rest.
func versionAfter(a, b string) bool {
	ta, errA := time.Parse(time.RFC3339Nano, a)
	tb, errB := time.Parse(time.RFC3339Nano, b)
	switch {
	case errA == nil && errB == nil && !ta.Equal(tb):
		return ta.After(tb)
	case errA == nil && errB != nil:
		return false
	case errA != nil && errB == nil:
		return true
	}
	return a > b
}

// WaitIndex waits until the store that state returns has applied the log
// up to index, or ctx ends (then it returns ctx's error). It watches the
// store rather than polling, and follows a store swapped in by a snapshot
// restore (Restore wakes the old store's watchers).
func WaitIndex(ctx context.Context, state func() *Store, index uint64) error {
	for {
		s := state()
		watch := s.Watch()
		if s.LastIndex() >= index {
			return nil
		}
		select {
		case <-watch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
