package mesoslocal

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/maintenance"
	"github.com/mesos/mesos-go/api/v1/lib/master"
)

// This file holds the operator calls that take agents away as Mesos 1.11
// does (docs/maintenance.md, src/master/http.cpp _drainAgent,
// _reactivateAgent, _startMaintenance, master.cpp
// checkAndTransitionDrainingAgent): DRAIN_AGENT, DEACTIVATE_AGENT,
// REACTIVATE_AGENT and the maintenance schedule with its machine modes.

// agentCall handles the operator calls that change agents or the
// maintenance schedule (c.mu held). It returns the HTTP status, an error
// message, and task runners to wait for once the lock is released.
func (c *Cluster) agentCall(call *master.Call) (int, string, []taskRunner) {
	switch call.Type {
	case master.Call_MARK_AGENT_GONE:
		if call.MarkAgentGone == nil {
			return http.StatusBadRequest, "Expecting 'mark_agent_gone' to be present", nil
		}
		return c.markAgentGone(call.MarkAgentGone.AgentID.Value)
	case master.Call_DRAIN_AGENT:
		if call.DrainAgent == nil {
			return http.StatusBadRequest, "Expecting 'drain_agent' to be present", nil
		}
		code, msg := c.drainAgent(call.DrainAgent)
		return code, msg, nil
	case master.Call_DEACTIVATE_AGENT:
		if call.DeactivateAgent == nil {
			return http.StatusBadRequest, "Expecting 'deactivate_agent' to be present", nil
		}
		a := c.knownAgent(call.DeactivateAgent.AgentID.Value)
		if a == nil {
			return http.StatusBadRequest, "Unknown agent " + strconv.Quote(call.DeactivateAgent.AgentID.Value), nil
		}
		c.deactivate(a)
		c.checkpointAgent(a)
		return http.StatusOK, "", nil
	case master.Call_REACTIVATE_AGENT:
		if call.ReactivateAgent == nil {
			return http.StatusBadRequest, "Expecting 'reactivate_agent' to be present", nil
		}
		code, msg := c.reactivateAgent(call.ReactivateAgent.AgentID.Value)
		return code, msg, nil
	case master.Call_UPDATE_MAINTENANCE_SCHEDULE:
		if call.UpdateMaintenanceSchedule == nil {
			return http.StatusBadRequest, "Expecting 'update_maintenance_schedule' to be present", nil
		}
		code, msg := c.updateSchedule(call.UpdateMaintenanceSchedule.Schedule)
		return code, msg, nil
	case master.Call_START_MAINTENANCE:
		if call.StartMaintenance == nil {
			return http.StatusBadRequest, "Expecting 'start_maintenance' to be present", nil
		}
		return c.startMaintenance(call.StartMaintenance.Machines)
	case master.Call_STOP_MAINTENANCE:
		if call.StopMaintenance == nil {
			return http.StatusBadRequest, "Expecting 'stop_maintenance' to be present", nil
		}
		code, msg := c.stopMaintenance(call.StopMaintenance.Machines)
		return code, msg, nil
	}
	return http.StatusNotImplemented, "not an agent call: " + call.Type.String(), nil
}

// knownAgent is an agent the master knows (registered or unreachable), nil
// for unknown and gone ones.
func (c *Cluster) knownAgent(id string) *agent {
	a := c.agents[id]
	if a == nil || a.gone {
		return nil
	}
	return a
}

// deactivate stops offers from an agent and rescinds the outstanding ones.
func (c *Cluster) deactivate(a *agent) {
	a.deactivated = true
	for o := range a.offers {
		c.rescindOffer(o)
	}
	c.rescindInverseOffers(func(io *inverseOffer) bool { return io.agent == a }, true)
}

