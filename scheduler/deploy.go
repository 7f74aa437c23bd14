package scheduler

import (
	"fmt"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// tickDeployments finishes running deployments: SUCCEEDED once every
// affected app has converged, FAILED when an affected app cannot converge
// (an invalid task, a container that failed to launch three times in a row,
// or an instance crash-looping past the threshold). Instances keep being
// relaunched with backoff either way. With apps set, only the deployments
// affecting one of those apps are looked at.
func (p *planner) tickDeployments(apps map[string]bool) {
	ids := make([]string, 0, len(p.st.Deployments))
	for id, d := range p.st.Deployments {
		if d.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING &&
			(apps == nil || slices.ContainsFunc(d.GetAffectedApps(), func(a string) bool { return apps[a] })) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return
	}
	sort.Strings(ids)
	for _, id := range ids {
		d := p.st.Deployments[id]
		converged := true
		failure := ""
		for _, appID := range d.GetAffectedApps() {
			var insts []*v1.Instance
			for _, iid := range p.appInstanceIDs(appID) {
				insts = append(insts, p.inst(iid))
			}
			ok, msg := p.appConverged(appID, insts)
			if msg != "" && failure == "" {
				failure = msg
			}
			if !ok {
				converged = false
			}
		}
		switch {
		case failure != "":
			nd := proto.Clone(d).(*v1.Deployment)
			nd.Status = v1.DeploymentStatus_DEPLOYMENT_STATUS_FAILED
			nd.Message = failure
			nd.FinishedAt = p.ts()
			p.deps[id] = nd
			p.event(&v1.Event{Type: "deployment_failed", Deployment: nd, Message: failure, AppId: firstApp(nd)})
		case converged:
			nd := proto.Clone(d).(*v1.Deployment)
			nd.Status = v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED
			nd.CurrentStep = uint32(len(nd.GetSteps()))
			nd.FinishedAt = p.ts()
			p.deps[id] = nd
			p.event(&v1.Event{Type: "deployment_success", Deployment: nd, AppId: firstApp(nd)})
		case d.GetCurrentStep() == 0 && len(d.GetSteps()) > 0:
			// Work has started on the (first) step.
			nd := proto.Clone(d).(*v1.Deployment)
			nd.CurrentStep = 1
			p.deps[id] = nd
			p.event(&v1.Event{Type: "deployment_info", Deployment: nd, AppId: firstApp(nd)})
		}
	}
}

func firstApp(d *v1.Deployment) string {
	if len(d.GetAffectedApps()) > 0 {
		return d.GetAffectedApps()[0]
	}
	return ""
}

// appConverged reports whether an app reached its desired state: for a
// removed app, all its instances forgotten; otherwise exactly
// app.instances goal-Running instances all ready (running the current
// configuration, healthy if checked, ready during a deployment) and no
// other instance of the app with a live task. msg explains why the app
// cannot converge, if so (an invalid task, repeated failures, or a role
// this framework cannot serve).
func (p *planner) appConverged(appID string, insts []*v1.Instance) (ok bool, msg string) {
	a := p.st.Apps[appID]
	if a == nil {
		return len(insts) == 0, ""
	}
	want := appmodel.Instances(a)
	running := 0
	ok = true
	for _, i := range insts {
		t := i.GetTask()
		if goalOf(i) != v1.Goal_GOAL_RUNNING {
			if taskLive(t) {
				ok = false
			}
			continue
		}
		running++
		if !p.ready(i, a) {
			ok = false
		}
		if t.GetState() == stError && t.GetReason() == "REASON_TASK_INVALID" && msg == "" {
			msg = fmt.Sprintf("instance %s: task %s is invalid: %s", i.GetId(), t.GetId(), t.GetMessage())
		}
		if t.GetReason() == "REASON_CONTAINER_LAUNCH_FAILED" && i.GetConsecutiveFailures() >= 3 && msg == "" {
			msg = fmt.Sprintf("instance %s: container launch failed %d times: %s", i.GetId(), i.GetConsecutiveFailures(), t.GetMessage())
		}
		if th := p.cfg.DeploymentFailureThreshold; th > 0 && int(i.GetConsecutiveFailures()) >= th && msg == "" {
			msg = fmt.Sprintf("instance %s failed %d times in a row (last: %s %s)", i.GetId(), i.GetConsecutiveFailures(), t.GetState(), t.GetMessage())
		}
	}
	if running != want {
		ok = false
	}
	if msg == "" && want > 0 && !ok {
		msg = placementRefusal(a, p.cfg.Role)
	}
	return ok, msg
}
