package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// StateReader is a read-only view of the replicated store at one moment:
// every read through one StateReader sees the same applied index.
// *fsm.Snapshot satisfies it. Returned messages are shared and never
// mutated by the scheduler.
type StateReader interface {
	// Index is the Raft index of the last entry the view reflects.
	Index() uint64
	FrameworkID() (string, error)
	Apps() ([]*v1.App, error)
	AppVersion(id, version string) (*v1.App, error)
	Instances() ([]*v1.Instance, error)
	Instance(id string) (*v1.Instance, error)
	InstanceByTaskID(taskID string) (*v1.Instance, error)
	Deployments() ([]*v1.Deployment, error)
	Deployment(id string) (*v1.Deployment, error)
}

// State is a plain snapshot of the desired and recorded actual state that a
// decision is made on: the framework id, apps, instances and deployments as
// committed, plus the leader's volatile Memory.
type State struct {
	FrameworkID string
	// Apps by id.
	Apps map[string]*v1.App
	// Instances by id.
	Instances map[string]*v1.Instance
	// Deployments by id.
	Deployments map[string]*v1.Deployment
	// Backups are the backup and restore records by id (see backup.go).
	Backups map[string]*v1.Backup
	// AppVersion returns a stored app version, or nil. May be nil itself.
	AppVersion func(appID, version string) (*v1.App, error)
	// Mem is the leader-local memory of what was sent (kills, revives,
	// reconciliation). It is lost on failover, which only causes resends.
	Mem *Memory

	byTask map[string]string
	lookup func(taskID string) (*v1.Instance, error)
	sorted []string            // sortedInstanceIDs, computed once
	byApp  map[string][]string // instanceIDsOf, computed once
	// The instances of sorted and of byApp's lists, in the same order
	// (instancesInOrder, appInstancesInOrder): a pass that walks them
	// reads each instance without a map lookup. At 100,000 instances
	// the lookups were a quarter of a new leader's CPU: each costs cache
	// misses on the key, the map's group and the stored key.
	inOrder   []*v1.Instance
	inOrderOf map[string][]*v1.Instance
}

// NewState reads apps, instances and deployments from the one view r, so
// that a decision never mixes two moments of the store. mem may be nil for
// a fresh memory.
func NewState(r StateReader, mem *Memory) (*State, error) {
	if mem == nil {
		mem = NewMemory()
	}
	fid, err := r.FrameworkID()
	if err != nil {
		return nil, fmt.Errorf("read framework id: %w", err)
	}
	apps, err := r.Apps()
	if err != nil {
		return nil, fmt.Errorf("read apps: %w", err)
	}
	insts, err := r.Instances()
	if err != nil {
		return nil, fmt.Errorf("read instances: %w", err)
	}
	deps, err := r.Deployments()
	if err != nil {
		return nil, fmt.Errorf("read deployments: %w", err)
	}
	st := &State{
		FrameworkID: fid,
		Apps:        make(map[string]*v1.App, len(apps)),
		Instances:   make(map[string]*v1.Instance, len(insts)),
		Deployments: make(map[string]*v1.Deployment, len(deps)),
		AppVersion:  r.AppVersion,
		Mem:         mem,
		lookup:      r.InstanceByTaskID,
	}
	for _, a := range apps {
		st.Apps[a.GetId()] = a
	}
	for _, i := range insts {
		st.Instances[i.GetId()] = i
	}
	if ids := instanceIDs(insts); ids != nil {
		st.sorted = ids // the store lists them in id order: no sort
	}
	for _, d := range deps {
		st.Deployments[d.GetId()] = d
	}
	if err := st.loadBackups(r); err != nil {
		return nil, err
	}
	return st, nil
}

