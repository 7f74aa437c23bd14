package mesoslocal

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// launch handles a LAUNCH operation: each valid task takes its resources
// from the pool and starts; invalid ones get TASK_ERROR.
func (c *Cluster) launch(fw *framework, a *agent, role string, pool *rindex, tasks []mesos.TaskInfo) {
	var launched []string
	var launchedRes rset
	for i := range tasks {
		// The tasks are the decoded call's, dropped after it: no deep copy.
		ti := tasks[i]
		res, err := c.validateTask(fw, a, role, pool, &ti, false)
		if err != nil {
			c.taskError(fw, &ti, mesos.REASON_TASK_INVALID, err)
			continue
		}
		pool.sub(res...)
		launchedRes = append(launchedRes, res...) // merged when formatted
		c.addTask(fw, a, role, ti, res, nil)
		launched = append(launched, ti.TaskID.Value)
	}
	if len(launched) > 0 {
		c.recordOp("LAUNCH", fw, a.id, launched, volumeIDs(launchedRes), launchedRes)
		for _, id := range launched {
			c.startTask(fw.tasks[id])
		}
	}
}

func volumeIDs(s rset) []string {
	var ids []string
	for i := range s {
		if p := s[i].GetDisk().GetPersistence(); p != nil && !slices.Contains(ids, p.ID) {
			ids = append(ids, p.ID) // once, even if tasks share a volume
		}
	}
	return ids
}

func (c *Cluster) taskError(fw *framework, ti *mesos.TaskInfo, reason mesos.TaskStatus_Reason, err error) {
	c.log.Warn("task refused", "framework_id", fw.id, "task_id", ti.TaskID.Value, "err", err)
	c.masterUpdate(fw, mesos.TaskStatus{
		TaskID:  ti.TaskID,
		State:   mesos.TASK_ERROR.Enum(),
		Reason:  reason.Enum(),
		Message: proto.String(err.Error()),
		AgentID: &ti.AgentID,
	})
}

// launchGroup handles LAUNCH_GROUP: all tasks start together under one
// default executor, or none does (then the pool is unchanged).
func (c *Cluster) launchGroup(fw *framework, a *agent, role string, pool *rindex, lg *mesos.Offer_Operation_LaunchGroup) {
	tasks := make([]mesos.TaskInfo, len(lg.TaskGroup.Tasks))
	for i := range lg.TaskGroup.Tasks {
		tasks[i] = deepCopy(&lg.TaskGroup.Tasks[i])
	}
	fail := func(err error) {
		for i := range tasks {
			c.taskError(fw, &tasks[i], mesos.REASON_TASK_GROUP_INVALID, err)
		}
	}
	ex := deepCopy(&lg.Executor)
	if len(tasks) == 0 {
		c.log.Warn("dropping LAUNCH_GROUP without tasks", "framework_id", fw.id)
		return
	}
	if ex.Type != mesos.ExecutorInfo_DEFAULT {
		fail(fmt.Errorf("LAUNCH_GROUP needs an executor of type DEFAULT, got %v", ex.Type))
		return
	}
	if err := validateID("executor.executor_id", ex.ExecutorID.Value); err != nil {
		fail(err)
		return
	}
	if ex.FrameworkID != nil && ex.FrameworkID.Value != fw.id {
		fail(fmt.Errorf("executor.framework_id %q is not this framework (%s)", ex.FrameworkID.Value, fw.id))
		return
	}
	if ex.Command != nil {
		fail(errors.New("executor.command must not be set for the DEFAULT executor"))
		return
	}
	key := fw.id + "/" + ex.ExecutorID.Value
	g := a.groups[key]
	avail := pool.clone() // the pool itself changes only once every task is valid
	var exRes rset
	if g == nil {
		if err := checkAllocation(ex.Resources, role); err != nil {
			fail(err)
			return
		}
		var err error
		exRes, err = upgradeResources(ex.Resources)
		if err != nil {
			fail(fmt.Errorf("executor: %w", err))
			return
		}
		if !avail.contains(exRes) {
			fail(fmt.Errorf("executor uses resources {%s} that are not in the offer {%s}", exRes, avail))
			return
		}
		avail.sub(exRes...)
	} else if g.killing {
		fail(fmt.Errorf("executor %s is shutting down", ex.ExecutorID.Value))
		return
	}
	var all rset
	seen := map[string]bool{}
	resList := make([]rset, len(tasks))
	for i := range tasks {
		ti := &tasks[i]
		if seen[ti.TaskID.Value] {
			fail(fmt.Errorf("task group has duplicate task ID %q", ti.TaskID.Value))
			return
		}
		seen[ti.TaskID.Value] = true
		if ti.Executor != nil && ti.Executor.ExecutorID.Value != ex.ExecutorID.Value {
			fail(fmt.Errorf("task %s: a task in a group must not set a different executor", ti.TaskID.Value))
			return
		}
		ti.Executor = nil
		if ti.Command == nil {
			fail(fmt.Errorf("task %s: tasks in a group need 'command'", ti.TaskID.Value))
			return
		}
		if ti.Container != nil && ti.Container.GetType() == mesos.ContainerInfo_DOCKER {
			fail(fmt.Errorf("task %s: Docker ContainerInfo is not supported on tasks in a group", ti.TaskID.Value))
			return
		}
		res, err := c.validateTask(fw, a, role, avail, ti, true)
		if err != nil {
			fail(fmt.Errorf("task %s: %w", ti.TaskID.Value, err))
			return
		}
		avail.sub(res...)
		all = all.plus(res...)
		resList[i] = res
	}
	if g == nil {
		g = &execGroup{id: ex.ExecutorID.Value, fwID: fw.id, agent: a, info: ex, res: exRes}
		g.info.FrameworkID = &mesos.FrameworkID{Value: fw.id}
		a.groups[key] = g
		a.res.use(exRes...)
	}
	var ids []string
	for i := range tasks {
		t := c.addTask(fw, a, role, tasks[i], resList[i], g)
		g.tasks = append(g.tasks, t)
		ids = append(ids, tasks[i].TaskID.Value)
	}
	c.recordOp("LAUNCH_GROUP", fw, a.id, ids, volumeIDs(all), all.plus(exRes...))
	*pool = *avail
	for _, id := range ids {
		c.startTask(fw.tasks[id])
	}
}

