package mesoslocal

import (
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// framework is the master's record of a scheduler.
type framework struct {
	id    string
	info  mesos.FrameworkInfo
	roles []string

	refinement, partitionAware, multiRole, killingState, shared bool

	sub       *stream // nil while disconnected
	streamID  string
	connected bool
	recovered bool // known only from agent checkpoints, never subscribed to this master

	registered, reregistered, unregistered time.Time

	suppressed map[string]bool
	filters    map[string][]offerFilter // by agent id
	offers     map[string]*offer
	tasks      map[string]*task // tracked: live, or terminal with the update not yet acknowledged
	lost       map[string]*task // on unreachable agents (UNREACHABLE or LOST)
	completed  []*task

	failoverTimer *time.Timer
}

const maxCompletedTasks = 1000

type offerFilter struct {
	role  string
	res   rset
	until time.Time
}

type offer struct {
	id      string
	fw      *framework
	agent   *agent
	role    string
	res     rset
	created time.Time
}

// task is a task as both the master and its agent know it.
type task struct {
	info       mesos.TaskInfo // resources in canonical form
	fwID       string
	agent      *agent
	executorID string
	group      *execGroup // set for LAUNCH_GROUP tasks
	role       string
	res        rset
	alive      bool // holds resources on the agent (not terminal yet)
	user       string

	state    mesos.TaskState // latest state known to the agent
	status   mesos.TaskStatus
	statuses []mesos.TaskStatus

	pending    []mesos.TaskStatus // agent updates awaiting acknowledgement; head is in flight
	retryAt    time.Time
	retryDelay time.Duration

	runner  taskRunner
	sandbox string
	// containerID is the task's container (ContainerStatus.container_id;
	// the parent of its nested containers, agentapi.go). Real tasks only.
	containerID string
	pid         int
	pidStart    string
	started     time.Time
}

// execGroup is a default executor running a task group (LAUNCH_GROUP).
type execGroup struct {
	id      string
	fwID    string
	agent   *agent
	info    mesos.ExecutorInfo
	res     rset
	tasks   []*task
	killing bool
}

type agent struct {
	id       string
	index    int
	listPos  int // position in Cluster.agentList
	hostname string
	attrs    []mesos.Attribute
	res      *ledger // total and free resources
	active   bool
	gone     bool
	// deactivated agents make no offers (operator DEACTIVATE_AGENT, or a
	// drain); their tasks keep running unless drained.
	deactivated bool
	// drain is set from DRAIN_AGENT until REACTIVATE_AGENT (drain.go).
	drain *mesos.DrainInfo
	// down is true while the agent's machine is DOWN for maintenance.
	down    bool
	regTime time.Time
	tasks   map[*task]struct{} // alive tasks
	groups  map[string]*execGroup
	offers  map[*offer]struct{}
	fwInfos map[string]mesos.FrameworkInfo // checkpointed frameworks
	dir     string

	// api is the agent's own listener, apiPort its port (checkpointed), and
	// nested the containers launched in its tasks (agentapi.go).
	api     *agentAPI
	apiPort int32
	nested  map[string]*nestedContainer

	dirty  bool      // queued in Cluster.dirty for the next allocation round
	wakeAt time.Time // a filter on its free resources expires then (zero: none)
}

// recomputeAvailable is what the ledger's free resources must equal: the
// total minus every task's, executor's and offer's resources. Only for
// consistency checks.
func (a *agent) recomputeAvailable() rset {
	used := rset(nil)
	for t := range a.tasks {
		used = append(used, t.res...)
	}
	for _, g := range a.groups {
		used = append(used, g.res...)
	}
	for o := range a.offers {
		used = append(used, o.res...)
	}
	return a.res.totalSet().minus(used...)
}

func (a *agent) allocated() rset {
	sum := newRindex(nil)
	for t := range a.tasks {
		sum.add(t.res...)
	}
	for _, g := range a.groups {
		sum.add(g.res...)
	}
	return sum.slice()
}

func (a *agent) offered() rset {
	sum := newRindex(nil)
	for o := range a.offers {
		sum.add(o.res...)
	}
	return sum.slice()
}

func isTerminal(s mesos.TaskState) bool {
	switch s {
	case mesos.TASK_FINISHED, mesos.TASK_FAILED, mesos.TASK_KILLED, mesos.TASK_ERROR,
		mesos.TASK_LOST, mesos.TASK_DROPPED, mesos.TASK_GONE, mesos.TASK_GONE_BY_OPERATOR:
		return true
	}
	return false
}

func hasCap(info *mesos.FrameworkInfo, t mesos.FrameworkInfo_Capability_Type) bool {
	for _, c := range info.Capabilities {
		if c.Type == t {
			return true
		}
	}
	return false
}

func (fw *framework) setInfo(info mesos.FrameworkInfo) {
	fw.info = info
	fw.multiRole = hasCap(&info, mesos.FrameworkInfo_Capability_MULTI_ROLE)
	fw.refinement = hasCap(&info, mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT)
	fw.partitionAware = hasCap(&info, mesos.FrameworkInfo_Capability_PARTITION_AWARE)
	fw.killingState = hasCap(&info, mesos.FrameworkInfo_Capability_TASK_KILLING_STATE)
	fw.shared = hasCap(&info, mesos.FrameworkInfo_Capability_SHARED_RESOURCES)
	if fw.multiRole {
		fw.roles = append([]string(nil), info.Roles...)
	} else {
		fw.roles = []string{info.GetRole()}
		if info.Role == nil {
			fw.roles = []string{"*"}
		}
	}
}

func (fw *framework) hasRole(role string) bool {
	for _, r := range fw.roles {
		if r == role {
			return true
		}
	}
	return false
}

func (fw *framework) format() resourceFormat {
	if fw.refinement {
		return formatPostRefinement
	}
	return formatPreRefinement
}

// lostState is the state a partition-aware framework sees as pa and others as LOST.
func (fw *framework) lostState(pa mesos.TaskState) mesos.TaskState {
	if fw != nil && fw.partitionAware {
		return pa
	}
	return mesos.TASK_LOST
}

func (fw *framework) checkpoint() bool { return fw.info.GetCheckpoint() }

func (fw *framework) addCompleted(t *task) {
	fw.completed = append(fw.completed, t)
	if len(fw.completed) > maxCompletedTasks {
		fw.completed = fw.completed[len(fw.completed)-maxCompletedTasks:]
	}
}

// toTask renders a task for the operator API.
func (t *task) toTask() mesos.Task {
	mt := mesos.Task{
		Name:        t.info.Name,
		TaskID:      t.info.TaskID,
		FrameworkID: mesos.FrameworkID{Value: t.fwID},
		AgentID:     mesos.AgentID{Value: t.agent.id},
		State:       t.state.Enum(),
		Resources:   render(t.res, formatEndpoint, t.role),
		Statuses:    append([]mesos.TaskStatus(nil), t.statuses...),
		Labels:      t.info.Labels,
		Discovery:   t.info.Discovery,
		Container:   t.info.Container,
		HealthCheck: t.info.HealthCheck,
		KillPolicy:  t.info.KillPolicy,
	}
	if len(mt.Resources) == 0 {
		mt.Resources = render(rset(t.info.Resources), formatEndpoint, t.role)
	}
	if t.executorID != "" && t.group != nil {
		mt.ExecutorID = &mesos.ExecutorID{Value: t.executorID}
	}
	if t.user != "" {
		mt.User = proto.String(t.user)
	}
	if len(t.pending) > 0 {
		mt.StatusUpdateState = t.pending[0].State
		mt.StatusUpdateUUID = t.pending[0].UUID
	} else if len(t.statuses) > 0 {
		mt.StatusUpdateState = t.statuses[len(t.statuses)-1].State
	}
	return mt
}
