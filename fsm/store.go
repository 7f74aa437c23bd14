package fsm

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"

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

	mu    sync.Mutex
	watch chan struct{}
}

// NewStore returns an empty store.
func NewStore() *Store {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is static; an error here is a programming error.
		panic("fsm: invalid state store schema: " + err.Error())
	}
	return &Store{db: db, watch: make(chan struct{})}
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

func first[T any](s *Store, table, index string, args ...any) T {
	var zero T
	raw, err := s.db.Txn(false).First(table, index, args...)
	if err != nil || raw == nil {
		return zero
	}
	return raw.(T)
}

func all[T any](s *Store, table, index string, args ...any) []T {
	it, err := s.db.Txn(false).Get(table, index, args...)
	if err != nil {
		return nil
	}
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(T))
	}
	return out
}

// App returns the app with the given id, or nil.
func (s *Store) App(id string) *v1.App { return first[*v1.App](s, tableApps, "id", id) }

// Apps returns every app, sorted by id.
func (s *Store) Apps() []*v1.App { return all[*v1.App](s, tableApps, "id") }

// AppVersion returns the app as it was stored at version, or nil.
func (s *Store) AppVersion(id, version string) *v1.App {
	v := first[*v1.AppVersion](s, tableAppVersions, "id", id, version)
	if v == nil {
		return nil
	}
	return v.GetApp()
}

// AppVersions lists the stored versions of an app, newest first.
func (s *Store) AppVersions(id string) []string {
	var out []string
	for _, v := range all[*v1.AppVersion](s, tableAppVersions, "app", id) {
		out = append(out, v.GetVersion())
	}
	sort.SliceStable(out, func(i, j int) bool { return versionAfter(out[i], out[j]) })
	return out
}

// Instance returns the instance with the given id, or nil.
func (s *Store) Instance(id string) *v1.Instance {
	return first[*v1.Instance](s, tableInstances, "id", id)
}

// Instances returns every instance, sorted by id.
func (s *Store) Instances() []*v1.Instance { return all[*v1.Instance](s, tableInstances, "id") }

// InstancesByApp returns the instances of one app, sorted by id.
func (s *Store) InstancesByApp(appID string) []*v1.Instance {
	return all[*v1.Instance](s, tableInstances, "app", appID)
}

// InstanceByTaskID returns the instance whose current task has this id, or nil.
func (s *Store) InstanceByTaskID(taskID string) *v1.Instance {
	return first[*v1.Instance](s, tableInstances, "task", taskID)
}

// Reservation returns the reservation of an instance, or nil if it has none.
func (s *Store) Reservation(instanceID string) *v1.Reservation {
	return first[*v1.Reservation](s, tableReservation, "id", instanceID)
}

// ReservationsByAgent returns the reservations made on one agent.
func (s *Store) ReservationsByAgent(agentID string) []*v1.Reservation {
	return all[*v1.Reservation](s, tableReservation, "agent", agentID)
}

// Volume returns the persistent volume with the given persistence id, or nil.
func (s *Store) Volume(persistenceID string) *v1.LocalVolume {
	return first[*v1.LocalVolume](s, tableVolumes, "id", persistenceID)
}

// Volumes returns every known persistent volume, sorted by persistence id.
func (s *Store) Volumes() []*v1.LocalVolume { return all[*v1.LocalVolume](s, tableVolumes, "id") }

// Deployment returns the deployment with the given id, or nil.
func (s *Store) Deployment(id string) *v1.Deployment {
	return first[*v1.Deployment](s, tableDeployments, "id", id)
}

// Deployments returns every deployment, oldest first.
func (s *Store) Deployments() []*v1.Deployment {
	out := all[*v1.Deployment](s, tableDeployments, "id")
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].GetCreatedAt().AsTime(), out[j].GetCreatedAt().AsTime()
		if a.Equal(b) {
			return out[i].GetId() < out[j].GetId()
		}
		return a.Before(b)
	})
	return out
}

// DeploymentsByApp returns the deployments that affect an app, oldest first.
func (s *Store) DeploymentsByApp(appID string) []*v1.Deployment {
	var out []*v1.Deployment
	for _, d := range s.Deployments() {
		for _, a := range d.GetAffectedApps() {
			if a == appID {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// FrameworkID returns the Mesos framework id, or "" before the first
// subscription.
func (s *Store) FrameworkID() string {
	m := first[*v1.MetaRecord](s, tableMeta, "id", metaFrameworkID)
	return m.GetValue()
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