// validateTask mirrors the master's task validation; it returns the task's
// resources in canonical form.
func (c *Cluster) validateTask(fw *framework, a *agent, role string, pool *rindex, ti *mesos.TaskInfo, inGroup bool) (rset, error) {
	if err := validateID("task_id", ti.TaskID.Value); err != nil {
		return nil, err
	}
	if t := fw.tasks[ti.TaskID.Value]; t != nil {
		return nil, fmt.Errorf("Task has duplicate ID: %s", ti.TaskID.Value)
	}
	if ti.AgentID.Value != a.id {
		return nil, fmt.Errorf("Task uses invalid agent: %s (the offer is from agent %s)", ti.AgentID.Value, a.id)
	}
	if !inGroup && (ti.Command == nil) == (ti.Executor == nil) {
		return nil, errors.New("Task should have at least one (but not both) of CommandInfo or ExecutorInfo present")
	}
	if ti.Command != nil && ti.Command.GetValue() == "" && (ti.Container == nil || ti.Container.GetType() != mesos.ContainerInfo_DOCKER) {
		return nil, errors.New("'command.value' must be set")
	}
	if len(ti.Resources) == 0 {
		return nil, errors.New("Task uses no resources")
	}
	if err := checkAllocation(ti.Resources, role); err != nil {
		return nil, err
	}
	res, err := canonResources(ti.Resources) // ti is the caller's own copy
	if err != nil {
		return nil, err
	}
	for i := range res {
		if !allocatableTo(&res[i], role) {
			return nil, fmt.Errorf("resources[%d] (%s) is reserved for another role than %q", i, formatRes(res[i]), role)
		}
	}
	if !pool.contains(res) {
		return nil, fmt.Errorf("Task uses more resources {%s} than available {%s}", rset(nil).plus(res...), pool)
	}
	if ti.HealthCheck != nil {
		if err := validateHealthCheck(ti.HealthCheck); err != nil {
			return nil, fmt.Errorf("Task's health check is invalid: %w", err)
		}
	}
	if kp := ti.KillPolicy; kp != nil && kp.GracePeriod != nil && kp.GracePeriod.Nanoseconds < 0 {
		return nil, errors.New("Task's 'kill_policy.grace_period' must be non-negative")
	}
	if ex := ti.Executor; ex != nil {
		if err := validateID("executor.executor_id", ex.ExecutorID.Value); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func validateHealthCheck(hc *mesos.HealthCheck) error {
	if hc.Type == mesos.HealthCheck_UNKNOWN {
		// Mesos infers the type for old schedulers.
		switch {
		case hc.Command != nil:
			hc.Type = mesos.HealthCheck_COMMAND
		case hc.HTTP != nil:
			hc.Type = mesos.HealthCheck_HTTP
		case hc.TCP != nil:
			hc.Type = mesos.HealthCheck_TCP
		default:
			return errors.New("HealthCheck must specify 'type'")
		}
	}
	switch hc.Type {
	case mesos.HealthCheck_COMMAND:
		if hc.Command == nil || hc.Command.GetValue() == "" {
			return errors.New("Expecting 'command' with a 'value' for a COMMAND health check")
		}
	case mesos.HealthCheck_HTTP:
		if hc.HTTP == nil {
			return errors.New("Expecting 'http' to be set for an HTTP health check")
		}
		if hc.HTTP.Port == 0 || hc.HTTP.Port > 65535 {
			return fmt.Errorf("HTTP health check port %d is out of range", hc.HTTP.Port)
		}
		if s := hc.HTTP.GetScheme(); s != "" && s != "http" && s != "https" {
			return fmt.Errorf("HTTP health check scheme %q must be http or https", s)
		}
	case mesos.HealthCheck_TCP:
		if hc.TCP == nil {
			return errors.New("Expecting 'tcp' to be set for a TCP health check")
		}
		if hc.TCP.Port == 0 || hc.TCP.Port > 65535 {
			return fmt.Errorf("TCP health check port %d is out of range", hc.TCP.Port)
		}
	default:
		return fmt.Errorf("unsupported health check type %v", hc.Type)
	}
	for name, v := range map[string]*float64{"delay_seconds": hc.DelaySeconds, "interval_seconds": hc.IntervalSeconds,
		"timeout_seconds": hc.TimeoutSeconds, "grace_period_seconds": hc.GracePeriodSeconds} {
		if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0) || *v < 0) {
			return fmt.Errorf("'%s' must be a non-negative number, got %v", name, *v)
		}
	}
	return nil
}

