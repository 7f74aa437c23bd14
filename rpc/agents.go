package rpc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/gogo/protobuf/types"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/maintenance"
	"github.com/mesos/mesos-go/api/v1/lib/master"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/scheduler"
)

// MesosOperator calls the Mesos master's v1 operator API
// (scheduler.OperatorClient).
type MesosOperator interface {
	Call(ctx context.Context, call *master.Call) (*master.Response, error)
}

// agentService serves AgentService: each method is one or two calls of
// the master's operator API, made by the server that answers (no Raft
// state changes, so no forwarding to the leader).
type agentService struct{ *Server }

// mesosCall makes one call of the master's operator API
// (Config.MesosOperator), mapping the master's refusals to Connect codes
// with its message. Without an operator client it fails with
// FailedPrecondition.
func (s *Server) mesosCall(ctx context.Context, c *master.Call) (*master.Response, error) {
	op := s.cfg.MesosOperator
	if op == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("this server has no Mesos master configured"))
	}
	res, err := op.Call(ctx, c)
	if err == nil {
		return res, nil
	}
	if m := s.cfg.MesosMasterURL; m != "" && !strings.Contains(err.Error(), m) {
		err = fmt.Errorf("ask the Mesos master at %s: %w", m, err)
	}
	var oe *scheduler.OperatorError
	if errors.As(err, &oe) {
		code := connect.CodeFailedPrecondition
		switch oe.Status {
		case http.StatusBadRequest:
			code = connect.CodeInvalidArgument
		case http.StatusNotFound:
			code = connect.CodeNotFound
		case http.StatusUnauthorized, http.StatusForbidden:
			code = connect.CodePermissionDenied
		case http.StatusServiceUnavailable, http.StatusTooManyRequests:
			code = connect.CodeUnavailable
		case http.StatusNotImplemented:
			code = connect.CodeUnimplemented
		}
		return nil, connect.NewError(code, err)
	}
	if ctx.Err() != nil {
		return nil, ctxError(ctx.Err())
	}
	return nil, connect.NewError(connect.CodeUnavailable, err)
}

// agentStates are the AgentView.state names.
const (
	agentActive       = "ACTIVE"
	agentDeactivated  = "DEACTIVATED"
	agentDraining     = "DRAINING"
	agentDrained      = "DRAINED"
	agentDisconnected = "DISCONNECTED"
)

// ListAgents lists the agents with their drain state and maintenance.
func (s *agentService) ListAgents(ctx context.Context, req *connect.Request[v1.ListAgentsRequest]) (*connect.Response[v1.ListAgentsResponse], error) {
	res, err := s.mesosCall(ctx, &master.Call{Type: master.Call_GET_AGENTS})
	if err != nil {
		return nil, err
	}
	// The schedule is best effort: a master without maintenance support
	// still lists its agents.
	var sched maintenance.Schedule
	if ms, err := s.mesosCall(ctx, &master.Call{Type: master.Call_GET_MAINTENANCE_SCHEDULE}); err == nil && ms.GetMaintenanceSchedule != nil {
		sched = ms.GetMaintenanceSchedule.Schedule
	}
	out := &v1.ListAgentsResponse{}
	for _, a := range res.GetGetAgents().GetAgents() {
		out.Agents = append(out.Agents, agentView(a, sched))
	}
	return connect.NewResponse(out), nil
}

func agentView(a master.Response_GetAgents_Agent, sched maintenance.Schedule) *v1.AgentView {
	m := scheduler.AgentMachine(a)
	v := &v1.AgentView{
		Id:        a.AgentInfo.GetID().GetValue(),
		Hostname:  a.AgentInfo.Hostname,
		Ip:        m.GetIP(),
		Total:     scalars(a.TotalResources, nil),
		Reserved:  scalars(a.TotalResources, isReserved),
		Allocated: scalars(a.AllocatedResources, nil),
	}
	switch {
	case a.DrainInfo != nil && a.DrainInfo.State == mesos.DrainState_DRAINED:
		v.State = agentDrained
	case a.DrainInfo != nil:
		v.State = agentDraining
	case a.GetDeactivated():
		v.State = agentDeactivated
	case !a.Active:
		v.State = agentDisconnected
	default:
		v.State = agentActive
	}
	if a.DrainInfo != nil {
		v.DrainMarkGone = a.DrainInfo.Config.GetMarkGone()
	}
	for _, at := range a.AgentInfo.Attributes {
		if v.Attributes == nil {
			v.Attributes = map[string]string{}
		}
		v.Attributes[at.Name] = attributeText(at)
	}
	if w := scheduler.MachineWindow(sched, m); w != nil {
		v.MaintenanceStart = time.Unix(0, w.Unavailability.Start.Nanoseconds).UTC().Format(time.RFC3339)
		if d := w.Unavailability.Duration; d != nil {
			v.MaintenanceDuration = time.Duration(d.Nanoseconds).String()
		}
	}
	return v
}

