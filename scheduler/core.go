package scheduler

import (
	"iter"
	"slices"
	"sort"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Input is one thing the scheduler reacts to: Subscribed, Offers,
// StatusUpdate, StatusUpdates, HealthResult, ReadinessResult or Tick.
type Input interface{ isInput() }

// Subscribed reports a (re)subscription to the master with the framework id
// already committed.
type Subscribed struct{ FrameworkID string }

// Offers carries one OFFERS event.
type Offers struct{ Offers []mesos.Offer }

// StatusUpdate carries one task status from an UPDATE event.
type StatusUpdate struct{ Status mesos.TaskStatus }

// StatusUpdates carries the statuses of consecutive UPDATE events, decided
// together: the decision is exactly what deciding them one by one, in
// order, would have committed, sent and published (one plan holding the
// final state of every instance touched, every ACKNOWLEDGE and KILL in
// order, the same events), so that a burst of updates costs one commit.
type StatusUpdates struct{ Statuses []mesos.TaskStatus }

// HealthResult is the outcome of Berth's own (HTTP, HTTPS, TCP) health
// checks for a task: its aggregate health and whether it must be killed.
type HealthResult struct {
	TaskID  string
	Healthy bool
	Kill    bool
	Message string
}

// Tick asks for a level-triggered pass over desired versus actual state:
// scaling, kills, timeouts, deployments, reconciliation and revives. With
// Changes nil it is the full pass over every app and instance (the
// periodic one, whose time-based rules need it); otherwise the same rules
// applied only to what Changes names (see onChanges).
type Tick struct{ Changes *Changes }

func (Subscribed) isInput()    {}
func (Offers) isInput()        {}
func (StatusUpdate) isInput()  {}
func (StatusUpdates) isInput() {}
func (HealthResult) isInput()  {}
func (Tick) isInput()          {}

// Decision is what the core decided: Plan is committed through Raft first;
// only once it committed are Calls sent to the master, in order, and Events
// published. A nil Plan means nothing to commit.
type Decision struct {
	Plan   *v1.SchedulerPlanCommand
	Calls  []*scheduler.Call
	Events []*v1.Event
	// Reconciliation is set by the decision that ended the explicit
	// reconciliation sent on subscribe (Events then carry a
	// reconciliation_complete or reconciliation_incomplete event).
	Reconciliation *ReconciliationReport
	// TaskFailures are the task failures this decision recorded on
	// instances (Instance.last_failure), to be logged once it committed.
	TaskFailures []*v1.TaskFailure
	// OfferOutcomes say, per offer and per app with instances waiting for
	// an offer, whether the offer served the app and if not why (see
	// ReasonFunnel). They are kept in the leader's memory only.
	OfferOutcomes []OfferOutcome
	// Placed has, for each status of the input that is its task's first
	// TASK_RUNNING, the time since the launch was committed (the task's
	// StagedAt): berth_scheduler_placement_seconds.
	Placed []time.Duration
	// Early are calls that imply nothing Plan records (acknowledgements of
	// status updates kept as soft state, see onStatus): they may be sent
	// before Plan commits (before Calls), and are sent even if it does not.
	Early []*scheduler.Call
}

// Empty is true when the decision neither commits nor sends anything.
func (d Decision) Empty() bool {
	return d.Plan == nil && len(d.Calls) == 0 && len(d.Early) == 0 && len(d.Events) == 0
}

// Decide is the scheduler's pure core: given a snapshot of committed state
// (and the leader's memory in state.Mem, which it updates), one input and
// the time, it returns the plan to commit and the Mesos calls to send after.
// It performs no I/O and reads no clock.
func Decide(state *State, in Input, now time.Time, cfg Config) Decision {
	cfg = cfg.withDefaults()
	p := newPlanner(state, now, cfg)
	switch in := in.(type) {
	case Subscribed:
		p.onSubscribed(in)
	case Offers:
		p.onOffers(in.Offers)
	case StatusUpdate:
		p.onStatus(in.Status)
	case StatusUpdates:
		for _, s := range in.Statuses {
			p.onStatus(s)
			// Announce what this status changed now, as its own decision
			// would have, and with the instance as it was then.
			p.flushChanged()
		}
	case HealthResult:
		p.onHealth(in)
	case ReadinessResult:
		p.onReadiness(in)
	case Tick:
		if in.Changes != nil {
			p.onChanges(in.Changes)
		} else {
			p.onTick()
		}
	case AgentStates:
		p.onAgentStates(in)
	case InverseOffers:
		p.onInverseOffers(in.Offers)
	case NestedCopyResult:
		p.onNestedCopy(in)
	}
	return p.finish()
}

// planner accumulates one decision over working copies of instances.
type planner struct {
	st  *State
	now time.Time
	cfg Config

	put     map[string]*v1.Instance
	del     map[string]bool
	deps    map[string]*v1.Deployment
	calls   []*scheduler.Call
	events  []*v1.Event
	changed map[string]bool // instances to announce with instance_changed_event
	running map[string]bool // apps with a running deployment (lazy, see deploying)
	held    map[string]bool // apps whose rollout a forced cancel stopped (lazy, see rolloutHeld)
	report  *ReconciliationReport
	created int // instances created in this decision (see Config.MaxNewInstancesPerDecision)
	// early holds calls that depend on nothing the plan records
	// (acknowledgements of updates kept as soft state): see Decision.Early.
	early []*scheduler.Call
	// askStaging are the tasks staging past the timeout to ask the master
	// about, task id → agent id (tickInstance; one RECONCILE per tick).
	askStaging map[string]string
	// failures recorded on instances in this decision (see recordFailure).
	failures []*v1.TaskFailure
	// byApp lists the instance ids of each app during a tick.
	byApp map[string][]string
	// offerOutcomes of the offers matched in this decision.
	offerOutcomes []OfferOutcome
	placed        []time.Duration // see Decision.Placed
	// bput holds the backup records edited in this decision; opByInst
	// indexes the active ones by instance (lazy, see activeOp).
	bput     map[string]*v1.Backup
	opByInst map[string]string
	// memoID and memo: the stored instance inst last looked up (see inst).
	memoID string
	memo   *v1.Instance
}

func newPlanner(st *State, now time.Time, cfg Config) *planner {
	if st.Mem == nil {
		st.Mem = NewMemory()
	}
	return &planner{
		st: st, now: now, cfg: cfg,
		put:     map[string]*v1.Instance{},
		del:     map[string]bool{},
		deps:    map[string]*v1.Deployment{},
		changed: map[string]bool{},
		bput:    map[string]*v1.Backup{},
	}
}

// inst returns the current (possibly edited) instance, nil if absent or
// deleted in this decision.
func (p *planner) inst(id string) *v1.Instance {
	// Most passes edit few of the instances they look at: skip the
	// lookups in empty maps (a pass over 100,000 instances makes several
	// lookups of each).
	if len(p.del) > 0 && p.del[id] {
		return nil
	}
	if len(p.put) > 0 {
		if i, ok := p.put[id]; ok {
			return i
		}
	}
	// A pass looks an instance up several times in a row (tickInstance):
	// the stored one last looked up, or handed out by each, is kept.
	if id == p.memoID && id != "" {
		return p.memo
	}
	i := p.st.Instances[id]
	p.memoID, p.memo = id, i
	return i
}

// each yields the ids of ids with their current instances (as inst gives
// them; nil for one deleted meanwhile). When ids is a list the state keeps
// (every id, or one app's), the stored instances come from the state's
// parallel list instead of a map lookup each.
func (p *planner) each(ids []string) iter.Seq2[string, *v1.Instance] {
	return func(yield func(string, *v1.Instance) bool) {
		stored := p.st.ordered(ids)
		for k, id := range ids {
			if stored != nil {
				p.memoID, p.memo = id, stored[k]
			}
			if !yield(id, p.inst(id)) {
				return
			}
		}
	}
}

// instances is each over every current instance (allInstanceIDs).
func (p *planner) instances() iter.Seq2[string, *v1.Instance] {
	return p.each(p.allInstanceIDs())
}

// edit returns a working copy of an instance that will be committed.
func (p *planner) edit(id string) *v1.Instance {
	if i, ok := p.put[id]; ok {
		return i
	}
	orig := p.st.Instances[id]
	if orig == nil {
		return nil
	}
	c := proto.Clone(orig).(*v1.Instance)
	p.put[id] = c
	return c
}

// create adds a new instance to the plan.
func (p *planner) create(i *v1.Instance) {
	p.put[i.GetId()] = i
	p.changed[i.GetId()] = true
}

// forget deletes an instance in the plan.
func (p *planner) forget(id string) {
	delete(p.put, id)
	if _, known := p.st.Instances[id]; known {
		p.del[id] = true
		p.changed[id] = true
	}
}

// allInstanceIDs lists current instances (state plus created), sorted.
func (p *planner) allInstanceIDs() []string {
	return p.current(p.st.sortedInstanceIDs(), func(*v1.Instance) bool { return true })
}

// appInstanceIDs lists an app's current instances (state plus created),
// sorted.
func (p *planner) appInstanceIDs(appID string) []string {
	return p.current(p.st.instanceIDsOf(appID), func(i *v1.Instance) bool { return i.GetAppId() == appID })
}

// current returns the sorted ids stored, without those deleted in this
// decision and with those it created that of says belong, sorted. It
// returns stored itself (shared: not to be modified) when the decision
// changed nothing there.
func (p *planner) current(stored []string, of func(*v1.Instance) bool) []string {
	var created []string
	for id, i := range p.put {
		if _, ok := p.st.Instances[id]; !ok && of(i) {
			created = append(created, id)
		}
	}
	if len(created) == 0 && len(p.del) == 0 {
		return stored
	}
	sort.Strings(created)
	return mergeIDs(stored, created, p.del)
}

// idsOf returns the app's instance ids as the pass saw them when it began
// (p.byApp), computing them for an app it has not listed.
func (p *planner) idsOf(appID string) []string {
	ids, ok := p.byApp[appID]
	if !ok {
		ids = p.appInstanceIDs(appID)
		if p.byApp == nil {
			p.byApp = map[string][]string{}
		}
		p.byApp[appID] = ids
	}
	return ids
}

func (p *planner) ts() *timestamppb.Timestamp { return timestamppb.New(p.now) }

func (p *planner) call(c *scheduler.Call) { p.calls = append(p.calls, c) }

func (p *planner) event(e *v1.Event) {
	e.Timestamp = p.now.UTC().Format(time.RFC3339Nano)
	p.events = append(p.events, e)
}

// kill sends a KILL for a task unless one was sent recently.
func (p *planner) kill(t *v1.Task, reason string, grace time.Duration) {
	if t == nil || t.GetId() == "" {
		return
	}
	if rec, ok := p.st.Mem.kills[t.GetId()]; ok && p.now.Sub(rec.at) < p.cfg.KillRetryInterval+grace {
		return
	}
	p.st.Mem.kills[t.GetId()] = killRecord{at: p.now, reason: reason, agentID: t.GetAgentId()}
	p.call(calls.Kill(t.GetId(), t.GetAgentId()))
}

func killGrace(a *v1.App) time.Duration {
	if a != nil && a.TaskKillGracePeriodSeconds != nil {
		return time.Duration(*a.TaskKillGracePeriodSeconds) * time.Second
	}
	return 3 * time.Second
}

// finish assembles the Decision: the plan (sorted for determinism) and the
// events for instances that changed.
func (p *planner) finish() Decision {
	var d Decision
	if len(p.put) > 0 || len(p.del) > 0 || len(p.deps) > 0 || len(p.bput) > 0 {
		plan := &v1.SchedulerPlanCommand{}
		ids := make([]string, 0, len(p.put))
		for id := range p.put {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			plan.PutInstances = append(plan.PutInstances, p.put[id])
		}
		for id := range p.del {
			plan.DeleteInstances = append(plan.DeleteInstances, id)
		}
		sort.Strings(plan.DeleteInstances)
		dids := make([]string, 0, len(p.deps))
		for id := range p.deps {
			dids = append(dids, id)
		}
		sort.Strings(dids)
		for _, id := range dids {
			plan.PutDeployments = append(plan.PutDeployments, p.deps[id])
		}
		p.finishBackups(plan)
		d.Plan = plan
	}
	p.flushChanged()
	d.Calls = p.calls
	d.Early = p.early
	d.Events = p.events
	d.Reconciliation = p.report
	d.TaskFailures = p.failures
	d.OfferOutcomes = p.offerOutcomes
	d.Placed = p.placed
	return d
}

// flushChanged publishes an instance_changed_event for every instance
// marked changed since the last flush (sorted by id) and clears the marks.
func (p *planner) flushChanged() {
	if len(p.changed) == 0 {
		return
	}
	changed := make([]string, 0, len(p.changed))
	for id := range p.changed {
		changed = append(changed, id)
	}
	sort.Strings(changed)
	for _, id := range changed {
		e := &v1.Event{Type: "instance_changed_event", InstanceId: id}
		if i := p.inst(id); i != nil {
			e.AppId = i.GetAppId()
			e.TaskId = i.GetTask().GetId()
			e.TaskState = i.GetTask().GetState()
			e.AgentId = i.GetReservation().GetAgentId()
			e.Host = i.GetReservation().GetHostname()
			e.Message = "goal " + goalOf(i).String() + ", reservation " + resState(i).String()
		} else if orig := p.st.Instances[id]; orig != nil {
			e.AppId = orig.GetAppId()
			e.Message = "forgotten"
		}
		p.event(e)
	}
	clear(p.changed)
}

// onSubscribed reconciles every known task explicitly, then implicitly, and
// revives so that filters set by a previous leader do not delay work. The
// explicit reconciliation is tracked until every task is answered.
func (p *planner) onSubscribed(_ Subscribed) {
	p.startReconTracking()
	p.reconcile()
	p.reconCheck()
	p.st.Mem.lastRevive = p.now
	p.call(calls.Revive())
}

// reconcile sends explicit reconciliation for every known live task, then
// an implicit one.
func (p *planner) reconcile() {
	ids := p.st.sortedInstanceIDs()
	tasks := make([]scheduler.Call_Reconcile_Task, 0, len(ids))
	agents := map[string]*mesos.AgentID{} // one each, shared by its tasks
	task := func(taskID, agentID string) scheduler.Call_Reconcile_Task {
		t := scheduler.Call_Reconcile_Task{TaskID: mesos.TaskID{Value: taskID}}
		if agentID != "" {
			if agents[agentID] == nil {
				agents[agentID] = &mesos.AgentID{Value: agentID}
			}
			t.AgentID = agents[agentID]
		}
		return t
	}
	for _, id := range ids {
		if t := p.st.Instances[id].GetTask(); taskLive(t) {
			tasks = append(tasks, task(t.GetId(), t.GetAgentId()))
		}
	}
	copies := map[string]string{}
	p.copyTasks(copies)
	for id, agentID := range copies {
		tasks = append(tasks, task(id, agentID))
	}
	if len(tasks) > 0 {
		// In task id order, for deterministic output; the instances' order
		// almost is (a task id starts with its instance id), which the
		// sort finds quickly.
		slices.SortFunc(tasks, func(a, b scheduler.Call_Reconcile_Task) int {
			return strings.Compare(a.TaskID.Value, b.TaskID.Value)
		})
		p.call(calls.Reconcile(func(cr *scheduler.Call_Reconcile) { cr.Tasks = tasks }))
	}
	p.reconAsked(tasks)
	p.call(calls.Reconcile())
	p.st.Mem.lastReconcile = p.now
}

// outdated is true when an instance's recorded version runs a different
// configuration than the app's current version (a pure scale is not).
func (p *planner) outdated(i *v1.Instance, a *v1.App) bool {
	if i.GetAppVersion() == a.GetVersion() {
		return false
	}
	key := a.GetId() + "\x00" + i.GetAppVersion() + "\x00" + a.GetVersion()
	if eq, ok := p.st.Mem.configEqual[key]; ok {
		return !eq
	}
	old, err := p.st.appVersion(a.GetId(), i.GetAppVersion())
	if err != nil {
		// Unknown: leave the instance alone this time rather than
		// relaunch it on doubt; the next decision reads again.
		return false
	}
	eq := !appmodel.NeedsRelaunch(old, a)
	p.st.Mem.configEqual[key] = eq
	return !eq
}

// available is true for an instance that counts as up for capacity:
// goal Running, task running (healthy when the app has health checks), and
// not being killed. It may run an outdated configuration.
func (p *planner) available(i *v1.Instance, a *v1.App) bool {
	t := i.GetTask()
	if goalOf(i) != v1.Goal_GOAL_RUNNING || t.GetState() != stRunning || t.KillRequestedAt != nil {
		return false
	}
	if _, killing := p.st.Mem.kills[t.GetId()]; killing {
		return false
	}
	if len(a.GetHealthChecks()) > 0 && !t.GetHealthy() {
		return false
	}
	return true
}

// ready is true for an available instance that runs the app's current
// configuration and passed its readiness checks: converged.
func (p *planner) ready(i *v1.Instance, a *v1.App) bool {
	return p.available(i, a) && !p.outdated(i, a) && p.readinessOK(i, a)
}

// onTick is the level-triggered pass.
func (p *planner) onTick() {
	p.byApp = map[string][]string{}
	withInstances := p.st.appsWithInstances()
	for _, appID := range withInstances {
		p.idsOf(appID)
	}
	p.scaleApps(p.st.sortedAppIDs())
	// Instances of removed apps are decommissioned (the FSM normally does it
	// in the delete entry; this covers anything left behind).
	p.decommissionRemoved(withInstances)
	p.upgradeApps(p.st.sortedAppIDs())
	p.tickBackups()
	p.tickInstances(p.allInstanceIDs())
	p.retryUnknownKills()
	p.tickDeployments(nil)
	if p.st.Mem.reconcileNow || (p.cfg.ReconcileInterval > 0 && p.now.Sub(p.st.Mem.lastReconcile) >= p.cfg.ReconcileInterval) {
		p.st.Mem.reconcileNow = false
		p.reconcile()
	}
	p.reconCheck()
	p.maybeRevive()
}

// scaleApps scales the apps named (see scaleApp), with the instance ids
// the pass began with.
func (p *planner) scaleApps(appIDs []string) {
	for _, appID := range appIDs {
		if a := p.st.Apps[appID]; a != nil {
			p.resetOutdatedBackoff(a, p.idsOf(appID))
			p.scaleApp(a, p.idsOf(appID))
		}
	}
}

// upgradeApps upgrades the apps named (see upgradeApp).
func (p *planner) upgradeApps(appIDs []string) {
	for _, appID := range appIDs {
		if a := p.st.Apps[appID]; a != nil {
			p.upgradeApp(a, p.idsOf(appID))
		}
	}
}

// decommissionRemoved decommissions the instances of those of the apps
// named that no longer exist.
func (p *planner) decommissionRemoved(appIDs []string) {
	for _, appID := range appIDs {
		if _, ok := p.st.Apps[appID]; ok {
			continue
		}
		for _, id := range p.idsOf(appID) {
			if i := p.inst(id); i != nil && goalOf(i) != v1.Goal_GOAL_DECOMMISSIONED {
				p.edit(id).Goal = v1.Goal_GOAL_DECOMMISSIONED
				p.changed[id] = true
			}
		}
	}
}

// tickInstances runs tickInstance over ids (sorted), asking the master
// about the tasks staging past the timeout in one call.
func (p *planner) tickInstances(ids []string) {
	p.askStaging = map[string]string{}
	for id, i := range p.each(ids) {
		if i != nil {
			p.tickInstance(id)
		}
	}
	if len(p.askStaging) > 0 {
		// One call for all (a status backlog may hold thousands).
		p.call(calls.Reconcile(calls.ReconcileTasks(p.askStaging)))
	}
}

// scaleApp makes the number of goal-Running instances equal app.instances:
// stopped instances are reused first, then new ones created; surplus ones
// are stopped (resident) or decommissioned (stateless) by killSelection.
// A stateless app with outdated instances is rolled instead (rollStateless).
func (p *planner) scaleApp(a *v1.App, ids []string) {
	want := appmodel.Instances(a)
	if !appmodel.IsResident(a) && p.rollStateless(a, ids) {
		return
	}
	var running, stopped []*v1.Instance
	for _, i := range p.each(ids) {
		switch goalOf(i) {
		case v1.Goal_GOAL_RUNNING:
			running = append(running, i)
		case v1.Goal_GOAL_STOPPED:
			stopped = append(stopped, i)
		}
	}
	if len(running) < want && p.deploying(a.GetId()) && p.dependencyPending(a) != "" {
		// Marathon's deployment plan starts an app only once the apps it
		// depends on run (and pass their health and readiness checks).
		return
	}
	if len(running) < want {
		// Reuse stopped instances: reserved first, then pending, then none.
		sort.SliceStable(stopped, func(x, y int) bool {
			rx, ry := resRank(stopped[x]), resRank(stopped[y])
			if rx != ry {
				return rx < ry
			}
			return stopped[x].GetCreatedAt().AsTime().Before(stopped[y].GetCreatedAt().AsTime())
		})
		for _, s := range stopped {
			if len(running) >= want {
				break
			}
			e := p.edit(s.GetId())
			e.Goal = v1.Goal_GOAL_RUNNING
			e.ConsecutiveFailures = 0
			e.LaunchNotBefore = nil
			p.changed[e.GetId()] = true
			running = append(running, e)
		}
		for len(running) < want && p.mayCreate() {
			ni := p.newInstance(a)
			p.create(ni)
			running = append(running, ni)
		}
		return
	}
	if len(running) > want {
		victims := append([]*v1.Instance(nil), running...)
		sortByKillSelection(victims, a)
		for _, v := range victims[:len(running)-want] {
			e := p.edit(v.GetId())
			if e.GetResident() || hasBerth(e) {
				e.Goal = v1.Goal_GOAL_STOPPED
			} else {
				e.Goal = v1.Goal_GOAL_DECOMMISSIONED
			}
			p.changed[e.GetId()] = true
		}
	}
}

func resRank(i *v1.Instance) int {
	switch resState(i) {
	case v1.ReservationState_RESERVATION_STATE_RESERVED:
		return 0
	case v1.ReservationState_RESERVATION_STATE_PENDING:
		return 1
	}
	return 2
}

// instanceAge is when the instance's current task started (or was staged,
// or the instance created): the key of killSelection.
func instanceAge(i *v1.Instance) time.Time {
	if t := i.GetTask(); t != nil {
		if t.StartedAt != nil {
			return t.StartedAt.AsTime()
		}
		if t.StagedAt != nil {
			return t.StagedAt.AsTime()
		}
	}
	return i.GetCreatedAt().AsTime()
}

// upgradeApp records the new version on instances whose version differs
// only by scale (no restart). For a resident app it kills goal-Running
// instances that run an outdated configuration so that they relaunch with
// the current one on their berths, kill-first, at most instances -
// ceil(instances × minimumHealthCapacity) down at a time (at least one: with
// minHealthy == maxCapacity Marathon kills one extra). An instance of the
// current configuration counts as down until it is ready. Stateless apps
// are rolled start-first by scaleApp (rollStateless).
func (p *planner) upgradeApp(a *v1.App, ids []string) {
	n := appmodel.Instances(a)
	minHealthy, _ := capacityBounds(a)
	maxDown := n - minHealthy
	if maxDown < 1 {
		maxDown = 1
	}
	var live []*v1.Instance
	down := 0
	for _, i := range p.each(ids) {
		if goalOf(i) != v1.Goal_GOAL_RUNNING {
			continue
		}
		if !p.up(i, a) {
			down++
		}
		if i.GetAppVersion() != a.GetVersion() && !p.outdated(i, a) {
			e := p.edit(i.GetId())
			e.AppVersion = a.GetVersion()
			if e.Task != nil && taskLive(e.Task) {
				e.Task.AppVersion = a.GetVersion()
			}
			continue
		}
		if taskLive(i.GetTask()) && p.outdated(i, a) {
			live = append(live, i)
		}
	}
	if !appmodel.IsResident(a) || p.rolloutHeld(a.GetId()) {
		return
	}
	// Unavailable outdated instances first: killing them costs no capacity.
	sort.SliceStable(live, func(x, y int) bool {
		rx, ry := p.available(live[x], a), p.available(live[y], a)
		if rx != ry {
			return !rx
		}
		return live[x].GetId() < live[y].GetId()
	})
	for _, i := range live {
		t := i.GetTask()
		if _, sent := p.st.Mem.kills[t.GetId()]; sent {
			p.kill(t, killUpgrade, killGrace(a)) // resend if due
			continue
		}
		if p.available(i, a) {
			if down >= maxDown {
				continue
			}
			down++
		}
		if t.GetState() == stUnreachable {
			continue // kills are no-ops for unreachable tasks
		}
		p.kill(t, killUpgrade, killGrace(a))
	}
}

// tickInstance handles one instance's kills, timeouts and forgetting.
func (p *planner) tickInstance(id string) {
	i := p.inst(id)
	a := p.st.Apps[i.GetAppId()]
	p.tickMoveInstance(i, a)
	i = p.inst(id)
	t := i.GetTask()
	live := taskLive(t)
	goal := goalOf(i)

	if live {
		switch {
		case goal == v1.Goal_GOAL_DECOMMISSIONED && t.GetState() == stUnreachable:
			// Wipe of an instance on an unreachable agent: forget it now; if the
			// task returns it is unknown and killed, and its labelled resources
			// are collected when next offered.
			p.forget(id)
			return
		case goal != v1.Goal_GOAL_RUNNING && t.GetState() != stUnreachable:
			p.kill(t, killGoal, killGrace(a))
		case t.KillRequestedAt != nil && t.GetState() != stUnreachable:
			p.kill(t, killOperator, killGrace(a))
		case p.stagingTimedOut(t) && !p.startingTask(t.GetId()):
			// A launch that seems to have got nowhere, or whose updates are
			// still queued behind others: ask the master. Only its answer
			// that the task is still staging kills it (onStatus); a KILL
			// already sent is resent when due.
			if at, ok := p.st.Mem.stagingAsked[t.GetId()]; !ok || p.now.Sub(at) >= p.cfg.KillRetryInterval {
				p.st.Mem.stagingAsked[t.GetId()] = p.now
				p.askStaging[t.GetId()] = t.GetAgentId()
			}
			if rec, ok := p.st.Mem.kills[t.GetId()]; ok && rec.reason == killStaging {
				p.kill(t, killStaging, 0)
			}
		}
		return
	}

	// No live task from here on.
	if resState(i) == v1.ReservationState_RESERVATION_STATE_PENDING && i.GetReservation().PendingUntil != nil &&
		!p.now.Before(i.GetReservation().PendingUntil.AsTime()) {
		// The labelled resources never showed up: unpin. Should they appear
		// later they are garbage (this instance is no longer pinned there).
		e := p.edit(id)
		abandonBerth(e)
		p.changed[id] = true
		i = e
	}
	if goal == v1.Goal_GOAL_DECOMMISSIONED && !hasBerth(i) {
		p.forget(id)
	}
	if goal == v1.Goal_GOAL_STOPPED && !hasBerth(i) {
		// A stopped instance without a berth (stateless, or never placed)
		// has nothing to keep; scaling up creates a new one.
		p.forget(id)
	}
}

// startingTask is true for a task whose TASK_STARTING was received but
// not committed (see onStatus): it left staging.
func (p *planner) startingTask(taskID string) bool {
	_, ok := p.st.Mem.starting[taskID]
	return ok
}

// stagingTimedOut is true for a task recorded as TASK_STAGING for longer
// than the staging timeout.
func (p *planner) stagingTimedOut(t *v1.Task) bool {
	return t.GetState() == stStaging && t.StagedAt != nil && p.cfg.StagingTimeout > 0 &&
		p.now.Sub(t.StagedAt.AsTime()) > p.cfg.StagingTimeout
}

// maxUnknownKills bounds the KILLs sent for a task Berth does not know:
// the master answers a KILL of a task it does not know with a
// reconciliation update, which ends the record anyway.
const maxUnknownKills = 10

// retryUnknownKills resends KILL for live tasks Berth does not know (e.g.
// the task of an instance wiped while its agent was unreachable, back after
// the partition) until a terminal update arrives.
func (p *planner) retryUnknownKills() {
	ids := make([]string, 0)
	for id, rec := range p.st.Mem.kills {
		if rec.reason == killUnknown {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		rec := p.st.Mem.kills[id]
		if p.st.instanceByTask(id) != nil {
			delete(p.st.Mem.kills, id) // known after all (e.g. restored state)
			continue
		}
		if rec.attempts >= maxUnknownKills {
			delete(p.st.Mem.kills, id)
			continue
		}
		if p.now.Sub(rec.at) < p.cfg.KillRetryInterval {
			continue
		}
		rec.at = p.now
		rec.attempts++
		p.st.Mem.kills[id] = rec
		p.call(calls.Kill(id, rec.agentID))
	}
}

// maybeRevive revives offers when new work appears that needs offers, and
// again periodically while such work remains. Berth never suppresses:
// garbage collection by offer needs offers.
func (p *planner) maybeRevive() {
	old := p.st.Mem.demand
	p.st.Mem.demand = map[string]bool{}
	fresh := p.noteDemand(p.allInstanceIDs(), old)
	if len(p.st.Mem.demand) == 0 {
		return
	}
	if fresh || p.now.Sub(p.st.Mem.lastRevive) >= p.cfg.ReviveInterval {
		p.revive()
	}
}

// noteDemand records in the memory's demand which of ids (current or
// gone) want an offer, and reports whether one of them did not in was.
func (p *planner) noteDemand(ids []string, was map[string]bool) (fresh bool) {
	for id, i := range p.each(ids) {
		if i != nil && p.wantsOffer(i) {
			fresh = fresh || !was[id] // was may be the demand itself
			p.st.Mem.demand[id] = true
		} else {
			delete(p.st.Mem.demand, id)
		}
	}
	return fresh
}

func (p *planner) revive() {
	p.st.Mem.lastRevive = p.now
	p.call(calls.Revive())
}

// wantsOffer is true for an instance that needs an offer to progress.
func (p *planner) wantsOffer(i *v1.Instance) bool {
	if taskLive(i.GetTask()) {
		return false
	}
	if op := p.activeOp(i.GetId()); op != nil {
		return op.GetState() == v1.BackupState_BACKUP_STATE_PENDING
	}
	switch goalOf(i) {
	case v1.Goal_GOAL_RUNNING:
		return p.st.Apps[i.GetAppId()] != nil
	case v1.Goal_GOAL_DECOMMISSIONED:
		return hasBerth(i)
	}
	return false
}

// launchDue is true when a goal-Running instance without a live task may
// launch now (its backoff elapsed).
func (p *planner) launchDue(i *v1.Instance) bool {
	if goalOf(i) != v1.Goal_GOAL_RUNNING || taskLive(i.GetTask()) {
		return false
	}
	if p.activeOp(i.GetId()) != nil {
		return false // the berth is held for a backup or restore
	}
	if i.GetMove().GetStep() == stepAbandon {
		return false // back to the old berth once the new task is gone
	}
	if nb := i.GetLaunchNotBefore(); nb != nil && p.now.Before(nb.AsTime()) {
		return false
	}
	return true
}
