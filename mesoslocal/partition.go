package mesoslocal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// Network partitions, a fault-injection facility for tests and demos (not
// a Mesos API; served only with Config.FaultInjection, the mesos-local and
// berth dev flag --fault-injection):
//
//	POST /fault/partition?agent_id=ID   cut the agent off the master
//	POST /fault/heal?agent_id=ID        reconnect it
//	GET  /fault                          the partitioned agents
//
// A partitioned agent keeps running: its task processes, reservations and
// volumes are untouched, and what its tasks report is held on the agent.
// The master does what a Mesos master does when an agent stops answering
// its pings: after Config.AgentPingTimeout (agent_ping_timeout ×
// max_agent_ping_timeouts) it marks the agent unreachable, rescinds its
// offers and inverse offers, makes no new ones, sends FAILURE and each of
// its live tasks' TASK_UNREACHABLE (TASK_LOST for frameworks that are not
// PARTITION_AWARE) to their frameworks, answers reconciliation and kills
// with that state (a kill cannot reach the agent). Healed, the agent
// reregisters as Mesos lets a partitioned agent do: each task still
// running is reported TASK_RUNNING again (Mesos' PartitionTest
// ReregisterSlavePartitionAware), the updates it held are delivered, and
// its resources, reservations and volumes are offered again. A heal before
// the ping timeout is a blip: nothing was marked.
//
// Not modelled: Mesos kills the tasks of frameworks that are not
// PARTITION_AWARE when their agent reregisters; here they keep running.

// partition is one agent cut off the master.
type partition struct {
	since       time.Time
	timer       *time.Timer
	unreachable bool
}

// partitioned is true while the agent is marked unreachable by a
// partition (c.mu held).
func (c *Cluster) partitioned(a *agent) bool {
	p := c.partitions[a.id]
	return p != nil && p.unreachable
}

// handleFaults serves the fault-injection endpoints.
func (c *Cluster) handleFaults(mux *http.ServeMux) {
	mux.HandleFunc("/fault", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		out := map[string]any{}
		for id, p := range c.partitions {
			out[id] = map[string]any{"since": p.since.UTC().Format(time.RFC3339Nano), "unreachable": p.unreachable}
		}
		faultJSON(w, http.StatusOK, map[string]any{"partitions": out})
	})
	for path, f := range map[string]func(string) error{"/fault/partition": c.PartitionAgent, "/fault/heal": c.HealAgent} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				faultJSON(w, http.StatusMethodNotAllowed, map[string]any{"message": "use POST"})
				return
			}
			if err := f(r.URL.Query().Get("agent_id")); err != nil {
				faultJSON(w, http.StatusBadRequest, map[string]any{"message": err.Error()})
				return
			}
			faultJSON(w, http.StatusOK, map[string]any{})
		})
	}
}

// PartitionAgent cuts an agent off the master: after AgentPingTimeout it is
// marked unreachable (see above).
func (c *Cluster) PartitionAgent(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.agents[id]
	switch {
	case c.closed:
		return fmt.Errorf("mesos-local is closed")
	case id == "":
		return fmt.Errorf("agent_id: must name an agent")
	case a == nil:
		return fmt.Errorf("agent_id: unknown agent %q", id)
	case a.gone:
		return fmt.Errorf("agent_id: agent %s was marked gone", id)
	case !a.active:
		return fmt.Errorf("agent_id: agent %s is not registered (stopped, or down for maintenance)", id)
	case c.partitions[id] != nil:
		return fmt.Errorf("agent_id: agent %s is already partitioned", id)
	}
	if c.partitions == nil {
		c.partitions = map[string]*partition{}
	}
	p := &partition{since: time.Now()}
	c.partitions[id] = p
	p.timer = time.AfterFunc(c.cfg.AgentPingTimeout, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed || c.partitions[id] != p {
			return
		}
		c.markUnreachable(a, p)
	})
	c.log.Info("fault injection: agent partitioned from the master", "agent_id", id, "unreachable_after", c.cfg.AgentPingTimeout)
	return nil
}