// addTask records a new task in STAGING.
func (c *Cluster) addTask(fw *framework, a *agent, role string, ti mesos.TaskInfo, res rset, g *execGroup) *task {
	ti.Resources = append([]mesos.Resource(nil), res...)
	t := &task{
		info:       ti,
		fwID:       fw.id,
		agent:      a,
		executorID: ti.TaskID.Value, // the command executor's id is the task id
		role:       role,
		res:        res,
		alive:      true,
		state:      mesos.TASK_STAGING,
		group:      g,
		user:       fw.info.User,
	}
	if ti.Command != nil && ti.Command.User != nil {
		t.user = *ti.Command.User
	}
	if g != nil {
		t.executorID = g.id
	} else if ti.Executor != nil {
		t.executorID = ti.Executor.ExecutorID.Value
	}
	fw.tasks[ti.TaskID.Value] = t
	a.tasks[t] = struct{}{}
	a.res.use(res...)
	if fw.checkpoint() {
		a.fwInfos[fw.id] = fw.info
	}
	c.operatorEvent(func() *master.Event { return taskAddedEvent(t) })
	return t
}

// startTask hands a staged task to the agent.
func (c *Cluster) startTask(t *task) {
	if t == nil || !t.alive || t.runner != nil {
		return
	}
	c.checkpointTasks(t.agent)
	if c.cfg.Simulate {
		c.startSimTask(t)
		return
	}
	c.startProcTask(t)
}

