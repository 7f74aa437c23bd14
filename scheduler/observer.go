package scheduler

import (
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// Observer is told what the driver does: the server's metrics implement it
// (the scheduler does not know Prometheus). Decide stays pure: the driver
// counts from the inputs it feeds and the Decisions it gets back. Methods
// are called from the scheduler's loop and must not block.
type Observer interface {
	// Decided is called after each decision, with the input's kind
	// (offers, status, statuses, tick, health, readiness, subscribed).
	Decided(input string, took time.Duration)
	// Offers is called with the offers of one OFFERS event received, and
	// the offer ids the decision declined and accepted.
	Offers(received, declined, accepted int)
	// OperationsSent is called with the Mesos operations handed to the
	// sender, by name: RESERVE, CREATE, LAUNCH, DESTROY, UNRESERVE, KILL.
	OperationsSent(op string, n int)
	// PlanCommitted is called after each plan commit (ok false: refused
	// or failed) with its latency.
	PlanCommitted(took time.Duration, ok bool)
	// Placed is called when a task reports TASK_RUNNING, with the time
	// since its launch was committed (the intent).
	Placed(took time.Duration)
	// Reconciled is called when the explicit reconciliation after a
	// subscription ends, complete (missing 0) or not.
	Reconciled(took time.Duration, tasks, missing int)
	// HealthChecked is called with each health check result.
	HealthChecked(healthy bool)
	// DeploymentFinished is called when a deployment ends: "succeeded" or
	// "failed".
	DeploymentFinished(outcome string)
	// Subscribed is called when the subscription starts (true) and ends
	// (false); Resubscribing before each retry of a broken one.
	Subscribed(subscribed bool)
	Resubscribing()
}

// inputKind names an input for the decisions counter.
func inputKind(in Input) string {
	switch in.(type) {
	case Subscribed:
		return "subscribed"
	case Offers:
		return "offers"
	case StatusUpdate:
		return "status"
	case StatusUpdates:
		return "statuses"
	case Tick:
		if in.(Tick).Changes != nil {
			return "changes"
		}
		return "tick"
	case HealthResult:
		return "health"
	case ReadinessResult:
		return "readiness"
	default:
		return "other"
	}
}

// observe reports one committed decision d on input in to o, with the
// placements computed before it.
func observe(o Observer, in Input, d Decision) {
	for _, p := range d.Placed {
		o.Placed(p)
	}
	switch in := in.(type) {
	case Offers:
		declined, accepted := offerOutcomes(d.Calls)
		o.Offers(len(in.Offers), declined, accepted)
	case HealthResult:
		o.HealthChecked(in.Healthy)
	}
	countOperations(o, d.Calls)
	if r := d.Reconciliation; r != nil {
		o.Reconciled(r.Took, r.Tasks, r.Missing)
	}
	for _, e := range d.Events {
		switch e.GetType() {
		case "deployment_success":
			o.DeploymentFinished("succeeded")
		case "deployment_failed":
			o.DeploymentFinished("failed")
		}
	}
}

// offerOutcomes counts the offer ids declined and accepted by calls.
func offerOutcomes(cs []*scheduler.Call) (declined, accepted int) {
	for _, c := range cs {
		switch c.Type {
		case scheduler.Call_DECLINE:
			declined += len(c.GetDecline().GetOfferIDs())
		case scheduler.Call_ACCEPT:
			accepted += len(c.GetAccept().GetOfferIDs())
		}
	}
	return declined, accepted
}

// countOperations reports the offer operations and kills in calls.
func countOperations(o Observer, cs []*scheduler.Call) {
	var n [mesos.Offer_Operation_DESTROY_DISK + 1]int
	kills := 0
	for _, c := range cs {
		switch c.Type {
		case scheduler.Call_ACCEPT:
			for _, op := range c.GetAccept().GetOperations() {
				if t := op.GetType(); t >= 0 && int(t) < len(n) {
					n[t]++
				}
			}
		case scheduler.Call_KILL:
			kills++
		}
	}
	for t, c := range n {
		if c > 0 {
			o.OperationsSent(mesos.Offer_Operation_Type(t).String(), c)
		}
	}
	if kills > 0 {
		o.OperationsSent("KILL", kills)
	}
}

// callInstances returns the instances a call acts on (from task ids and
// the berth_instance_id label of reserved resources), for its log lines.
func callInstances(c *scheduler.Call) []string {
	seen := map[string]bool{}
	var out []string
	add := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	switch c.Type {
	case scheduler.Call_ACCEPT:
		for _, op := range c.GetAccept().GetOperations() {
			for _, t := range op.GetLaunch().GetTaskInfos() {
				add(instanceIDOfTask(t.GetTaskID().Value))
			}
			var rs []mesos.Resource
			rs = append(rs, op.GetReserve().GetResources()...)
			rs = append(rs, op.GetUnreserve().GetResources()...)
			rs = append(rs, op.GetCreate().GetVolumes()...)
			rs = append(rs, op.GetDestroy().GetVolumes()...)
			for _, r := range rs {
				add(resourceInstanceID(r))
			}
		}
	case scheduler.Call_KILL:
		add(instanceIDOfTask(c.GetKill().GetTaskID().Value))
	case scheduler.Call_ACKNOWLEDGE:
		add(instanceIDOfTask(c.GetAcknowledge().GetTaskID().Value))
	}
	return out
}

// resourceInstanceID is the berth_instance_id label of a reserved
// resource, or "".
func resourceInstanceID(r mesos.Resource) string {
	iid, _ := labelValue(currentReservation(&r).GetLabels(), LabelInstanceID)
	return iid
}

// operationNames lists the operations of an ACCEPT call, in order.
func operationNames(c *scheduler.Call) []string {
	var out []string
	for _, op := range c.GetAccept().GetOperations() {
		out = append(out, op.GetType().String())
	}
	return out
}
