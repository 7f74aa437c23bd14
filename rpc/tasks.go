package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

type taskService struct{ *Server }

// terminalStates are the Mesos task states after which a task runs no more.
var terminalStates = map[string]bool{
	"TASK_FINISHED": true, "TASK_FAILED": true, "TASK_KILLED": true, "TASK_ERROR": true,
	"TASK_LOST": true, "TASK_DROPPED": true, "TASK_GONE": true, "TASK_GONE_BY_OPERATOR": true,
}

// isTerminal reports whether a Mesos task state is final.
func isTerminal(state string) bool { return terminalStates[state] }

// IsTerminalTaskState reports whether a Mesos task state (TASK_FAILED, ...)
// is final: the task runs no more.
func IsTerminalTaskState(state string) bool { return isTerminal(state) }

// goalNames are Marathon's names for instance goals.
var goalNames = map[v1.Goal]string{
	v1.Goal_GOAL_RUNNING:        "Running",
	v1.Goal_GOAL_STOPPED:        "Stopped",
	v1.Goal_GOAL_DECOMMISSIONED: "Decommissioned",
}

// reservationStateNames name a berth's reservation state in task views; an
// instance with no reservation yet is "none".
var reservationStateNames = map[v1.ReservationState]string{
	v1.ReservationState_RESERVATION_STATE_UNSPECIFIED: "none",
	v1.ReservationState_RESERVATION_STATE_NONE:        "none",
	v1.ReservationState_RESERVATION_STATE_PENDING:     "pending",
	v1.ReservationState_RESERVATION_STATE_RESERVED:    "reserved",
}

// marathonTime formats a timestamp as Marathon does (UTC, milliseconds).
func marathonTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// TaskViewOf renders an instance as Marathon's task JSON. An instance whose
// task is not running (stopped, crashed, not launched yet) is still shown,
// with its local volumes but without startedAt, stagedAt, ports or version,
// as Marathon shows suspended resident tasks. The last state, Mesos'
// message and reason, and where the sandbox is (agentUrl, sandbox) are
// always shown, so a failed task says why it failed.
func TaskViewOf(inst *v1.Instance) *v1.TaskView {
	r := inst.GetReservation()
	t := inst.GetTask()
	tv := &v1.TaskView{
		Id:               inst.GetId(),
		AppId:            inst.GetAppId(),
		InstanceId:       inst.GetId(),
		Host:             r.GetHostname(),
		AgentId:          r.GetAgentId(),
		Goal:             goalNames[goalOf(inst)],
		Role:             r.GetRole(),
		AgentNotice:      inst.GetAgentNotice(),
		BerthEpoch:       r.GetEpoch(),
		ReservationState: reservationStateNames[r.GetState()],
		LastFailure:      inst.GetLastFailure(),
		Move:             inst.GetMove(),
	}
	if t != nil {
		tv.Id = t.GetId()
		tv.State = t.GetState()
		tv.Message = t.GetMessage()
		tv.Reason = t.GetReason()
		tv.Sandbox = t.GetSandbox()
		tv.AgentUrl = t.GetAgentUrl()
		if t.GetHostname() != "" {
			tv.Host = t.GetHostname()
		}
		if t.GetAgentId() != "" {
			tv.AgentId = t.GetAgentId()
		}
		if !isTerminal(t.GetState()) {
			tv.Healthy = t.Healthy
			tv.StartedAt = marathonTime(t.GetStartedAt())
			tv.StagedAt = marathonTime(t.GetStagedAt())
			tv.Ports = t.GetPorts()
			tv.Version = t.GetAppVersion()
			tv.Ready = t.Ready
		}
	}
	if nb := inst.GetLaunchNotBefore(); nb != nil && (t == nil || isTerminal(t.GetState())) {
		tv.LaunchNotBefore = marathonTime(nb)
	}
	for _, v := range r.GetVolumes() {
		tv.LocalVolumes = append(tv.LocalVolumes, &v1.TaskLocalVolume{
			ContainerPath: v.GetContainerPath(), PersistenceId: v.GetPersistenceId(), SizeMib: v.GetSizeMib(),
		})
	}
	return tv
}

// ListTasks lists one task view per instance, including stopped ones.
func (t *taskService) ListTasks(ctx context.Context, req *connect.Request[v1.ListTasksRequest]) (*connect.Response[v1.ListTasksResponse], error) {
	msg := req.Msg
	return readConsistent(ctx, t.Server, msg.Consistency, req.Header(), func() (*connect.Response[v1.ListTasksResponse], error) {
		st := t.store().Snapshot()
		var insts []*v1.Instance
		var err error
		if msg.AppId != "" {
			insts, err = st.InstancesByApp(appmodel.NormalizeID(msg.AppId))
		} else {
			insts, err = st.Instances()
		}
		if err != nil {
			return nil, stateError(err)
		}
		pages, err := newPager(msg.PageSize, msg.PageToken)
		if err != nil {
			return nil, err
		}
		res := &v1.ListTasksResponse{}
		mesosChecks := map[string]int{} // app id → index of its Mesos check, -1: none
		for i, inst := range insts {
			if err := stillWanted(ctx, i); err != nil {
				return nil, connect.NewError(connect.CodeCanceled, err)
			}
			if pages.done() {
				break
			}
			if pages.take(inst.GetId()) {
				tv := TaskViewOf(inst)
				if err := withMesosCheck(st, mesosChecks, inst, tv); err != nil {
					return nil, err
				}
				res.Tasks = append(res.Tasks, tv)
			}
		}
		res.NextPageToken = pages.next()
		t.withCheckResults(ctx, st, appmodel.NormalizeID(msg.AppId), res.Tasks)
		return connect.NewResponse(res), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.ListTasksResponse], error) {
		return pc.task.ListTasks(ctx, forwarded(ctx, msg))
	})
}

