package rpc

import (
	"context"
	"sort"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// LiveState is what the leader's scheduler knows without replicating it
// (scheduler.Live): why instances wait for offers, and the results of the
// health and readiness checks it runs. Only the leader's is fed; followers
// ask the leader.
type LiveState interface {
	// Queue lists the apps with waiting instances (all, or appID's).
	Queue(appID string) []*v1.QueueEntry
	// CheckResults lists the check results of running tasks (all, or
	// appID's).
	CheckResults(appID string) []*v1.TaskCheckResults
	// ReasonFunnel lists the reasons an offer is declined for, in order.
	ReasonFunnel() []string
}

// goalOf is an instance's goal, Running when unset.
func goalOf(i *v1.Instance) v1.Goal {
	if i.GetGoal() == v1.Goal_GOAL_UNSPECIFIED {
		return v1.Goal_GOAL_RUNNING
	}
	return i.GetGoal()
}

// liveAppID normalizes the app id of a live read and checks that the app
// exists ("" names every app).
func (s *Server) liveAppID(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	id := appmodel.NormalizeID(raw)
	app, err := s.store().Snapshot().App(id)
	if err != nil {
		return "", stateError(err)
	}
	if app == nil {
		return "", notFound("app %s does not exist", id)
	}
	return id, nil
}

// GetQueue serves the leader's queue: per app, the waiting instances and
// what the offers processed for them said (followers forward).
func (a *appService) GetQueue(ctx context.Context, req *connect.Request[v1.GetQueueRequest]) (*connect.Response[v1.GetQueueResponse], error) {
	msg := req.Msg
	id, err := a.liveAppID(msg.AppId)
	if err != nil {
		return nil, err
	}
	return onLeader(ctx, a.Server, req.Header(), func(context.Context) (*connect.Response[v1.GetQueueResponse], error) {
		res := &v1.GetQueueResponse{}
		if a.cfg.Live != nil {
			res.Queue = a.cfg.Live.Queue(id)
			res.ReasonFunnel = a.cfg.Live.ReasonFunnel()
		}
		return connect.NewResponse(res), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.GetQueueResponse], error) {
		return pc.app.GetQueue(ctx, forwarded(ctx, msg))
	})
}

// ListCheckResults serves the leader's health and readiness check results
// (followers forward).
func (t *taskService) ListCheckResults(ctx context.Context, req *connect.Request[v1.ListCheckResultsRequest]) (*connect.Response[v1.ListCheckResultsResponse], error) {
	msg := req.Msg
	id, err := t.liveAppID(msg.AppId)
	if err != nil {
		return nil, err
	}
	return onLeader(ctx, t.Server, req.Header(), func(context.Context) (*connect.Response[v1.ListCheckResultsResponse], error) {
		res := &v1.ListCheckResultsResponse{}
		if t.cfg.Live != nil {
			res.Results = t.cfg.Live.CheckResults(id)
		}
		return connect.NewResponse(res), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.ListCheckResultsResponse], error) {
		return pc.task.ListCheckResults(ctx, forwarded(ctx, msg))
	})
}

// liveWait bounds how long a listing waits for the leader's check results
// before it answers without them.
const liveWait = 2 * time.Second

// checkResults returns the leader's check results by task id: this
// server's own when it leads, else the leader's, asked once (a listing
// answers without them when no leader answers in time: they are extra).
func (s *Server) checkResults(ctx context.Context, appID string) map[string]*v1.TaskCheckResults {
	var list []*v1.TaskCheckResults
	switch {
	case s.clu.IsLeader():
		if s.cfg.Live != nil {
			list = s.cfg.Live.CheckResults(appID)
		}
	default:
		_, _, addr := s.clu.Leader()
		if addr == "" {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, min(liveWait, s.cfg.ForwardTimeout))
		defer cancel()
		res, err := s.peer(addr).task.ListCheckResults(wctx, forwarded(ctx, &v1.ListCheckResultsRequest{AppId: appID}))
		if err != nil {
			s.log.Debug("check results from the leader unavailable", "leader", addr, "err", err)
			return nil
		}
		list = res.Msg.GetResults()
	}
	if len(list) == 0 {
		return nil
	}
	out := make(map[string]*v1.TaskCheckResults, len(list))
	for _, r := range list {
		out[r.GetTaskId()] = r
	}
	return out
}