// agentUpdate records a status update produced by the agent or executor for
// t: it gets a uuid, is checkpointed and delivered one at a time until
// acknowledged.
func (c *Cluster) agentUpdate(t *task, st mesos.TaskStatus) {
	st.TaskID = t.info.TaskID
	st.AgentID = &mesos.AgentID{Value: t.agent.id}
	st.ExecutorID = &mesos.ExecutorID{Value: t.executorID}
	st.UUID = newUUID()
	if st.Source == nil {
		st.Source = mesos.SOURCE_EXECUTOR.Enum()
	}
	if t.containerID != "" && st.ContainerStatus == nil {
		st.ContainerStatus = &mesos.ContainerStatus{ContainerID: &mesos.ContainerID{Value: t.containerID}}
	}
	ts := nowSeconds()
	st.Timestamp = &ts
	if t.state == mesos.TASK_KILLING && st.GetState() == mesos.TASK_RUNNING {
		// A health update while killing keeps the KILLING state.
		st.State = mesos.TASK_KILLING.Enum()
	}
	c.drainStatus(t, &st)
	c.countTaskState(t.state, st.GetState())
	t.state = st.GetState()
	t.status = st
	t.statuses = append(t.statuses, st)
	if len(t.statuses) > 20 {
		t.statuses = t.statuses[len(t.statuses)-20:]
	}
	if isTerminal(t.state) && t.alive {
		c.releaseTask(t)
	}
	fw := c.frameworks[t.fwID]
	if fw == nil {
		return
	}
	c.operatorEvent(func() *master.Event { return taskUpdatedEvent(fw.id, st, t.state) })
	t.pending = append(t.pending, st)
	if len(t.pending) == 1 {
		t.retryDelay = 0
		c.forwardUpdate(t)
	}
	c.checkpointTasks(t.agent)
}

// forwardUpdate (re)sends the task's oldest unacknowledged update.
func (c *Cluster) forwardUpdate(t *task) {
	if len(t.pending) == 0 {
		delete(c.retrying, t)
		return
	}
	if c.partitions[t.agent.id] != nil {
		// Cut off (partition.go): held on the agent until the partition
		// heals, from its start, not only once the master has noticed.
		return
	}
	fw := c.frameworks[t.fwID]
	c.sendEvent(fw, &scheduler.Event{Type: scheduler.Event_UPDATE, Update: &scheduler.Event_Update{Status: t.pending[0]}})
	if t.retryDelay == 0 {
		t.retryDelay = c.cfg.StatusUpdateRetry
	} else {
		t.retryDelay = min(2*t.retryDelay, c.cfg.StatusUpdateRetryMax)
	}
	t.retryAt = time.Now().Add(t.retryDelay)
	c.retrying[t] = struct{}{}
}

// retryUpdates resends updates whose acknowledgement is overdue.
func (c *Cluster) retryUpdates(now time.Time) {
	for t := range c.retrying {
		if len(t.pending) == 0 {
			delete(c.retrying, t)
			continue
		}
		if now.After(t.retryAt) && t.agent.active {
			c.forwardUpdate(t)
		}
	}
}

// releaseTask frees a terminal task's resources on its agent.
func (c *Cluster) releaseTask(t *task) {
	t.alive = false
	delete(t.agent.tasks, t)
	if len(t.agent.nested) > 0 {
		c.killNested(t.agent, t) // nested containers die with their parent
	}
	t.agent.res.release(t.res...)
	c.markDirty(t.agent)
	if g := t.group; g != nil {
		// The default executor kills the rest of the group when a task fails.
		if s := t.state; s != mesos.TASK_FINISHED && !g.killing {
			c.killGroup(g, c.cfg.KillGracePeriod, "")
		}
		done := true
		for _, o := range g.tasks {
			if o.alive {
				done = false
			}
		}
		if done {
			delete(t.agent.groups, g.fwID+"/"+g.id)
			t.agent.res.release(g.res...)
		}
	}
}

// finishTask ends a task without a runner (or abandons it): with update the
// agent reports the terminal state, otherwise the state is only recorded.
func (c *Cluster) finishTask(t *task, state mesos.TaskState, reason mesos.TaskStatus_Reason, msg string, update bool) {
	if update {
		st := mesos.TaskStatus{State: state.Enum(), Message: proto.String(msg), Source: mesos.SOURCE_AGENT.Enum()}
		if reason != 0 {
			st.Reason = reason.Enum()
		}
		c.agentUpdate(t, st)
		return
	}
	c.countTaskState(t.state, state)
	t.state = state
	t.status = mesos.TaskStatus{TaskID: t.info.TaskID, State: state.Enum(), Message: proto.String(msg)}
	if reason != 0 {
		t.status.Reason = reason.Enum()
	}
	if t.alive {
		c.releaseTask(t)
	}
}
