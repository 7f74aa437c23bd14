package scheduler

import (
	"sort"
	"sync"
	"time"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// maxLastUnusedOffers bounds the unused offers remembered per app.
const maxLastUnusedOffers = 10

// Live is what the leader knows that is not replicated: why instances wait
// (the offers processed for them) and the results of the health and
// readiness checks it runs. It lives in the leader's memory only, so that
// no offer and no probe costs a Raft write: the committed state records
// only what decisions rest on (a task's aggregate health once it changes,
// its readiness once it passed). A new leader starts empty. The API reads
// it on the leader (followers forward); it is safe for concurrent use.
type Live struct {
	mu     sync.Mutex
	active bool
	apps   map[string]*appOffers
	health *healthChecker
	ready  *readinessChecker
}

// appOffers is what the offers processed while an app waits meant to it.
type appOffers struct {
	instances []string
	since     time.Time

	processed, unused        int
	lastUnusedAt, lastUsedAt time.Time
	attempt                  map[string]int // unused offers since the wait began, by first reason
	last                     []OfferOutcome // the last unused offers, oldest first
	lastAt                   []time.Time
}

// NewLive returns an empty Live, serving nothing until a scheduler
// subscribes with it.
func NewLive() *Live { return &Live{apps: map[string]*appOffers{}} }

// start begins a subscription's term: what an earlier one knew is dropped.
func (l *Live) start(hc *healthChecker, rc *readinessChecker) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active, l.apps, l.health, l.ready = true, map[string]*appOffers{}, hc, rc
}

// stop ends it: a server that is not subscribed serves nothing.
func (l *Live) stop() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active, l.apps, l.health, l.ready = false, map[string]*appOffers{}, nil, nil
}

// ReasonFunnel returns ReasonFunnel (for the API, which does not import
// the scheduler).
func (l *Live) ReasonFunnel() []string { return append([]string(nil), ReasonFunnel...) }

// waitingSet is, per app, the instances waiting for an offer and since
// when the oldest waits.
type waitingSet map[string]*appOffers

// waitingInstances lists the goal-Running instances of existing apps with
// no live task: those waiting for an offer (or their launch backoff).
func waitingInstances(st *State) waitingSet {
	out := waitingSet{}
	for _, i := range st.instancesInOrder() {
		if goalOf(i) != v1.Goal_GOAL_RUNNING || taskLive(i.GetTask()) || st.Apps[i.GetAppId()] == nil {
			continue
		}
		since := i.GetCreatedAt().AsTime()
		if t := i.GetTask(); t.GetUpdatedAt() != nil && t.GetUpdatedAt().AsTime().After(since) {
			since = t.GetUpdatedAt().AsTime()
		}
		w := out[i.GetAppId()]
		if w == nil {
			w = &appOffers{since: since}
			out[i.GetAppId()] = w
		}
		w.instances = append(w.instances, i.GetId())
		if since.Before(w.since) {
			w.since = since
		}
	}
	return out
}

// syncWaiting replaces the set of waiting apps: an app that waits no more
// forgets its offers (its next wait is a new launch attempt, as in
// Marathon).
func (l *Live) syncWaiting(w waitingSet) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.apps {
		if w[id] == nil {
			delete(l.apps, id)
		}
	}
	for id, nw := range w {
		a := l.apps[id]
		if a == nil {
			l.apps[id] = nw
			continue
		}
		a.instances, a.since = nw.instances, nw.since
	}
}

// recordOffers folds the outcomes of one decision in.
func (l *Live) recordOffers(outs []OfferOutcome, now time.Time) {
	if l == nil || len(outs) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, oc := range outs {
		a := l.apps[oc.AppID]
		if a == nil {
			// Not known as waiting yet (the tick that lists it is next).
			a = &appOffers{since: now}
			l.apps[oc.AppID] = a
		}
		if a.attempt == nil {
			a.attempt = map[string]int{}
		}
		a.processed++
		if oc.Used {
			a.lastUsedAt = now
			continue
		}
		a.unused++
		a.lastUnusedAt = now
		if len(oc.Reasons) > 0 {
			a.attempt[oc.Reasons[0]]++ // Reasons are in funnel order
		}
		a.last = append(a.last, oc)
		a.lastAt = append(a.lastAt, now)
		if n := len(a.last); n > maxLastUnusedOffers {
			a.last = append([]OfferOutcome(nil), a.last[n-maxLastUnusedOffers:]...)
			a.lastAt = append([]time.Time(nil), a.lastAt[n-maxLastUnusedOffers:]...)
		}
	}
}