// instanceByTask finds the instance whose current task has the given id.
func (s *State) instanceByTask(taskID string) *v1.Instance {
	// An app task's id names its instance (taskIDFor): when that instance's
	// current task is this one, it is the one (the store lets one task
	// belong to one instance), found without the store's index, whose
	// lookups were a tenth of a new leader's CPU while 100,000 tasks
	// answered its reconciliation.
	if id := instanceIDOfTask(taskID); id != "" {
		if i := s.Instances[id]; i != nil && i.GetTask().GetId() == taskID {
			return i
		}
	}
	if s.lookup != nil && s.byTask == nil {
		// Use the store's index, checked against this snapshot (the
		// driver may have refreshed some instances after its commit).
		i, err := s.lookup(taskID)
		if err == nil && i != nil {
			if mine := s.Instances[i.GetId()]; mine != nil && mine.GetTask().GetId() == taskID {
				return mine
			}
		} else if err == nil && len(s.Instances) > 0 {
			return nil
		}
	}
	if s.byTask == nil {
		s.byTask = make(map[string]string, len(s.Instances))
		for id, i := range s.Instances {
			if t := i.GetTask(); t != nil && t.GetId() != "" {
				s.byTask[t.GetId()] = id
			}
		}
	}
	if id, ok := s.byTask[taskID]; ok {
		return s.Instances[id]
	}
	return nil
}

func (s *State) appVersion(appID, version string) (*v1.App, error) {
	if a := s.Apps[appID]; a != nil && a.GetVersion() == version {
		return a, nil
	}
	if s.AppVersion == nil || version == "" {
		return nil, nil
	}
	return s.AppVersion(appID, version)
}

