package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"connectrpc.com/connect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// appQueue returns the leader's queue entry of an app: why its instances
// wait. Nil when none waits or the queue cannot be read (it is extra
// information: a command never fails for it).
func appQueue(ctx context.Context, cl *clients, appID string) *v1.QueueEntry {
	res, err := cl.apps.GetQueue(ctx, connect.NewRequest(&v1.GetQueueRequest{AppId: appID}))
	if err != nil {
		return nil
	}
	for _, e := range res.Msg.GetQueue() {
		return e
	}
	return nil
}

// waitingText says why an app's instances wait, e.g. "12 offers declined:
// InsufficientMemory 9, UnfulfilledConstraint 3" (every offer since they
// began waiting, each under its first reason in Marathon's funnel order).
func waitingText(e *v1.QueueEntry) string {
	s := e.GetProcessedOffersSummary()
	if s.GetProcessedOffersCount() == 0 {
		return "no offer processed yet"
	}
	type count struct {
		reason string
		n      int32
	}
	var cs []count
	for _, r := range s.GetRejectSummaryLaunchAttempt() {
		if r.GetDeclined() > 0 {
			cs = append(cs, count{r.GetReason(), r.GetDeclined()})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].n > cs[j].n })
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s %d", c.reason, c.n))
	}
	text := fmt.Sprintf("%d offers declined", s.GetUnusedOffersCount())
	if len(parts) > 0 {
		text += ": " + strings.Join(parts, ", ")
	}
	if used := s.GetProcessedOffersCount() - s.GetUnusedOffersCount(); used > 0 {
		text += fmt.Sprintf(" (%d used)", used)
	}
	return text
}

// waitingRows are the rows of app show for its waiting instances.
func waitingRows(e *v1.QueueEntry) [][]string {
	if e == nil {
		return nil
	}
	rows := [][]string{{"WAITING", fmt.Sprintf("%d instance(s) since %s: %s", len(e.GetInstanceIds()), orNA(e.GetSince()), waitingText(e))}}
	if last := e.GetLastUnusedOffers(); len(last) > 0 {
		o := last[len(last)-1]
		rows = append(rows, []string{"LAST DECLINED OFFER", fmt.Sprintf("%s on %s at %s: %s", o.GetOfferId(), orNA(o.GetHostname()), o.GetTimestamp(), strings.Join(o.GetReasons(), ", "))})
	}
	return rows
}

// healthText sums a task's health check results up, e.g. "check 0 failing
// (2 in a row): GET ...: status 503".
func healthText(t *v1.TaskView) string {
	var failing []string
	for _, h := range t.GetHealthCheckResults() {
		if !h.GetAlive() && h.GetLastFailureCause() != "" {
			failing = append(failing, fmt.Sprintf("check %d failing (%d in a row): %s", h.GetIndex(), h.GetConsecutiveFailures(), h.GetLastFailureCause()))
		}
	}
	return strings.Join(failing, "; ")
}

// checkRows are the rows of task show for each check result.
func checkRows(t *v1.TaskView) [][]string {
	var rows [][]string
	for _, h := range t.GetHealthCheckResults() {
		v := fmt.Sprintf("alive=%t consecutiveFailures=%d firstSuccess=%s lastSuccess=%s lastFailure=%s",
			h.GetAlive(), h.GetConsecutiveFailures(), orNA(h.GetFirstSuccess()), orNA(h.GetLastSuccess()), orNA(h.GetLastFailure()))
		if h.GetLastFailureCause() != "" {
			v += " cause=" + h.GetLastFailureCause()
		}
		rows = append(rows, []string{fmt.Sprintf("HEALTH CHECK %d", h.GetIndex()), v})
	}
	for _, r := range t.GetReadinessCheckResults() {
		rows = append(rows, []string{"READINESS " + r.GetName(), readinessText(r)})
	}
	return rows
}

func readinessText(r *v1.ReadinessCheckResult) string {
	v := fmt.Sprintf("ready=%t", r.GetReady())
	if lr := r.GetLastResponse(); lr != nil {
		body := lr.GetBody()
		if len(body) > 80 {
			body = body[:80] + "..."
		}
		v += fmt.Sprintf(" last answer %d %s %q", lr.GetStatus(), lr.GetContentType(), body)
	}
	return v
}

// readinessSummary counts the ready results of a deployment's current
// actions, e.g. "1/2 ready"; "-" without any.
func readinessSummary(c *v1.CurrentActions) string {
	ready, total := 0, 0
	for _, a := range c.GetActions() {
		for _, r := range a.GetReadinessCheckResults() {
			total++
			if r.GetReady() {
				ready++
			}
		}
	}
	if total == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d ready", ready, total)
}