func isReserved(r *mesos.Resource) bool {
	return len(r.Reservations) > 0 || r.Reservation != nil || (r.Role != nil && *r.Role != "*")
}

// scalars sums the scalar resources by kind; keep selects which.
func scalars(rs []mesos.Resource, keep func(*mesos.Resource) bool) *v1.AgentResources {
	m := sumResources(rs, keep)
	return &v1.AgentResources{Cpus: m.Cpus, Mem: m.Mem, Disk: m.Disk, Gpus: m.Gpus}
}

// attributeText renders an attribute's value as Mesos' --attributes does.
func attributeText(a mesos.Attribute) string {
	switch {
	case a.Text != nil:
		return a.Text.Value
	case a.Scalar != nil:
		return strconv.FormatFloat(a.Scalar.Value, 'f', -1, 64)
	case a.Ranges != nil:
		var parts []string
		for _, r := range a.Ranges.Range {
			parts = append(parts, fmt.Sprintf("%d-%d", r.Begin, r.End))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case a.Set != nil:
		items := append([]string(nil), a.Set.Item...)
		sort.Strings(items)
		return "{" + strings.Join(items, ",") + "}"
	}
	return ""
}

func agentIDField(id string) error {
	if strings.TrimSpace(id) == "" {
		return invalid("agent_id", "must not be empty")
	}
	return nil
}

// DrainAgent is DRAIN_AGENT.
func (s *agentService) DrainAgent(ctx context.Context, req *connect.Request[v1.DrainAgentRequest]) (*connect.Response[v1.DrainAgentResponse], error) {
	msg := req.Msg
	if err := agentIDField(msg.AgentId); err != nil {
		return nil, err
	}
	d := &master.Call_DrainAgent{AgentID: mesos.AgentID{Value: msg.AgentId}, MarkGone: &msg.MarkGone}
	if msg.MaxGraceSeconds != nil {
		g := *msg.MaxGraceSeconds
		if math.IsNaN(g) || g < 0 || g > 365*24*3600 {
			return nil, invalid("max_grace_seconds", fmt.Sprintf("%v must be between 0 and a year", g))
		}
		d.MaxGracePeriod = types.DurationProto(time.Duration(g * float64(time.Second)))
	}
	if _, err := s.mesosCall(ctx, &master.Call{Type: master.Call_DRAIN_AGENT, DrainAgent: d}); err != nil {
		return nil, err
	}
	s.audit(ctx)
	s.log.Info("agent drain requested", "agent", msg.AgentId, "mark_gone", msg.MarkGone, "max_grace_seconds", msg.GetMaxGraceSeconds())
	return connect.NewResponse(&v1.DrainAgentResponse{}), nil
}

// ReactivateAgent is REACTIVATE_AGENT.
func (s *agentService) ReactivateAgent(ctx context.Context, req *connect.Request[v1.ReactivateAgentRequest]) (*connect.Response[v1.ReactivateAgentResponse], error) {
	if err := agentIDField(req.Msg.AgentId); err != nil {
		return nil, err
	}
	c := &master.Call{Type: master.Call_REACTIVATE_AGENT, ReactivateAgent: &master.Call_ReactivateAgent{AgentID: mesos.AgentID{Value: req.Msg.AgentId}}}
	if _, err := s.mesosCall(ctx, c); err != nil {
		return nil, err
	}
	s.audit(ctx)
	return connect.NewResponse(&v1.ReactivateAgentResponse{}), nil
}

// MarkAgentGone is MARK_AGENT_GONE.
func (s *agentService) MarkAgentGone(ctx context.Context, req *connect.Request[v1.MarkAgentGoneRequest]) (*connect.Response[v1.MarkAgentGoneResponse], error) {
	if err := agentIDField(req.Msg.AgentId); err != nil {
		return nil, err
	}
	c := &master.Call{Type: master.Call_MARK_AGENT_GONE, MarkAgentGone: &master.Call_MarkAgentGone{AgentID: mesos.AgentID{Value: req.Msg.AgentId}}}
	if _, err := s.mesosCall(ctx, c); err != nil {
		return nil, err
	}
	s.audit(ctx)
	s.log.Warn("agent marked gone", "agent", req.Msg.AgentId)
	return connect.NewResponse(&v1.MarkAgentGoneResponse{}), nil
}

// machines resolves agent ids, or hostnames of agents the master no longer
// lists (their machine is DOWN), to machine ids, looking in the agents and
// the schedule.
func (s *agentService) machines(ctx context.Context, field string, names []string) ([]mesos.MachineID, maintenance.Schedule, error) {
	var sched maintenance.Schedule
	if len(names) == 0 {
		return nil, sched, invalid(field, "name at least one agent")
	}
	res, err := s.mesosCall(ctx, &master.Call{Type: master.Call_GET_AGENTS})
	if err != nil {
		return nil, sched, err
	}
	ms, err := s.mesosCall(ctx, &master.Call{Type: master.Call_GET_MAINTENANCE_SCHEDULE})
	if err != nil {
		return nil, sched, err
	}
	if ms.GetMaintenanceSchedule != nil {
		sched = ms.GetMaintenanceSchedule.Schedule
	}
	var out []mesos.MachineID
	for i, name := range names {
		found := false
		for _, a := range res.GetGetAgents().GetAgents() {
			if a.AgentInfo.GetID().GetValue() == name {
				out, found = append(out, scheduler.AgentMachine(a)), true
				break
			}
		}
		for _, w := range sched.Windows {
			for _, m := range w.MachineIDs {
				if !found && (strings.EqualFold(m.GetHostname(), name) || m.GetIP() == name) {
					out, found = append(out, m), true
				}
			}
		}
		if !found {
			return nil, sched, invalid(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("no agent %q (nor a scheduled machine of that hostname)", name))
		}
	}
	return out, sched, nil
}

// ScheduleMaintenance adds the agents' machines to the schedule in one new
// window (replacing their earlier windows).
func (s *agentService) ScheduleMaintenance(ctx context.Context, req *connect.Request[v1.ScheduleMaintenanceRequest]) (*connect.Response[v1.ScheduleMaintenanceResponse], error) {
	msg := req.Msg
	start := s.now()
	if msg.Start != "" {
		t, err := time.Parse(time.RFC3339, msg.Start)
		if err != nil {
			return nil, invalid("start", fmt.Sprintf("%q is not an RFC 3339 time", msg.Start))
		}
		start = t
	}
	if math.IsNaN(msg.DurationSeconds) || msg.DurationSeconds < 0 {
		return nil, invalid("duration_seconds", "must not be negative")
	}
	machines, sched, err := s.machines(ctx, "agent_ids", msg.AgentIds)
	if err != nil {
		return nil, err
	}
	w := maintenance.Window{MachineIDs: machines, Unavailability: mesos.Unavailability{Start: mesos.TimeInfo{Nanoseconds: start.UnixNano()}}}
	if msg.DurationSeconds > 0 {
		w.Unavailability.Duration = &mesos.DurationInfo{Nanoseconds: int64(msg.DurationSeconds * float64(time.Second))}
	}
	var windows []maintenance.Window
	for _, old := range sched.Windows {
		var keep []mesos.MachineID
		for _, m := range old.MachineIDs {
			named := false
			for _, n := range machines {
				named = named || scheduler.SameMachine(m, n)
			}
			if !named {
				keep = append(keep, m)
			}
		}
		if len(keep) > 0 {
			old.MachineIDs = keep
			windows = append(windows, old)
		}
	}
	windows = append(windows, w)
	c := &master.Call{Type: master.Call_UPDATE_MAINTENANCE_SCHEDULE, UpdateMaintenanceSchedule: &master.Call_UpdateMaintenanceSchedule{Schedule: maintenance.Schedule{Windows: windows}}}
	if _, err := s.mesosCall(ctx, c); err != nil {
		return nil, err
	}
	s.audit(ctx)
	return connect.NewResponse(&v1.ScheduleMaintenanceResponse{}), nil
}

// StartMaintenance is START_MAINTENANCE for the agents' machines.
func (s *agentService) StartMaintenance(ctx context.Context, req *connect.Request[v1.MaintenanceMachinesRequest]) (*connect.Response[v1.MaintenanceMachinesResponse], error) {
	return s.machineCall(ctx, req.Msg, func(ms []mesos.MachineID) *master.Call {
		return &master.Call{Type: master.Call_START_MAINTENANCE, StartMaintenance: &master.Call_StartMaintenance{Machines: ms}}
	})
}

// StopMaintenance is STOP_MAINTENANCE for the agents' machines.
func (s *agentService) StopMaintenance(ctx context.Context, req *connect.Request[v1.MaintenanceMachinesRequest]) (*connect.Response[v1.MaintenanceMachinesResponse], error) {
	return s.machineCall(ctx, req.Msg, func(ms []mesos.MachineID) *master.Call {
		return &master.Call{Type: master.Call_STOP_MAINTENANCE, StopMaintenance: &master.Call_StopMaintenance{Machines: ms}}
	})
}

func (s *agentService) machineCall(ctx context.Context, msg *v1.MaintenanceMachinesRequest, build func([]mesos.MachineID) *master.Call) (*connect.Response[v1.MaintenanceMachinesResponse], error) {
	machines, _, err := s.machines(ctx, "agents", msg.Agents)
	if err != nil {
		return nil, err
	}
	if _, err := s.mesosCall(ctx, build(machines)); err != nil {
		return nil, err
	}
	s.audit(ctx)
	return connect.NewResponse(&v1.MaintenanceMachinesResponse{}), nil
}