// sortedInstanceIDs returns the instance ids in order. The slice is
// shared by every caller: do not modify it.
func (s *State) sortedInstanceIDs() []string {
	if s.sorted != nil {
		return s.sorted
	}
	ids := make([]string, 0, len(s.Instances))
	for id := range s.Instances {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	s.sorted = ids
	return ids
}

// instanceIDs returns the ids of insts when they are sorted and distinct,
// else nil.
func instanceIDs(insts []*v1.Instance) []string {
	ids := make([]string, len(insts))
	for k, i := range insts {
		ids[k] = i.GetId()
		if k > 0 && ids[k-1] >= ids[k] {
			return nil
		}
	}
	return ids
}

// instanceIDsOf returns the sorted ids of an app's instances. The slice is
// shared by every caller: do not modify it.
func (s *State) instanceIDsOf(appID string) []string {
	if s.byApp == nil {
		s.byAppInOrder()
	}
	return s.byApp[appID]
}

// byAppInOrder computes byApp, and the matching inOrderOf lists, from the
// sorted ids. An app's instance ids share its prefix (instanceIDFor), so
// they mostly lie in one run of the sorted ids: that run is the app's
// list, a part of the sorted slice, without a copy or a map access per
// instance. An app whose ids lie in several runs (another app's slug can
// extend this one's prefix) gets them copied together.
func (s *State) byAppInOrder() {
	ids, insts := s.sortedInstanceIDs(), s.instancesInOrder()
	s.byApp = map[string][]string{}
	s.inOrderOf = map[string][]*v1.Instance{}
	start := 0
	for k := 1; k <= len(ids); k++ {
		a := insts[start].GetAppId()
		if k < len(ids) && insts[k].GetAppId() == a {
			continue
		}
		if prev, ok := s.byApp[a]; ok {
			s.byApp[a] = append(slices.Clip(prev), ids[start:k]...)
			s.inOrderOf[a] = append(slices.Clip(s.inOrderOf[a]), insts[start:k]...)
		} else {
			s.byApp[a] = ids[start:k:k]
			s.inOrderOf[a] = insts[start:k:k]
		}
		start = k
	}
}

// appsWithInstances returns the ids of the apps that have instances (apps
// removed included), sorted.
func (s *State) appsWithInstances() []string {
	s.instanceIDsOf("")
	return slices.Sorted(maps.Keys(s.byApp))
}

// changed drops what was derived from Instances, after the driver updated
// some in place (see snapshots).
func (s *State) changed() {
	s.byTask = nil
	s.sorted = nil
	s.byApp = nil
	s.inOrder = nil
	s.inOrderOf = nil
}

// instancesInOrder returns the instances of sortedInstanceIDs, in its
// order. The slice is shared: do not modify it.
func (s *State) instancesInOrder() []*v1.Instance {
	if s.inOrder == nil {
		s.inOrder = lookupAll(s.Instances, s.sortedInstanceIDs())
	}
	return s.inOrder
}

// appInstancesInOrder returns the instances of instanceIDsOf(appID), in
// its order. The slice is shared: do not modify it.
func (s *State) appInstancesInOrder(appID string) []*v1.Instance {
	if l, ok := s.inOrderOf[appID]; ok {
		return l
	}
	l := lookupAll(s.Instances, s.instanceIDsOf(appID))
	if s.inOrderOf == nil {
		s.inOrderOf = map[string][]*v1.Instance{}
	}
	s.inOrderOf[appID] = l
	return l
}

func lookupAll(insts map[string]*v1.Instance, ids []string) []*v1.Instance {
	l := make([]*v1.Instance, len(ids))
	for k, id := range ids {
		l[k] = insts[id]
	}
	return l
}

// ordered returns the stored instances parallel to ids when ids is one of
// the lists the state keeps (every id, or one app's), else nil.
func (s *State) ordered(ids []string) []*v1.Instance {
	if len(ids) == 0 {
		return nil
	}
	if sameList(ids, s.sorted) {
		return s.instancesInOrder()
	}
	if s.byApp != nil {
		if first := s.Instances[ids[0]]; first != nil {
			if app := first.GetAppId(); sameList(ids, s.byApp[app]) {
				return s.appInstancesInOrder(app)
			}
		}
	}
	return nil
}

// sameList reports whether a and b are the same slice (not equal ones).
func sameList(a, b []string) bool {
	return len(a) > 0 && len(a) == len(b) && &a[0] == &b[0]
}

// updated is changed for an update in place that added the instances
// added and removed those removed (ids absent before, present before):
// the sorted ids are merged rather than sorted again, and kept when the
// set of ids is the same (a status batch).
func (s *State) updated(added, removed []string) {
	sorted, byApp := s.sorted, s.byApp
	s.changed()
	if sorted == nil {
		return
	}
	if len(added) == 0 && len(removed) == 0 {
		// Same ids, hence the same apps' lists (an instance's app never
		// changes).
		s.sorted, s.byApp = sorted, byApp
		return
	}
	gone := make(map[string]bool, len(removed))
	for _, id := range removed {
		gone[id] = true
	}
	added = slices.Sorted(slices.Values(added))
	s.sorted = mergeIDs(sorted, added, gone)
	if byApp == nil || len(removed) > 0 {
		return // rebuilt when next asked
	}
	// Placement adds instances: merge them into their apps' lists.
	byAppAdded := map[string][]string{}
	for _, id := range added {
		a := s.Instances[id].GetAppId()
		byAppAdded[a] = append(byAppAdded[a], id)
	}
	s.byApp = maps.Clone(byApp) // the old map may be shared (overlay)
	for a, ids := range byAppAdded {
		s.byApp[a] = mergeIDs(byApp[a], ids, nil)
	}
}

// mergeIDs returns the sorted ids of sorted without those gone, and of
// added (sorted, none in sorted).
func mergeIDs(sorted, added []string, gone map[string]bool) []string {
	out := make([]string, 0, len(sorted)+len(added))
	k := 0
	for _, id := range sorted {
		for k < len(added) && added[k] < id {
			out = append(out, added[k])
			k++
		}
		if !gone[id] {
			out = append(out, id)
		}
	}
	return append(out, added[k:]...)
}

func (s *State) sortedAppIDs() []string {
	ids := make([]string, 0, len(s.Apps))
	for id := range s.Apps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// killRecord remembers a KILL sent for a task.
type killRecord struct {
	at       time.Time
	reason   string
	agentID  string
	attempts int
}

// Kill reasons kept in memory; they decide whether the task's end counts as
// a failure for the launch backoff.
const (
	killUpgrade  = "upgrade"
	killHealth   = "health"
	killGoal     = "goal"
	killOperator = "operator"
	killUnknown  = "unknown"
	killStaging  = "staging"
)

// Memory is the scheduler's volatile, leader-local state. The pure core
// updates it as part of a decision; it never holds anything that must
// survive a failover.
type Memory struct {
	kills map[string]killRecord
	// stagingAsked holds when the master was last asked about a task
	// staging past the timeout (it is killed once the master answers
	// that it still is).
	stagingAsked  map[string]time.Time
	agents        map[string]agentInfo
	lastReconcile time.Time
	reconcileNow  bool
	recon         reconTracker
	lastRevive    time.Time
	demand        map[string]bool
	configEqual   map[string]bool
	// unmovable holds the instances already told they cannot be migrated
	// (no target), so the event is published once per leader.
	unmovable map[string]bool
	// agentStates is the last poll of the master's agents (nil before
	// the first): an automatic migration starts only when one of them,
	// active and not the instance's own, fits the app's constraints.
	agentStates map[string]AgentState
	// starting holds the tasks whose TASK_STARTING was acknowledged
	// without being committed (see onStatus), with whether that status
	// confirmed the instance's pending reservation: the confirmation is
	// committed with the task's next recorded status.
	starting map[string]bool
}

// NewMemory returns an empty memory, as after a failover.
func NewMemory() *Memory {
	return &Memory{
		kills:        map[string]killRecord{},
		stagingAsked: map[string]time.Time{},
		agents:       map[string]agentInfo{},
		demand:       map[string]bool{},
		configEqual:  map[string]bool{},
		unmovable:    map[string]bool{},
		starting:     map[string]bool{},
	}
}

// recordAgent remembers an agent's hostname and attributes (for constraints).
func (m *Memory) recordAgent(o *mesos.Offer) {
	m.agents[o.AgentID.Value] = agentInfoFromOffer(o)
}

// Task state names as committed (mesos.TaskState.String()).
const (
	stStaging        = "TASK_STAGING"
	stStarting       = "TASK_STARTING"
	stRunning        = "TASK_RUNNING"
	stKilling        = "TASK_KILLING"
	stUnreachable    = "TASK_UNREACHABLE"
	stGoneByOperator = "TASK_GONE_BY_OPERATOR"
	stError          = "TASK_ERROR"
	stGone           = "TASK_GONE"
	stFinished       = "TASK_FINISHED"
	stKilled         = "TASK_KILLED"
)

// isLiveState is true for states in which a task may still hold its
// resources and volume: Invariant 2 (docs/ARCHITECTURE.md) forbids a new launch while one is.
func isLiveState(s string) bool {
	switch s {
	case stStaging, stStarting, stRunning, stKilling, stUnreachable:
		return true
	}
	return false
}

func taskLive(t *v1.Task) bool { return t != nil && isLiveState(t.GetState()) }

func goalOf(i *v1.Instance) v1.Goal {
	if i.GetGoal() == v1.Goal_GOAL_UNSPECIFIED {
		return v1.Goal_GOAL_RUNNING
	}
	return i.GetGoal()
}

func resState(i *v1.Instance) v1.ReservationState {
	s := i.GetReservation().GetState()
	if s == v1.ReservationState_RESERVATION_STATE_UNSPECIFIED {
		return v1.ReservationState_RESERVATION_STATE_NONE
	}
	return s
}

func hasBerth(i *v1.Instance) bool {
	s := resState(i)
	return s == v1.ReservationState_RESERVATION_STATE_PENDING || s == v1.ReservationState_RESERVATION_STATE_RESERVED
}
