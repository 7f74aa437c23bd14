package scheduler

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/maintenance"
	"github.com/mesos/mesos-go/api/v1/lib/master"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// AgentStates is what the master's operator API says of the agents (polled
// by the leader): their drain state and maintenance windows. A draining
// agent makes no offers, and a busy one may make none either, so offers
// alone cannot tell the scheduler about them.
type AgentStates struct {
	Agents map[string]AgentState
}

// AgentState is one agent's state as the master reports it.
type AgentState struct {
	// Drain is "DRAINING" or "DRAINED" while the agent is drained, "" else.
	Drain       string
	Deactivated bool
	// Maintenance is the unavailability of its machine's maintenance
	// window, nil when none is scheduled.
	Maintenance *mesos.Unavailability
}

func (AgentStates) isInput() {}

const noticeDeactivated = "agent deactivated"

// onAgentStates marks the instances on the agents the master reports with
// the agents' drain, maintenance or deactivation, and ends such notices
// when they no longer hold. Notices learnt from task statuses (unreachable,
// gone) are left to those.
func (p *planner) onAgentStates(in AgentStates) {
	p.st.Mem.agentStates = in.Agents
	for id, i := range p.instances() {
		agentID := instanceAgent(i)
		st, ok := in.Agents[agentID]
		if !ok {
			continue
		}
		cur := i.GetAgentNotice()
		if cur != "" && !strings.HasPrefix(cur, noticeDraining) && !strings.HasPrefix(cur, noticeMaintenance) &&
			!strings.HasPrefix(cur, noticeDeactivated) {
			continue
		}
		p.setNotice(id, p.agentStateNotice(i, agentID, st))
	}
}

func (p *planner) agentStateNotice(i *v1.Instance, agentID string, st AgentState) string {
	switch {
	case st.Drain != "":
		return p.drainNotice(i, agentID, strings.ToLower(st.Drain))
	case st.Maintenance != nil:
		return maintenanceNotice(st.Maintenance)
	case st.Deactivated:
		return fmt.Sprintf("%s: agent %s makes no offers until it is reactivated", noticeDeactivated, agentID)
	}
	return ""
}

// AgentMachine is an agent's MachineID as Mesos' maintenance matches it:
// its hostname, and the IP of its libprocess PID ("slave(1)@ip:port").
func AgentMachine(a master.Response_GetAgents_Agent) mesos.MachineID {
	m := mesos.MachineID{Hostname: &a.AgentInfo.Hostname}
	if _, addr, ok := strings.Cut(a.GetPID(), "@"); ok {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			m.IP = &host
		}
	}
	return m
}

// SameMachine compares machine ids as Mesos does: hostnames ignoring case,
// IPs exactly, an omitted field as "".
func SameMachine(a, b mesos.MachineID) bool {
	return strings.EqualFold(a.GetHostname(), b.GetHostname()) && a.GetIP() == b.GetIP()
}

// MachineWindow returns the schedule's window listing the machine, nil if
// none does.
func MachineWindow(s maintenance.Schedule, m mesos.MachineID) *maintenance.Window {
	for i := range s.Windows {
		for _, wm := range s.Windows[i].MachineIDs {
			if SameMachine(wm, m) {
				return &s.Windows[i]
			}
		}
	}
	return nil
}

// pollAgents reads the agents' states from the master's operator API.
func pollAgents(ctx context.Context, op *OperatorClient) (AgentStates, error) {
	res, err := op.getAgentsLean(ctx)
	if err != nil {
		return AgentStates{}, err
	}
	var sched maintenance.Schedule
	if ms, err := op.Call(ctx, &master.Call{Type: master.Call_GET_MAINTENANCE_SCHEDULE}); err == nil && ms.GetMaintenanceSchedule != nil {
		sched = ms.GetMaintenanceSchedule.Schedule
	}
	out := AgentStates{Agents: map[string]AgentState{}}
	for _, a := range res.GetGetAgents().GetAgents() {
		st := AgentState{Deactivated: a.GetDeactivated()}
		if a.DrainInfo != nil {
			st.Drain = a.DrainInfo.State.String()
		}
		if w := MachineWindow(sched, AgentMachine(a)); w != nil {
			u := w.Unavailability
			st.Maintenance = &u
		}
		out.Agents[a.AgentInfo.GetID().GetValue()] = st
	}
	return out, nil
}

// watchAgents polls the master every interval and sends what it reports,
// until ctx ends. A master that cannot answer (an older Mesos, an operator
// API the framework's principal may not use) is logged once and retried.
// The first poll waits until reconciled is closed (the reconciliation sent
// on subscribe ended), at most one interval: GET_AGENTS, with every
// agent's resources, is the master's heaviest answer, and at 100,000
// tasks building it took the master's CPU from the 100,000 answers that a
// new leader waits for (2.4 of mesos-local's 5.7 s of CPU in the 10 s
// after a failover).
func (s *Scheduler) watchAgents(ctx context.Context, out chan<- AgentStates, reconciled <-chan struct{}) {
	if s.cfg.AgentPollInterval < 0 {
		return
	}
	select {
	case <-reconciled:
	case <-time.After(s.cfg.AgentPollInterval):
	case <-ctx.Done():
		return
	}
	op, err := NewOperatorClient(s.cfg)
	if err != nil {
		s.log.Warn("agent states: no operator client", "err", err)
		return
	}
	warned := false
	for {
		pctx, cancel := context.WithTimeout(ctx, operatorTimeout)
		start := time.Now()
		st, err := pollAgents(pctx, op)
		took := time.Since(start)
		cancel()
		if err != nil && ctx.Err() == nil && !warned {
			s.log.Warn("agent states: the master's operator API did not answer; draining agents are known only from their tasks' updates", "err", err)
			warned = true
		}
		if err == nil {
			warned = false
			select {
			case out <- st:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(agentPollWait(s.cfg.AgentPollInterval, took)):
		}
	}
}

// agentPollCost is the largest share of the time the agent poll may take
// (1/agentPollCost), whether it succeeds or not.
const agentPollCost = 20

// agentPollWait is the wait before the next agent poll: the configured
// interval, or agentPollCost times what the last poll took when that is
// longer. GET_AGENTS carries every agent's resources: with 100,000
// resident instances it is hundreds of MB that the master builds under
// its lock and the leader reads and decodes; polled every 10 s it took
// most of both (and, over the response limit, never even succeeded).
func agentPollWait(interval, took time.Duration) time.Duration {
	return max(interval, agentPollCost*took)
}
