package scheduler

import (
	"math"
	"sort"
	"strings"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// roundingSlack absorbs float noise in instances × capacity products, so
// that e.g. 10 × 0.7 rounds up to 7 and not 8.
const roundingSlack = 1e-9

func clamp01(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	if v > 1 {
		return 1
	}
	return v
}

// capacityBounds returns Marathon's bounds for replacing an app's
// instances (TaskReplaceActor): minHealthy = ceil(instances ×
// minimumHealthCapacity) instances stay up, and at most maxCapacity =
// floor(instances × (1 + maximumOverCapacity)) run at once.
func capacityBounds(a *v1.App) (minHealthy, maxCapacity int) {
	n := float64(appmodel.Instances(a))
	minHealthy = int(math.Ceil(n*clamp01(appmodel.MinimumHealthCapacity(a)) - roundingSlack))
	maxCapacity = int(math.Floor(n*(1+clamp01(appmodel.MaximumOverCapacity(a))) + roundingSlack))
	return minHealthy, maxCapacity
}

// deploying is true while a deployment affecting the app is running.
func (p *planner) deploying(appID string) bool {
	if p.running == nil {
		p.running = runningDeploymentApps(p.st)
	}
	return p.running[appID]
}

// rolloutHeld is true when no deployment of the app runs and its newest
// deployment was cancelled: a deployment cancelled with force stops where
// it stands, old and new instances left mixed, until the next deployment
// of the app, as Marathon's DELETE /v2/deployments/{id}?force=true
// (api/v2/DeploymentsResource.scala: the plan is stopped, nothing rolled
// back). A cancel without force is followed by its rollback deployment,
// which then runs. An app without deployments is rolled out as ever.
func (p *planner) rolloutHeld(appID string) bool {
	if p.held == nil {
		p.held = heldApps(p.st)
	}
	return p.held[appID]
}

// heldApps lists the apps whose newest deployment was cancelled.
func heldApps(st *State) map[string]bool {
	newest := map[string]*v1.Deployment{}
	for _, d := range st.Deployments {
		for _, id := range d.GetAffectedApps() {
			if cur := newest[id]; cur == nil || deploymentNewer(d, cur) {
				newest[id] = d
			}
		}
	}
	out := map[string]bool{}
	for id, d := range newest {
		if d.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_CANCELED {
			out[id] = true
		}
	}
	return out
}

// deploymentNewer orders deployments by creation time, then version, then
// id (a running one is always newest: it is the one in force).
func deploymentNewer(d, than *v1.Deployment) bool {
	dr, tr := d.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING, than.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING
	if dr != tr {
		return dr
	}
	dt, tt := d.GetCreatedAt().AsTime(), than.GetCreatedAt().AsTime()
	if !dt.Equal(tt) {
		return dt.After(tt)
	}
	if d.GetVersion() != than.GetVersion() {
		return d.GetVersion() > than.GetVersion()
	}
	return d.GetId() > than.GetId()
}

// runningDeploymentApps lists the apps affected by a running deployment.
func runningDeploymentApps(st *State) map[string]bool {
	out := map[string]bool{}
	for _, d := range st.Deployments {
		if d.GetStatus() != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
			continue
		}
		for _, id := range d.GetAffectedApps() {
			out[id] = true
		}
	}
	return out
}

// readinessOK is true when an instance's task passed the app's readiness
// checks, or when they do not gate it: the app has none, or no deployment
// of the app is running (readiness gates a deployment's progress only).
func (p *planner) readinessOK(i *v1.Instance, a *v1.App) bool {
	if len(a.GetReadinessChecks()) == 0 || !p.deploying(a.GetId()) {
		return true
	}
	return i.GetTask().GetReady()
}

// up is true for an instance that counts towards minHealthy during an
// upgrade: available, and ready when it runs the current configuration.
func (p *planner) up(i *v1.Instance, a *v1.App) bool {
	return p.available(i, a) && (p.outdated(i, a) || p.readinessOK(i, a))
}

// newInstance returns a fresh goal-Running instance of the app's current
// version, without a berth or task.
// mayCreate reports whether this decision may still create an instance.
func (p *planner) mayCreate() bool { return p.created < p.cfg.MaxNewInstancesPerDecision }

func (p *planner) newInstance(a *v1.App) *v1.Instance {
	p.created++
	id := instanceIDFor(a.GetId(), p.cfg.NewID())
	return &v1.Instance{
		Id:          id,
		AppId:       a.GetId(),
		AppVersion:  a.GetVersion(),
		Goal:        v1.Goal_GOAL_RUNNING,
		Reservation: &v1.Reservation{InstanceId: id, State: v1.ReservationState_RESERVATION_STATE_NONE},
		CreatedAt:   p.ts(),
		Resident:    appmodel.IsResident(a),
	}
}

