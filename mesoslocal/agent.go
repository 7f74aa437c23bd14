package mesoslocal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// agentCheckpoint is what an agent keeps on disk (agent.json): enough for a
// restarted mesos-local to bring back the same agent with its reservations,
// volumes, and the tasks it has to report on.
type agentCheckpoint struct {
	ID         string            `json:"id"`
	Index      int               `json:"index"`
	Hostname   string            `json:"hostname"`
	Gone       bool              `json:"gone,omitempty"`
	Attributes []mesos.Attribute `json:"attributes,omitempty"`
	// Deactivated and Drain survive restarts as Mesos keeps them in its
	// registry.
	Deactivated bool                  `json:"deactivated,omitempty"`
	Drain       *mesos.DrainInfo      `json:"drain,omitempty"`
	Resources   []mesos.Resource      `json:"resources"`
	Frameworks  []mesos.FrameworkInfo `json:"frameworks,omitempty"`
	Tasks       []taskCheckpoint      `json:"tasks,omitempty"`
	// APIPort is the port of the agent's own listener (agentapi.go).
	APIPort int32 `json:"api_port,omitempty"`
}

type taskCheckpoint struct {
	FrameworkID string             `json:"framework_id"`
	Role        string             `json:"role"`
	ExecutorID  string             `json:"executor_id"`
	Info        mesos.TaskInfo     `json:"info"`
	State       string             `json:"state"`
	Pending     []mesos.TaskStatus `json:"pending,omitempty"`
	PID         int                `json:"pid,omitempty"`
	PIDStart    string             `json:"pid_start,omitempty"`
	Sandbox     string             `json:"sandbox,omitempty"`
	ContainerID string             `json:"container_id,omitempty"`
}

func (c *Cluster) agentsDir() string { return filepath.Join(c.cfg.WorkDir, "agents") }

func (c *Cluster) agentDir(id string) string { return filepath.Join(c.agentsDir(), id) }

// volumePath is <work-dir>/agents/<agent>/volumes/roles/<role>/<persistence id>,
// the layout of Mesos' paths::getPersistentVolumePath.
func (c *Cluster) volumePath(a *agent, v *mesos.Resource) string {
	role := strings.ReplaceAll(reservationRole(v), "/", " ")
	return filepath.Join(a.dir, "volumes", "roles", role, v.GetDisk().GetPersistence().GetID())
}

// sandboxPath follows Mesos' frameworks/<fw>/executors/<ex>/runs/<container> layout.
func (c *Cluster) sandboxPath(t *task) string {
	return filepath.Join(t.agent.dir, "frameworks", t.fwID, "executors", t.executorID, "runs", newUUIDString())
}

func (c *Cluster) newAgentRecord(id string, index int, total rset) *agent {
	a := &agent{
		id:       id,
		index:    index,
		listPos:  len(c.agentList),
		hostname: c.cfg.Hostname,
		res:      newLedger(total),
		active:   true,
		regTime:  time.Now(),
		tasks:    map[*task]struct{}{},
		groups:   map[string]*execGroup{},
		offers:   map[*offer]struct{}{},
		fwInfos:  map[string]mesos.FrameworkInfo{},
	}
	if c.cfg.WorkDir != "" {
		a.dir = c.agentDir(id)
	}
	c.agents[id] = a
	c.agentList = append(c.agentList, a)
	c.markDirty(a)
	return a
}