// drainAgent is DRAIN_AGENT: the agent is deactivated and its tasks are
// killed, each with min(its kill policy's grace, max_grace_period).
func (c *Cluster) drainAgent(d *master.Call_DrainAgent) (int, string) {
	a := c.knownAgent(d.AgentID.Value)
	if a == nil || a.down {
		return http.StatusBadRequest, "Unknown agent " + strconv.Quote(d.AgentID.Value)
	}
	if c.scheduled(a) {
		return http.StatusBadRequest, "Agent " + a.id + " is in the maintenance schedule"
	}
	cfg := mesos.DrainConfig{MarkGone: proto.Bool(d.GetMarkGone())}
	maxGrace := time.Duration(-1)
	if g := d.MaxGracePeriod; g != nil {
		if g.Seconds < 0 || g.Nanos < 0 {
			return http.StatusBadRequest, "'max_grace_period' must not be negative"
		}
		maxGrace = time.Duration(g.Seconds)*time.Second + time.Duration(g.Nanos)
		cfg.MaxGracePeriod = &mesos.DurationInfo{Nanoseconds: int64(maxGrace)}
	}
	a.drain = &mesos.DrainInfo{State: mesos.DrainState_DRAINING, Config: cfg}
	c.deactivate(a)
	c.log.Info("agent draining", "agent_id", a.id, "max_grace_period", cfg.MaxGracePeriod.GetNanoseconds(), "mark_gone", d.GetMarkGone())
	tasks := make([]*task, 0, len(a.tasks))
	for t := range a.tasks {
		tasks = append(tasks, t)
	}
	sort.Slice(tasks, func(i, j int) bool { return tasks[i].info.TaskID.Value < tasks[j].info.TaskID.Value })
	for _, t := range tasks {
		grace := c.cfg.KillGracePeriod
		if kp := t.info.KillPolicy; kp != nil && kp.GracePeriod != nil {
			grace = time.Duration(kp.GracePeriod.Nanoseconds)
		}
		if maxGrace >= 0 && grace > maxGrace {
			grace = maxGrace
		}
		if t.group != nil {
			c.killGroup(t.group, grace, "agent "+a.id+" is draining")
			continue
		}
		c.killTask(t, grace, false)
	}
	c.checkpointAgent(a)
	c.checkDrained()
	return http.StatusOK, ""
}

// drainStatus rewrites a status update of a task on a draining agent as
// the Mesos agent does: TASK_KILLING and TASK_KILLED carry
// REASON_AGENT_DRAINING, and with mark_gone a PARTITION_AWARE framework
// sees TASK_GONE_BY_OPERATOR instead of TASK_KILLED.
func (c *Cluster) drainStatus(t *task, st *mesos.TaskStatus) {
	d := t.agent.drain
	if d == nil || d.State != mesos.DrainState_DRAINING {
		return
	}
	switch st.GetState() {
	case mesos.TASK_KILLING, mesos.TASK_KILLED:
		st.Reason = mesos.REASON_AGENT_DRAINING.Enum()
		if st.GetState() == mesos.TASK_KILLED && d.Config.GetMarkGone() {
			if fw := c.frameworks[t.fwID]; fw != nil && fw.partitionAware {
				st.State = mesos.TASK_GONE_BY_OPERATOR.Enum()
			}
		}
	}
}

// checkDrained moves each draining agent that the master tracks no task
// on any more (a task leaves once its terminal update is acknowledged) to
// DRAINED, or, with mark_gone, marks it gone.
func (c *Cluster) checkDrained() {
	var draining []*agent
	for _, a := range c.agentList {
		// An unreachable (stopped) agent stays DRAINING until it is back
		// and its tasks' ends are acknowledged.
		if a.drain != nil && a.drain.State == mesos.DrainState_DRAINING && !a.gone && a.active {
			draining = append(draining, a)
		}
	}
	if len(draining) == 0 {
		return
	}
	busy := map[*agent]bool{}
	for _, fw := range c.frameworks {
		for _, t := range fw.tasks {
			busy[t.agent] = true
		}
	}
	for _, a := range draining {
		if busy[a] || len(a.tasks) > 0 {
			continue
		}
		if a.drain.Config.GetMarkGone() {
			c.log.Info("agent drained: marking it gone", "agent_id", a.id)
			// No live task is left, so there is no runner to wait for.
			c.takeDownAgent(a, downGone)
			continue
		}
		a.drain.State = mesos.DrainState_DRAINED
		c.log.Info("agent drained", "agent_id", a.id)
		c.checkpointAgent(a)
	}
}

// reactivateAgent is REACTIVATE_AGENT: offers resume and the drain is
// forgotten; an agent still DRAINING cannot be reactivated.
func (c *Cluster) reactivateAgent(id string) (int, string) {
	a := c.knownAgent(id)
	switch {
	case a == nil:
		return http.StatusBadRequest, "Unknown agent " + strconv.Quote(id)
	case !a.deactivated:
		return http.StatusBadRequest, "Agent is not deactivated"
	case a.drain != nil && a.drain.State == mesos.DrainState_DRAINING:
		return http.StatusBadRequest, "Agent is still in the DRAINING state"
	}
	a.deactivated = false
	a.drain = nil
	c.checkpointAgent(a)
	c.markDirty(a)
	c.kickAllocation()
	c.log.Info("agent reactivated", "agent_id", a.id)
	return http.StatusOK, ""
}

// --- maintenance ---

// machineOf is the agent's MachineID: its hostname and its IP (the
// hostname when that is an address, else the master's listen address).
func (c *Cluster) machineOf(a *agent) mesos.MachineID {
	ip := a.hostname
	if net.ParseIP(ip) == nil {
		ip = "127.0.0.1"
		if host, _, err := net.SplitHostPort(c.cfg.Listen); err == nil && net.ParseIP(host) != nil && !net.ParseIP(host).IsUnspecified() {
			ip = host
		}
	}
	return mesos.MachineID{Hostname: proto.String(a.hostname), IP: proto.String(ip)}
}