// markUnreachable is the master giving up on a partitioned agent (c.mu
// held).
func (c *Cluster) markUnreachable(a *agent, p *partition) {
	p.unreachable = true
	a.active = false
	for o := range a.offers {
		c.rescindOffer(o)
	}
	c.rescindInverseOffers(func(io *inverseOffer) bool { return io.agent == a }, true)
	now := time.Now()
	for _, fw := range c.sortedFrameworks() {
		for _, t := range sortedTasks(fw, a) {
			state := fw.lostState(mesos.TASK_UNREACHABLE)
			c.countTaskState(t.state, state)
			t.state = state
			st := mesos.TaskStatus{TaskID: t.info.TaskID, State: state.Enum(), Reason: mesos.REASON_AGENT_REMOVED.Enum(),
				Message: proto.String("Agent " + a.id + " is unreachable (partitioned from the master)"),
				AgentID: &mesos.AgentID{Value: a.id}, ExecutorID: &mesos.ExecutorID{Value: t.executorID}, UnreachableTime: timeInfo(now)}
			t.status = st
			t.statuses = append(t.statuses, st)
			c.masterUpdate(fw, st)
		}
		c.sendEvent(fw, &scheduler.Event{Type: scheduler.Event_FAILURE, Failure: &scheduler.Event_Failure{AgentID: &mesos.AgentID{Value: a.id}}})
	}
	c.log.Info("fault injection: agent marked unreachable", "agent_id", a.id)
	c.operatorEvent(func() *master.Event { return agentRemovedEvent(a) })
}

// sortedTasks are the framework's tasks on the agent that the master
// still counts as live, by id: the live ones, and those that ended while
// the partition held their end on the agent (the master never heard of it).
func sortedTasks(fw *framework, a *agent) []*task {
	var out []*task
	for _, t := range fw.tasks {
		if t.agent == a && (t.alive || endHeld(t)) {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].info.TaskID.Value < out[j].info.TaskID.Value })
	return out
}

// HealAgent reconnects a partitioned agent: it reregisters with its
// running tasks, held updates, reservations and volumes.
func (c *Cluster) HealAgent(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.partitions[id]
	switch {
	case c.closed:
		return fmt.Errorf("mesos-local is closed")
	case id == "":
		return fmt.Errorf("agent_id: must name an agent")
	case p == nil:
		return fmt.Errorf("agent_id: agent %q is not partitioned", id)
	}
	p.timer.Stop()
	delete(c.partitions, id)
	a := c.agents[id]
	if !p.unreachable {
		// What the agent held meanwhile reaches the master now.
		for _, fw := range c.sortedFrameworks() {
			for _, t := range fw.tasks {
				if t.agent == a && len(t.pending) > 0 {
					t.retryDelay = 0
					c.forwardUpdate(t)
				}
			}
		}
		c.log.Info("fault injection: partition healed before the agent was marked unreachable", "agent_id", id)
		return nil
	}
	a.active = true
	a.regTime = time.Now()
	for _, fw := range c.sortedFrameworks() {
		ids := make([]string, 0, len(fw.tasks))
		for tid, t := range fw.tasks {
			if t.agent == a {
				ids = append(ids, tid)
			}
		}
		sort.Strings(ids)
		for _, tid := range ids {
			t := fw.tasks[tid]
			if len(t.pending) > 0 {
				// What the agent reported meanwhile (an end, a health
				// change) comes first and says more.
				if !t.alive {
					// Ended while cut off: the master learns it now.
					st := lastAgentStatus(t)
					c.countTaskState(t.state, st.GetState())
					t.state = st.GetState()
					t.status = st
				}
				t.retryDelay = 0
				c.forwardUpdate(t)
				continue
			}
			if !t.alive {
				continue
			}
			// Still running: reported again, as Mesos reports a task of a
			// reregistered agent to a PARTITION_AWARE framework.
			st := lastAgentStatus(t)
			st.Source = mesos.SOURCE_MASTER.Enum()
			st.Reason = mesos.REASON_AGENT_REREGISTERED.Enum()
			st.Message = proto.String("Agent " + a.id + " reregistered after a partition")
			st.UnreachableTime = nil
			c.countTaskState(t.state, st.GetState())
			t.state = st.GetState()
			t.status = st
			t.statuses = append(t.statuses, st)
			c.masterUpdate(fw, st)
		}
	}
	c.markDirty(a)
	c.log.Info("fault injection: agent reregistered after a partition", "agent_id", id)
	c.operatorEvent(func() *master.Event { return agentAddedEvent(c, a) })
	c.kickAllocation()
	return nil
}

// endHeld is true for a task that ended on a partitioned agent whose end
// has not reached the master yet.
func endHeld(t *task) bool {
	return !t.alive && len(t.pending) > 0 && isTerminal(t.pending[len(t.pending)-1].GetState())
}

// lastAgentStatus is the last status of the task from before the master
// marked it unreachable (RUNNING if there is none).
func lastAgentStatus(t *task) mesos.TaskStatus {
	for i := len(t.statuses) - 1; i >= 0; i-- {
		if s := t.statuses[i].GetState(); s != mesos.TASK_UNREACHABLE && s != mesos.TASK_LOST {
			return t.statuses[i]
		}
	}
	return mesos.TaskStatus{TaskID: t.info.TaskID, State: mesos.TASK_RUNNING.Enum(), AgentID: &mesos.AgentID{Value: t.agent.id},
		ExecutorID: &mesos.ExecutorID{Value: t.executorID}}
}

func faultJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