// recoverAgents loads checkpointed agents and creates new ones up to
// Config.Agents. Tasks whose processes still run are adopted (recover.go);
// the others that were live when mesos-local stopped get a terminal update.
func (c *Cluster) recoverAgents() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.loadMaintenance(); err != nil {
		return err
	}
	var cps []agentCheckpoint
	if c.cfg.WorkDir != "" {
		if err := os.MkdirAll(c.agentsDir(), 0o755); err != nil {
			return err
		}
		entries, err := os.ReadDir(c.agentsDir())
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			path := filepath.Join(c.agentsDir(), e.Name(), "agent.json")
			b, err := os.ReadFile(path)
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				return err
			}
			var cp agentCheckpoint
			if err := json.Unmarshal(b, &cp); err != nil {
				return fmt.Errorf("agent checkpoint %s: %w", path, err)
			}
			if cp.ID != e.Name() {
				return fmt.Errorf("agent checkpoint %s names agent %q", path, cp.ID)
			}
			cps = append(cps, cp)
		}
	}
	sort.Slice(cps, func(i, j int) bool { return cps[i].Index < cps[j].Index })
	next := 0
	live := 0
	for _, cp := range cps {
		total, err := upgradeResources(cp.Resources)
		if err != nil {
			return fmt.Errorf("agent %s: %w", cp.ID, err)
		}
		a := c.newAgentRecord(cp.ID, cp.Index, total)
		a.hostname = cp.Hostname
		a.gone = cp.Gone
		a.active = !cp.Gone
		a.attrs = cp.Attributes
		if attrs, ok := c.cfg.attributesFor(cp.Index); ok {
			a.attrs = attrs
		}
		a.deactivated = cp.Deactivated
		a.drain = cp.Drain
		a.apiPort = cp.APIPort
		if c.machineDown(a) {
			a.down, a.active = true, false
		}
		next = max(next, cp.Index+1)
		if !a.gone {
			live++
		}
		for _, fi := range cp.Frameworks {
			if fi.ID != nil {
				a.fwInfos[fi.ID.Value] = fi
			}
		}
		c.recoverTasks(a, cp.Tasks)
		c.log.Info("agent recovered", "agent_id", a.id, "resources", a.res.totalSet().String(), "gone", a.gone, "tasks", len(cp.Tasks))
	}
	for live < c.cfg.Agents {
		total, err := c.agentResources(next)
		if err != nil {
			return fmt.Errorf("agent resources: %w", err)
		}
		a := c.newAgentRecord(fmt.Sprintf("%s-S%d", c.masterID, next), next, total)
		a.hostname = c.cfg.hostnameFor(next)
		a.attrs, _ = c.cfg.attributesFor(next)
		next++
		live++
		c.checkpointAgent(a)
	}
	c.nextAgentID = next
	return nil
}