// machineKey identifies a machine: hostname ignores case, and an omitted
// field counts as "" (Mesos compares both).
func machineKey(m mesos.MachineID) string {
	return strings.ToLower(m.GetHostname()) + "/" + m.GetIP()
}

func (c *Cluster) maintSchedule() maintenance.Schedule {
	var s maintenance.Schedule
	if c.schedule != nil {
		s = *proto.Clone(c.schedule).(*maintenance.Schedule)
	}
	return s
}

// window returns the maintenance window that lists the agent's machine.
func (c *Cluster) window(a *agent) *maintenance.Window {
	if c.schedule == nil {
		return nil
	}
	key := machineKey(c.machineOf(a))
	for i := range c.schedule.Windows {
		for _, m := range c.schedule.Windows[i].MachineIDs {
			if machineKey(m) == key {
				return &c.schedule.Windows[i]
			}
		}
	}
	return nil
}

func (c *Cluster) scheduled(a *agent) bool { return c.window(a) != nil }

// machineDown is true when the agent's machine is DOWN.
func (c *Cluster) machineDown(a *agent) bool { return c.down[machineKey(c.machineOf(a))] }

// unavailability is what offers from the agent carry while its machine is
// scheduled for maintenance (DRAINING), nil otherwise.
func (c *Cluster) unavailability(a *agent) *mesos.Unavailability {
	w := c.window(a)
	if w == nil {
		return nil
	}
	u := w.Unavailability
	return &u
}

// updateSchedule is UPDATE_MAINTENANCE_SCHEDULE: it replaces the schedule
// after validating it; outstanding offers of newly scheduled or
// unscheduled machines are rescinded so that they are offered again with
// (or without) their unavailability.
func (c *Cluster) updateSchedule(s maintenance.Schedule) (int, string) {
	seen := map[string]bool{}
	for i, w := range s.Windows {
		if len(w.MachineIDs) == 0 {
			return http.StatusBadRequest, fmt.Sprintf("windows[%d]: List of machines in the maintenance window is empty", i)
		}
		if w.Unavailability.Duration != nil && w.Unavailability.Duration.Nanoseconds < 0 {
			return http.StatusBadRequest, fmt.Sprintf("windows[%d].unavailability.duration: must not be negative", i)
		}
		for j, m := range w.MachineIDs {
			if m.GetHostname() == "" && m.GetIP() == "" {
				return http.StatusBadRequest, fmt.Sprintf("windows[%d].machine_ids[%d]: Both 'hostname' and 'ip' for a machine are empty", i, j)
			}
			if m.IP != nil && net.ParseIP(m.GetIP()) == nil {
				return http.StatusBadRequest, fmt.Sprintf("windows[%d].machine_ids[%d].ip: %q is not an IP address", i, j, m.GetIP())
			}
			k := machineKey(m)
			if seen[k] {
				return http.StatusBadRequest, fmt.Sprintf("windows[%d].machine_ids[%d]: Machine '%s' appears more than once in the schedule", i, j, k)
			}
			seen[k] = true
		}
	}
	for k := range c.down {
		if !seen[k] {
			return http.StatusBadRequest, "Machine '" + k + "' is DOWN and must stay in the schedule"
		}
	}
	before := map[*agent]bool{}
	for _, a := range c.agentList {
		before[a] = c.scheduled(a)
	}
	if len(s.Windows) == 0 {
		c.schedule = nil
	} else {
		c.schedule = proto.Clone(&s).(*maintenance.Schedule)
	}
	if err := c.saveMaintenance(); err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	c.rescindInverseOffers(func(io *inverseOffer) bool { return !c.scheduled(io.agent) }, true)
	for _, a := range c.agentList {
		if before[a] != c.scheduled(a) || c.scheduled(a) {
			for o := range a.offers {
				c.rescindOffer(o)
			}
			c.markDirty(a)
		}
	}
	c.kickAllocation()
	return http.StatusOK, ""
}

