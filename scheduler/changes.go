package scheduler

import (
	"maps"
	"slices"
	"strings"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The pass a change to the store triggers is scoped to what changed.
//
// Every commit (the scheduler's own status batches included) used to
// trigger a full level-triggered pass, each walking every instance: with
// 100,000 instances the leader spent most of its time re-walking instances
// nothing had touched. Now the driver notes what each of its plans writes
// and, for writes it did not make (the API's), what a fresh read of the
// store shows changed against the one before (diffStates), and the pass
// the store's watch triggers is Tick{Changes: ...}: the rules of the full
// pass applied to those apps and instances only (onChanges). The full pass
// stays on the TickInterval ticker: the time-based rules (staging timeout,
// pending reservations, backoff, kill retries, reconciliation interval,
// scheduled backups, automatic moves) need it, and it is the insurance
// against a change that was never noted.
//
// A scoped pass never decides what the full pass would not: it applies the
// same functions to a subset (an app's scaling and upgrade over all that
// app's instances, an instance's kills and forgetting over that instance),
// on the same state; what it leaves out the next full pass does.

// Changes names records that changed since the last pass: apps (their
// definition, or any of their instances), instances written or deleted,
// and backup records.
type Changes struct {
	Apps      map[string]bool
	Instances map[string]bool
	Backups   map[string]bool
}

// Empty is true when nothing is named.
func (c *Changes) Empty() bool {
	return c == nil || len(c.Apps) == 0 && len(c.Instances) == 0 && len(c.Backups) == 0
}

func (c *Changes) app(id string) {
	if c.Apps == nil {
		c.Apps = map[string]bool{}
	}
	c.Apps[id] = true
}

// instance notes an instance and its app.
func (c *Changes) instance(id, appID string) {
	if c.Instances == nil {
		c.Instances = map[string]bool{}
	}
	c.Instances[id] = true
	c.app(appID)
}

func (c *Changes) backup(b *v1.Backup) {
	if c.Backups == nil {
		c.Backups = map[string]bool{}
	}
	c.Backups[b.GetId()] = true
	if b.GetInstanceId() != "" {
		c.instance(b.GetInstanceId(), b.GetAppId())
	}
}

func (c *Changes) deployment(d *v1.Deployment) {
	for _, a := range d.GetAffectedApps() {
		c.app(a)
	}
}

// add notes everything o names.
func (c *Changes) add(o *Changes) {
	if o == nil {
		return
	}
	for id := range o.Apps {
		c.app(id)
	}
	for id := range o.Instances {
		if c.Instances == nil {
			c.Instances = map[string]bool{}
		}
		c.Instances[id] = true
	}
	for id := range o.Backups {
		if c.Backups == nil {
			c.Backups = map[string]bool{}
		}
		c.Backups[id] = true
	}
}

// planChanges names what plan writes; st is the state it was decided on
// (for the apps of the instances it deletes).
func planChanges(st *State, plan *v1.SchedulerPlanCommand) *Changes {
	c := &Changes{}
	if plan == nil {
		return c
	}
	for _, i := range plan.GetPutInstances() {
		c.instance(i.GetId(), i.GetAppId())
	}
	for _, id := range plan.GetDeleteInstances() {
		c.instance(id, st.Instances[id].GetAppId())
	}
	for _, d := range plan.GetPutDeployments() {
		c.deployment(d)
	}
	for _, id := range plan.GetDeleteDeployments() {
		c.deployment(st.Deployments[id])
	}
	for _, b := range plan.GetPutBackups() {
		c.backup(b)
	}
	return c
}

// diffStates names what differs between two reads of the store. Records
// are compared by identity: the store hands out the same message for a
// record until it is written again.
func diffStates(old, cur *State) *Changes {
	c := &Changes{}
	for id, a := range cur.Apps {
		if old.Apps[id] != a {
			c.app(id)
		}
	}
	for id := range old.Apps {
		if _, ok := cur.Apps[id]; !ok {
			c.app(id)
		}
	}
	eachChanged(old.Instances, cur.Instances, func(i *v1.Instance) { c.instance(i.GetId(), i.GetAppId()) })
	eachChanged(old.Deployments, cur.Deployments, c.deployment)
	eachChanged(old.Backups, cur.Backups, c.backup)
	return c
}

// onChanges is the level-triggered pass over what ch names: the apps'
// scaling, upgrades and deployments, the instances' kills, timeouts and
// forgetting (those named, and those the pass edits or creates), backups
// when a backup record changed, and a revive when an instance looked at
// newly needs offers. The reconciliation asked for by a failed commit is
// sent, and the one on subscribe reported when done, as by onTick.
// Everything else (the time-based rules, unknown kills, the periodic
// revive) is left to the full pass.
func (p *planner) onChanges(ch *Changes) {
	apps := slices.Sorted(maps.Keys(p.withDependents(ch.Apps)))
	p.byApp = make(map[string][]string, len(apps))
	for _, appID := range apps {
		p.idsOf(appID)
	}
	p.scaleApps(apps)
	p.decommissionRemoved(apps)
	p.upgradeApps(apps)
	if len(ch.Backups) > 0 {
		p.tickBackups()
	}
	p.tickInstances(p.touched(ch))
	if len(ch.Apps) > 0 {
		p.tickDeployments(ch.Apps)
	}
	if p.st.Mem.reconcileNow {
		p.st.Mem.reconcileNow = false
		p.reconcile()
	}
	p.reconCheck()
	if p.noteDemand(p.touched(ch), p.st.Mem.demand) {
		p.revive()
	}
}

// touched lists, sorted, the instances ch names and those this decision
// wrote or deleted.
func (p *planner) touched(ch *Changes) []string {
	ids := maps.Clone(ch.Instances)
	if ids == nil {
		ids = map[string]bool{}
	}
	for id := range p.put {
		ids[id] = true
	}
	for id := range p.del {
		ids[id] = true
	}
	return slices.Sorted(maps.Keys(ids))
}

// withDependents returns apps with the apps that depend on one of them
// added (their start waits for those: dependencyPending).
func (p *planner) withDependents(apps map[string]bool) map[string]bool {
	out := maps.Clone(apps)
	for id, a := range p.st.Apps {
		for _, dep := range a.GetDependencies() {
			dep = appmodel.NormalizeID(dep)
			for changed := range apps {
				if changed == dep || strings.HasPrefix(changed, dep+"/") {
					out[id] = true
				}
			}
		}
	}
	return out
}

// eachChanged calls fn with each record of cur that old lacks or holds in
// another message (the store hands out the same message until a record
// is written again), and each record of old that cur lacks.
func eachChanged[V comparable](old, cur map[string]V, fn func(V)) {
	for id, v := range cur {
		if o, ok := old[id]; !ok || o != v {
			fn(v)
		}
	}
	for id, v := range old {
		if _, ok := cur[id]; !ok {
			fn(v)
		}
	}
}