// KillTask kills an instance's task (id is a task id or an instance id).
// A plain kill records the request on the task; the scheduler sends the
// Mesos KILL and, the goal being unchanged, relaunches on the same berth.
// wipe decommissions the instance (its volume is destroyed, a fresh
// instance replaces it); scale stops the instance (keeping its berth) and
// lowers the app's instances by one.
func (t *taskService) KillTask(ctx context.Context, req *connect.Request[v1.KillTaskRequest]) (*connect.Response[v1.KillTaskResponse], error) {
	msg := req.Msg
	if msg.Wipe && msg.Scale {
		return nil, invalid("scale", "cannot be combined with wipe")
	}
	if msg.Id == "" {
		return nil, invalid("id", "must not be empty")
	}
	return onLeaderWrite(ctx, t.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.KillTaskResponse], error) {
		return retryStale(func() (*connect.Response[v1.KillTaskResponse], error) { return t.killLocal(ctx, msg) })
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.KillTaskResponse], error) {
		return pc.task.KillTask(ctx, forwarded(ctx, msg))
	})
}

// retryStale runs an instance write decided from the current state until
// it is not refused as stale, at most 10 times: the scheduler writes
// instances too, and the FSM refuses (Aborted) a write from a stale read.
func retryStale[T any](write func() (T, error)) (T, error) {
	var (
		res T
		err error
	)
	for attempt := 0; attempt < 10; attempt++ {
		res, err = write()
		if connect.CodeOf(err) != connect.CodeAborted {
			break
		}
	}
	return res, err
}

// killLocal applies a kill on the leader from the current state.
func (t *taskService) killLocal(ctx context.Context, msg *v1.KillTaskRequest) (*connect.Response[v1.KillTaskResponse], error) {
	{
		st := t.store().Snapshot()
		inst, err := st.Instance(msg.Id)
		if err == nil && inst == nil {
			inst, err = st.InstanceByTaskID(msg.Id)
		}
		if err != nil {
			return nil, stateError(err)
		}
		if inst == nil {
			return nil, notFound("no task or instance %s", msg.Id)
		}
		next := proto.Clone(inst).(*v1.Instance)
		now := t.now()
		switch {
		case msg.Wipe:
			next.Goal = v1.Goal_GOAL_DECOMMISSIONED
			if _, err := t.apply(ctx, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{next}}); err != nil {
				return nil, err
			}
			t.log.Info("instance wiped", "instance", next.GetId(), "app", next.GetAppId())
			return connect.NewResponse(&v1.KillTaskResponse{Task: TaskViewOf(next)}), nil
		case msg.Scale:
			return t.killAndScale(ctx, msg.RequestId, inst, next)
		default:
			task := next.GetTask()
			if task == nil || isTerminal(task.GetState()) {
				// Nothing runs: nothing to kill.
				return connect.NewResponse(&v1.KillTaskResponse{Task: TaskViewOf(inst)}), nil
			}
			task.KillRequestedAt = timestamppb.New(now)
			if _, err := t.apply(ctx, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{next}}); err != nil {
				return nil, err
			}
			t.log.Info("task kill requested", "task", task.GetId(), "instance", next.GetId())
			return connect.NewResponse(&v1.KillTaskResponse{Task: TaskViewOf(next)}), nil
		}
	}
}

// killAndScale stops one instance and lowers its app's instances by one in
// one write, with a scale deployment.
func (t *taskService) killAndScale(ctx context.Context, requestID string, inst, next *v1.Instance) (*connect.Response[v1.KillTaskResponse], error) {
	res, err := t.writeApp(ctx, appWrite{requestID: requestID, appID: inst.GetAppId(), mustExist: true,
		change: func(app *v1.App, version string) (appChange, error) {
			if inst.GetGoal() != v1.Goal_GOAL_RUNNING {
				return appChange{}, connect.NewError(connect.CodeFailedPrecondition,
					fmt.Errorf("instance %s is not running (goal %s): scaling it down changes nothing", inst.GetId(), goalNames[inst.GetGoal()]))
			}
			nextApp := proto.Clone(app).(*v1.App)
			nextApp.Instances = proto.Int32(max(0, app.GetInstances()-1))
			appmodel.StampVersion(app, nextApp, version, appmodel.Edit)
			next.Goal = v1.Goal_GOAL_STOPPED
			// A scale, down to 0 too (see updateChange).
			return appChange{command: v1.CommandType_COMMAND_TYPE_APP_UPDATE, app: nextApp, action: ActionScale,
				putInstances: []*v1.Instance{next}, what: "instance stopped and app scaled down"}, nil
		}})
	if err != nil {
		return nil, err
	}
	if res.retried {
		cur, err := t.store().Snapshot().Instance(inst.GetId())
		if err != nil {
			return nil, stateError(err)
		}
		if cur != nil {
			next = cur
		}
	}
	return connect.NewResponse(&v1.KillTaskResponse{Task: TaskViewOf(next), DeploymentId: res.deployment.GetId()}), nil
}