// startMaintenance is START_MAINTENANCE: each machine must be scheduled
// and DRAINING; its agents are removed (their tasks become TASK_LOST) and
// cannot come back until the machine is UP again.
func (c *Cluster) startMaintenance(ms []mesos.MachineID) (int, string, []taskRunner) {
	if len(ms) == 0 {
		return http.StatusBadRequest, "List of machines is empty", nil
	}
	scheduled := map[string]bool{}
	if c.schedule != nil {
		for _, w := range c.schedule.Windows {
			for _, m := range w.MachineIDs {
				scheduled[machineKey(m)] = true
			}
		}
	}
	for i, m := range ms {
		k := machineKey(m)
		if !scheduled[k] {
			return http.StatusBadRequest, fmt.Sprintf("machines[%d]: Machine '%s' is not part of a maintenance schedule", i, k), nil
		}
		if c.down[k] {
			return http.StatusBadRequest, fmt.Sprintf("machines[%d]: Machine '%s' is not in DRAINING mode and cannot be brought down", i, k), nil
		}
	}
	var runners []taskRunner
	for _, m := range ms {
		c.down[machineKey(m)] = true
	}
	if err := c.saveMaintenance(); err != nil {
		return http.StatusInternalServerError, err.Error(), nil
	}
	for _, a := range c.agentList {
		if !a.gone && !a.down && c.machineDown(a) {
			runners = append(runners, c.takeDownAgent(a, downMaintenance)...)
		}
	}
	return http.StatusOK, "", runners
}

// stopMaintenance is STOP_MAINTENANCE: the machines are UP again and
// leave the schedule; their agents register again.
func (c *Cluster) stopMaintenance(ms []mesos.MachineID) (int, string) {
	if len(ms) == 0 {
		return http.StatusBadRequest, "List of machines is empty"
	}
	for i, m := range ms {
		if !c.down[machineKey(m)] {
			return http.StatusBadRequest, fmt.Sprintf("machines[%d]: Machine '%s' is not in DOWN mode and cannot be brought up", i, machineKey(m))
		}
	}
	up := map[string]bool{}
	for _, m := range ms {
		k := machineKey(m)
		up[k] = true
		delete(c.down, k)
	}
	if c.schedule != nil {
		var windows []maintenance.Window
		for _, w := range c.schedule.Windows {
			var keep []mesos.MachineID
			for _, m := range w.MachineIDs {
				if !up[machineKey(m)] {
					keep = append(keep, m)
				}
			}
			if len(keep) > 0 {
				w.MachineIDs = keep
				windows = append(windows, w)
			}
		}
		c.schedule.Windows = windows
		if len(windows) == 0 {
			c.schedule = nil
		}
	}
	if err := c.saveMaintenance(); err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	for _, a := range c.agentList {
		if a.down && up[machineKey(c.machineOf(a))] {
			a.down = false
			c.bringUpAgent(a)
		}
	}
	return http.StatusOK, ""
}

// maintStatus is GET_MAINTENANCE_STATUS: the scheduled machines not yet
// DOWN are draining, with the frameworks' answers to their inverse offers.
func (c *Cluster) maintStatus() maintenance.ClusterStatus {
	var st maintenance.ClusterStatus
	if c.schedule != nil {
		for _, w := range c.schedule.Windows {
			for _, m := range w.MachineIDs {
				if !c.down[machineKey(m)] {
					st.DrainingMachines = append(st.DrainingMachines, maintenance.ClusterStatus_DrainingMachine{ID: m, Statuses: c.inverseStatuses(m)})
				}
			}
		}
	}
	keys := make([]string, 0, len(c.down))
	for k := range c.down {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		host, ip, _ := strings.Cut(k, "/")
		m := mesos.MachineID{}
		if host != "" {
			m.Hostname = proto.String(host)
		}
		if ip != "" {
			m.IP = proto.String(ip)
		}
		st.DownMachines = append(st.DownMachines, m)
	}
	return st
}

// maintenanceFile keeps the schedule and the DOWN machines across
// restarts, as the Mesos registry does.
type maintenanceFile struct {
	Schedule *maintenance.Schedule `json:"schedule,omitempty"`
	Down     []string              `json:"down,omitempty"`
}

func (c *Cluster) maintenancePath() string { return filepath.Join(c.cfg.WorkDir, "maintenance.json") }

func (c *Cluster) saveMaintenance() error {
	if c.cfg.WorkDir == "" {
		return nil
	}
	f := maintenanceFile{Schedule: c.schedule}
	for k := range c.down {
		f.Down = append(f.Down, k)
	}
	sort.Strings(f.Down)
	b, err := json.MarshalIndent(&f, "", " ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(c.maintenancePath(), b, !c.cfg.Simulate); err != nil {
		return fmt.Errorf("save maintenance schedule: %w", err)
	}
	return nil
}

func (c *Cluster) loadMaintenance() error {
	c.down = map[string]bool{}
	if c.cfg.WorkDir == "" {
		return nil
	}
	b, err := os.ReadFile(c.maintenancePath())
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var f maintenanceFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s: %w", c.maintenancePath(), err)
	}
	c.schedule = f.Schedule
	for _, k := range f.Down {
		c.down[k] = true
	}
	return nil
}