// withCheckResults adds the leader's check results to task views (after
// the Mesos check's, see withMesosCheck), in the order of the app's
// healthChecks. On a follower that is a call to the leader, made only when
// a task can have such results (mayHaveCheckResults): it was most of a
// follower's listing time for apps without leader-run checks.
func (s *Server) withCheckResults(ctx context.Context, st *fsm.Snapshot, appID string, tasks []*v1.TaskView) {
	if !mayHaveCheckResults(st, tasks) {
		return
	}
	byTask := s.checkResults(ctx, appID)
	for _, tv := range tasks {
		if r := byTask[tv.GetId()]; r != nil {
			tv.HealthCheckResults = append(tv.HealthCheckResults, r.GetHealthCheckResults()...)
			sort.SliceStable(tv.HealthCheckResults, func(i, j int) bool {
				return tv.HealthCheckResults[i].GetIndex() < tv.HealthCheckResults[j].GetIndex()
			})
			tv.ReadinessCheckResults = r.GetReadinessCheckResults()
		}
	}
}

// mayHaveCheckResults reports whether the leader can hold check results
// for any of tasks: a task that has not ended, whose app runs checks the
// leader makes (HTTP, HTTPS or TCP health checks, as the task's own app
// version or the current one says, or readiness checks). When the state
// cannot tell, it answers true.
func mayHaveCheckResults(st *fsm.Snapshot, tasks []*v1.TaskView) bool {
	seen := map[[2]string]bool{}
	for _, tv := range tasks {
		if tv.GetState() == "" || isTerminal(tv.GetState()) {
			continue
		}
		key := [2]string{tv.GetAppId(), tv.GetVersion()}
		if seen[key] {
			continue
		}
		seen[key] = true
		current, err := st.App(tv.GetAppId())
		if err != nil || current == nil || leaderChecks(current) {
			return true
		}
		if tv.GetVersion() == "" || tv.GetVersion() == current.GetVersion() {
			continue
		}
		own, err := st.AppVersion(tv.GetAppId(), tv.GetVersion())
		if err != nil || leaderChecks(own) {
			return true
		}
	}
	return false
}

// leaderChecks reports whether the leader runs checks for tasks of app.
func leaderChecks(app *v1.App) bool {
	if len(app.GetReadinessChecks()) > 0 {
		return true
	}
	for _, hc := range app.GetHealthChecks() {
		if appmodel.IsMarathonCheck(hc) {
			return true
		}
	}
	return false
}

// withMesosCheck adds to a running task's view the result of its app's
// Mesos check (COMMAND, MESOS_*), as its last status update from Mesos
// reported it (committed: the executor runs it, not the leader). cache
// maps app ids to the index of their Mesos check (-1: none).
func withMesosCheck(st *fsm.Snapshot, cache map[string]int, inst *v1.Instance, tv *v1.TaskView) error {
	t := inst.GetTask()
	if t == nil || t.MesosHealthy == nil || isTerminal(t.GetState()) {
		return nil
	}
	index, ok := cache[inst.GetAppId()]
	if !ok {
		index = -1
		app, err := st.App(inst.GetAppId())
		if err != nil {
			return stateError(err)
		}
		for k, hc := range app.GetHealthChecks() {
			if !appmodel.IsMarathonCheck(hc) {
				index = k
				break
			}
		}
		cache[inst.GetAppId()] = index
	}
	if index < 0 {
		return nil
	}
	tv.HealthCheckResults = append(tv.HealthCheckResults, &v1.HealthCheckResult{
		Index: int32(index), InstanceId: inst.GetId(), TaskId: t.GetId(), Alive: t.GetMesosHealthy(),
	})
	return nil
}

// currentActions are a running deployment's current step's actions, each
// with the readiness check results of its app's tasks.
func currentActions(d *v1.Deployment, byTask map[string]*v1.TaskCheckResults) *v1.CurrentActions {
	out := &v1.CurrentActions{DeploymentId: d.GetId()}
	if d.GetStatus() != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
		return out
	}
	step := int(d.GetCurrentStep())
	if step < 1 {
		step = 1
	}
	if step > len(d.GetSteps()) {
		return out
	}
	for _, act := range d.GetSteps()[step-1].GetActions() {
		ca := &v1.CurrentAction{Action: act.GetAction(), App: act.GetApp()}
		for _, r := range byTask {
			if r.GetAppId() == act.GetApp() {
				ca.ReadinessCheckResults = append(ca.ReadinessCheckResults, r.GetReadinessCheckResults()...)
			}
		}
		sortReadiness(ca.ReadinessCheckResults)
		out.Actions = append(out.Actions, ca)
	}
	return out
}

func sortReadiness(rs []*v1.ReadinessCheckResult) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].GetTaskId() != rs[j].GetTaskId() {
			return rs[i].GetTaskId() < rs[j].GetTaskId()
		}
		return rs[i].GetName() < rs[j].GetName()
	})
}