// sortByKillSelection orders instances for killing: those without a live
// task first, then by the app's killSelection (youngest first by default),
// then by id.
func sortByKillSelection(is []*v1.Instance, a *v1.App) {
	oldestFirst := appmodel.KillSelection(a) == "OLDEST_FIRST"
	sort.SliceStable(is, func(x, y int) bool {
		lx, ly := taskLive(is[x].GetTask()), taskLive(is[y].GetTask())
		if lx != ly {
			return !lx
		}
		tx, ty := instanceAge(is[x]), instanceAge(is[y])
		if !tx.Equal(ty) {
			if oldestFirst {
				return tx.Before(ty)
			}
			return tx.After(ty)
		}
		return is[x].GetId() < is[y].GetId()
	})
}

// decommission gives a stateless instance goal Decommissioned: its task is
// killed and the instance forgotten once the task ended.
func (p *planner) decommission(id string) {
	e := p.edit(id)
	if e == nil {
		return
	}
	e.Goal = v1.Goal_GOAL_DECOMMISSIONED
	p.changed[id] = true
}

// rollStateless replaces a stateless app's outdated instances as
// Marathon's TaskReplaceActor does for non-resident apps: new instances are
// started first, up to maxCapacity goal-Running instances in all, and an
// outdated instance is decommissioned (killed, then forgotten) once the
// instances up without it still number at least minHealthy. When
// minHealthy equals maxCapacity there would be no room to move, so one
// instance of over-capacity is allowed. Outdated instances that are not up
// anyway are replaced at once. It returns false when no instance runs an
// outdated configuration: plain scaling applies then.
//
// A rollout that a forced cancel stopped (rolloutHeld) replaces nothing
// more; plain scaling still keeps app.instances running then.
func (p *planner) rollStateless(a *v1.App, ids []string) bool {
	if p.rolloutHeld(a.GetId()) {
		return false
	}
	var old, fresh []*v1.Instance
	for _, i := range p.each(ids) {
		if goalOf(i) != v1.Goal_GOAL_RUNNING {
			continue
		}
		if taskLive(i.GetTask()) && p.outdated(i, a) {
			old = append(old, i)
		} else {
			fresh = append(fresh, i)
		}
	}
	if len(old) == 0 {
		return false
	}
	n := appmodel.Instances(a)
	minHealthy, maxCapacity := capacityBounds(a)
	if minHealthy >= maxCapacity {
		maxCapacity = minHealthy + 1
	}
	// More new instances than wanted (scaled down during the upgrade).
	if len(fresh) > n {
		sortByKillSelection(fresh, a)
		for _, v := range fresh[:len(fresh)-n] {
			p.decommission(v.GetId())
		}
		fresh = fresh[len(fresh)-n:]
	}
	upCount := 0
	for _, i := range old {
		if p.available(i, a) {
			upCount++
		}
	}
	for _, i := range fresh {
		if p.up(i, a) {
			upCount++
		}
	}
	// Outdated instances that are not up first: replacing them costs no
	// capacity. Then by killSelection.
	sortByKillSelection(old, a)
	sort.SliceStable(old, func(x, y int) bool {
		return !p.available(old[x], a) && p.available(old[y], a)
	})
	var kept []*v1.Instance
	for _, i := range old {
		if p.available(i, a) {
			if upCount-1 < minHealthy {
				kept = append(kept, i)
				continue
			}
			upCount--
		}
		p.decommission(i.GetId())
	}
	for total := len(kept) + len(fresh); len(fresh) < n && total < maxCapacity && p.mayCreate(); total++ {
		ni := p.newInstance(a)
		p.create(ni)
		fresh = append(fresh, ni)
	}
	return true
}

// dependencyPending returns an app that a depends on (its dependencies
// name apps, or groups: every app under the path) which does not run all
// its instances up yet; "" when none. Only apps that exist count: a
// dependency outside Berth is taken to exist already.
func (p *planner) dependencyPending(a *v1.App) string {
	for _, dep := range a.GetDependencies() {
		dep = appmodel.NormalizeID(dep)
		for _, id := range p.st.sortedAppIDs() {
			if id == a.GetId() || (id != dep && !strings.HasPrefix(id, dep+"/")) {
				continue
			}
			b := p.st.Apps[id]
			up := 0
			for _, iid := range p.byApp[id] {
				if i := p.inst(iid); i != nil && goalOf(i) == v1.Goal_GOAL_RUNNING && p.up(i, b) && !p.outdated(i, b) {
					up++
				}
			}
			if up < appmodel.Instances(b) {
				return id
			}
		}
	}
	return ""
}