// funnelCounts counts each offer under its first reason in funnel order.
func funnelCounts(outs []OfferOutcome) map[string]int {
	counts := map[string]int{}
	for _, oc := range outs {
		if len(oc.Reasons) > 0 {
			counts[oc.Reasons[0]]++ // Reasons are in funnel order
		}
	}
	return counts
}

// rejectSummary is Marathon's reject summary of some unused offers: each
// offer is declined by the first of its reasons in funnel order; a reason
// processed the offers not declined by an earlier one.
func rejectSummary(counts map[string]int, total int) []*v1.OfferRejections {
	left := int32(total)
	out := make([]*v1.OfferRejections, 0, len(ReasonFunnel))
	for _, r := range ReasonFunnel {
		n := int32(counts[r])
		out = append(out, &v1.OfferRejections{Reason: r, Declined: n, Processed: left})
		left -= n
	}
	return out
}

func liveTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// Queue returns the apps with instances waiting for an offer (every app,
// or the one named), sorted by id. Nil when no subscribed scheduler feeds
// this Live.
func (l *Live) Queue(appID string) []*v1.QueueEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return nil
	}
	ids := make([]string, 0, len(l.apps))
	for id, a := range l.apps {
		if (appID == "" || id == appID) && len(a.instances) > 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	out := make([]*v1.QueueEntry, 0, len(ids))
	for _, id := range ids {
		a := l.apps[id]
		e := &v1.QueueEntry{AppId: id, InstanceIds: append([]string(nil), a.instances...), Since: liveTime(a.since)}
		if a.processed > 0 {
			e.ProcessedOffersSummary = &v1.ProcessedOffersSummary{
				ProcessedOffersCount:       int32(a.processed),
				UnusedOffersCount:          int32(a.unused),
				LastUnusedOfferAt:          liveTime(a.lastUnusedAt),
				LastUsedOfferAt:            liveTime(a.lastUsedAt),
				RejectSummaryLastOffers:    rejectSummary(funnelCounts(a.last), len(a.last)),
				RejectSummaryLaunchAttempt: rejectSummary(a.attempt, a.unused),
			}
		}
		for k, oc := range a.last {
			e.LastUnusedOffers = append(e.LastUnusedOffers, &v1.UnusedOffer{
				OfferId: oc.OfferID, AgentId: oc.AgentID, Hostname: oc.Hostname,
				Reasons: append([]string(nil), oc.Reasons...), Timestamp: liveTime(a.lastAt[k]),
			})
		}
		out = append(out, e)
	}
	return out
}

// CheckResults returns the health and readiness check results of the
// running tasks the leader probes (of every app, or of the one named),
// sorted by task id. Nil when no subscribed scheduler feeds this Live.
func (l *Live) CheckResults(appID string) []*v1.TaskCheckResults {
	l.mu.Lock()
	hc, rc, active := l.health, l.ready, l.active
	l.mu.Unlock()
	if !active {
		return nil
	}
	byTask := map[string]*v1.TaskCheckResults{}
	get := func(taskID, app string) *v1.TaskCheckResults {
		r := byTask[taskID]
		if r == nil {
			r = &v1.TaskCheckResults{TaskId: taskID, AppId: app}
			byTask[taskID] = r
		}
		return r
	}
	if hc != nil {
		hc.checkResults(appID, func(taskID, app string, res []*v1.HealthCheckResult) {
			get(taskID, app).HealthCheckResults = res
		})
	}
	if rc != nil {
		rc.checkResults(appID, func(taskID, app string, res []*v1.ReadinessCheckResult) {
			get(taskID, app).ReadinessCheckResults = res
		})
	}
	out := make([]*v1.TaskCheckResults, 0, len(byTask))
	for _, r := range byTask {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetTaskId() < out[j].GetTaskId() })
	return out
}