func (c *Cluster) recoverTasks(a *agent, tcs []taskCheckpoint) {
	for _, tc := range tcs {
		fi, ok := a.fwInfos[tc.FrameworkID]
		state := mesos.TaskState(mesos.TaskState_value[tc.State])
		pid, start := taskProcess(&tc)
		adopt := pid > 0 && ok && c.adoptable(&tc, fi, state)
		if pid > 0 && !adopt {
			// A process nobody can take over: kill its group.
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		if !ok {
			continue
		}
		fw := c.frameworks[tc.FrameworkID]
		if fw == nil {
			fw = c.newFramework(tc.FrameworkID)
			fw.setInfo(fi)
			fw.recovered = true
		}
		t := &task{info: tc.Info, fwID: tc.FrameworkID, agent: a, executorID: tc.ExecutorID, role: tc.Role,
			state: state, sandbox: tc.Sandbox, user: fi.User, containerID: tc.ContainerID}
		t.res, _ = upgradeResources(tc.Info.Resources)
		if len(tc.Pending) > 0 {
			t.status = tc.Pending[len(tc.Pending)-1]
		}
		t.pending = tc.Pending
		fw.tasks[t.info.TaskID.Value] = t
		if adopt {
			c.adoptTask(t, pid, start)
			if len(t.pending) > 0 {
				c.retrying[t] = struct{}{}
			}
			continue
		}
		if !isTerminal(state) {
			c.agentUpdate(t, mesos.TaskStatus{
				State:   fw.lostState(mesos.TASK_GONE).Enum(),
				Source:  mesos.SOURCE_AGENT.Enum(),
				Reason:  mesos.REASON_EXECUTOR_TERMINATED.Enum(),
				Message: proto.String("Abnormal executor termination: mesos-local restarted and the task's process did not survive it"),
			})
		} else if len(t.pending) > 0 {
			c.retrying[t] = struct{}{}
		}
	}
}

// checkpointAgent writes the agent's checkpoint (no-op without a work dir).
func (c *Cluster) checkpointAgent(a *agent) {
	if c.cfg.WorkDir == "" || a.dir == "" {
		return
	}
	cp := agentCheckpoint{ID: a.id, Index: a.index, Hostname: a.hostname, Gone: a.gone, Resources: render(a.res.totalSet(), formatPostRefinement, ""),
		Attributes: a.attrs, Deactivated: a.deactivated, Drain: a.drain, APIPort: a.apiPort}
	fids := make([]string, 0, len(a.fwInfos))
	for id := range a.fwInfos {
		fids = append(fids, id)
	}
	sort.Strings(fids)
	for _, id := range fids {
		cp.Frameworks = append(cp.Frameworks, a.fwInfos[id])
	}
	if !c.cfg.Simulate {
		for _, id := range fids {
			fw := c.frameworks[id]
			if fw == nil || !fw.checkpoint() {
				continue
			}
			for _, t := range fw.tasks {
				if t.agent != a || (!t.alive && len(t.pending) == 0) {
					continue
				}
				cp.Tasks = append(cp.Tasks, taskCheckpoint{FrameworkID: id, Role: t.role, ExecutorID: t.executorID,
					Info: t.info, State: t.state.String(), Pending: t.pending, PID: t.pid, PIDStart: t.pidStart, Sandbox: t.sandbox,
					ContainerID: t.containerID})
			}
		}
		sort.Slice(cp.Tasks, func(i, j int) bool { return cp.Tasks[i].Info.TaskID.Value < cp.Tasks[j].Info.TaskID.Value })
	}
	b, err := json.MarshalIndent(&cp, "", " ")
	if err == nil {
		err = writeFileAtomic(filepath.Join(a.dir, "agent.json"), b, !c.cfg.Simulate)
	}
	if err != nil {
		c.log.Error("agent checkpoint failed", "agent_id", a.id, "err", err)
	}
}

// checkpointTasks re-checkpoints after a task change (real agents only).
func (c *Cluster) checkpointTasks(a *agent) {
	if !c.cfg.Simulate {
		c.checkpointAgent(a)
	}
}

func writeFileAtomic(path string, b []byte, sync bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// StopAgent simulates the loss of an agent (its host crashed): its task
// processes are killed, offers on it are rescinded, frameworks get FAILURE
// and each live task becomes TASK_UNREACHABLE (PARTITION_AWARE frameworks)
// or TASK_LOST. Volumes and reservations stay on disk for StartAgent.
func (c *Cluster) StopAgent(id string) error {
	c.mu.Lock()
	a := c.agents[id]
	switch {
	case c.closed:
		c.mu.Unlock()
		return fmt.Errorf("mesos-local is closed")
	case a == nil:
		c.mu.Unlock()
		return fmt.Errorf("stop agent: unknown agent %q", id)
	case a.gone:
		c.mu.Unlock()
		return fmt.Errorf("stop agent: agent %s was marked gone", id)
	case !a.active:
		c.mu.Unlock()
		return fmt.Errorf("stop agent: agent %s is already stopped", id)
	}
	runners := c.takeDownAgent(a, downUnreachable)
	c.mu.Unlock()
	for _, r := range runners {
		r.wait()
	}
	return nil
}

// downKind is why an agent goes away.
type downKind int

const (
	downUnreachable downKind = iota // stopped: its tasks are unreachable
	downGone                        // marked gone: removed for good
	downMaintenance                 // its machine is DOWN for maintenance
)

// takeDownAgent deactivates an agent for the given reason.
// Called with c.mu held; returns the runners to wait for.
func (c *Cluster) takeDownAgent(a *agent, kind downKind) []taskRunner {
	gone := kind == downGone
	// removed: the master forgets the agent's tasks (gone, or DOWN, where
	// Mesos removes the agent), instead of keeping them as unreachable.
	removed := kind != downUnreachable
	a.active = false
	a.gone = a.gone || gone
	a.down = kind == downMaintenance
	for o := range a.offers {
		c.rescindOffer(o)
	}
	c.rescindInverseOffers(func(io *inverseOffer) bool { return io.agent == a }, true)
	var runners []taskRunner
	for t := range a.tasks {
		if t.runner != nil {
			t.runner.abandon()
			runners = append(runners, t.runner)
		}
	}
	now := time.Now()
	ids := make([]string, 0, len(c.frameworks))
	for id := range c.frameworks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fw := c.frameworks[id]
		for tid, t := range fw.tasks {
			if t.agent != a {
				continue
			}
			wasAlive := t.alive
			if t.alive {
				c.releaseTask(t)
			}
			t.runner = nil
			if !wasAlive && !removed {
				continue // terminal, update pending: resent when the agent returns
			}
			delete(fw.tasks, tid)
			delete(c.retrying, t)
			t.pending = nil
			state, reason, msg := fw.lostState(mesos.TASK_UNREACHABLE), mesos.REASON_AGENT_REMOVED, "Agent "+a.id+" is unreachable (stopped)"
			switch kind {
			case downGone:
				state, reason, msg = fw.lostState(mesos.TASK_GONE_BY_OPERATOR), mesos.REASON_AGENT_REMOVED_BY_OPERATOR, "Agent "+a.id+" was marked gone by the operator"
			case downMaintenance:
				// Mesos sends TASK_LOST even to PARTITION_AWARE frameworks here.
				state, reason, msg = mesos.TASK_LOST, mesos.REASON_AGENT_REMOVED, "Agent "+a.id+" was removed: its machine is down for maintenance"
			}
			c.countTaskState(t.state, state)
			t.state = state
			st := mesos.TaskStatus{TaskID: t.info.TaskID, State: state.Enum(), Reason: reason.Enum(), Message: proto.String(msg),
				AgentID: &mesos.AgentID{Value: a.id}, ExecutorID: &mesos.ExecutorID{Value: t.executorID}}
			if kind == downUnreachable {
				st.UnreachableTime = timeInfo(now)
			}
			t.status = st
			t.statuses = append(t.statuses, st)
			if wasAlive {
				c.masterUpdate(fw, st)
			}
			if removed {
				fw.addCompleted(t)
			} else {
				fw.lost[tid] = t
			}
		}
		if removed {
			for tid, t := range fw.lost {
				if t.agent == a {
					delete(fw.lost, tid)
					fw.addCompleted(t)
				}
			}
		}
		c.sendEvent(fw, &scheduler.Event{Type: scheduler.Event_FAILURE, Failure: &scheduler.Event_Failure{AgentID: &mesos.AgentID{Value: a.id}}})
	}
	for _, g := range a.groups {
		a.res.release(g.res...)
	}
	a.groups = map[string]*execGroup{}
	c.checkpointAgent(a)
	c.log.Info("agent stopped", "agent_id", a.id, "gone", gone, "down_for_maintenance", a.down)
	c.operatorEvent(func() *master.Event { return agentRemovedEvent(a) })
	return runners
}

// StartAgent brings a stopped agent back. Its tasks' processes did not
// survive: checkpointing frameworks get TASK_GONE (PARTITION_AWARE) or
// TASK_LOST from the agent; offers resume.
func (c *Cluster) StartAgent(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.agents[id]
	switch {
	case c.closed:
		return fmt.Errorf("mesos-local is closed")
	case a == nil:
		return fmt.Errorf("start agent: unknown agent %q", id)
	case a.gone:
		return fmt.Errorf("start agent: agent %s was marked gone and cannot come back", id)
	case a.active:
		return fmt.Errorf("start agent: agent %s is already running", id)
	case a.down:
		return fmt.Errorf("start agent: the machine of agent %s is down for maintenance (STOP_MAINTENANCE brings it up)", id)
	}
	c.bringUpAgent(a)
	return nil
}

// bringUpAgent makes a stopped agent register again (c.mu held).
func (c *Cluster) bringUpAgent(a *agent) {
	a.active = true
	a.regTime = time.Now()
	ids := make([]string, 0, len(c.frameworks))
	for id := range c.frameworks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, fid := range ids {
		fw := c.frameworks[fid]
		for tid, t := range fw.lost {
			if t.agent != a {
				continue
			}
			delete(fw.lost, tid)
			if !fw.checkpoint() {
				fw.addCompleted(t)
				continue
			}
			fw.tasks[tid] = t
			c.agentUpdate(t, mesos.TaskStatus{
				State:   fw.lostState(mesos.TASK_GONE).Enum(),
				Source:  mesos.SOURCE_AGENT.Enum(),
				Reason:  mesos.REASON_EXECUTOR_TERMINATED.Enum(),
				Message: proto.String("Abnormal executor termination: agent " + a.id + " restarted and the task's process did not survive it"),
			})
		}
		for _, t := range fw.tasks {
			if t.agent == a && len(t.pending) > 0 {
				t.retryDelay = 0
				c.forwardUpdate(t)
			}
		}
	}
	c.checkpointAgent(a)
	c.markDirty(a)
	c.log.Info("agent started", "agent_id", a.id)
	c.operatorEvent(func() *master.Event { return agentAddedEvent(c, a) })
	c.kickAllocation()
}

// markAgentGone removes an agent for good (operator MARK_AGENT_GONE).
func (c *Cluster) markAgentGone(id string) (int, string, []taskRunner) {
	a := c.agents[id]
	if a == nil {
		// Mesos answers 404 for an agent it neither has registered, nor
		// recovered, nor holds as unreachable (http.cpp _markAgentGone).
		return http.StatusNotFound, "Agent " + strconv.Quote(id) + " not found", nil
	}
	if a.gone {
		return http.StatusOK, "", nil // idempotent
	}
	return http.StatusOK, "", c.takeDownAgent(a, downGone)
}
