package mesoslocal

import (
	"sync"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// simRunner "runs" a task without a process: STARTING and RUNNING at once,
// then (if Config.SimTaskDuration is set) the configured final state.
type simRunner struct {
	c     *Cluster
	t     *task
	mu    sync.Mutex
	timer *time.Timer
	done  bool
}

func (c *Cluster) startSimTask(t *task) {
	r := &simRunner{c: c, t: t}
	t.runner = r
	t.started = time.Now()
	if ct := t.info.Container; ct != nil && ct.GetType() == mesos.ContainerInfo_DOCKER {
		c.agentUpdate(t, mesos.TaskStatus{State: mesos.TASK_FAILED.Enum(), Source: mesos.SOURCE_AGENT.Enum(),
			Reason:  mesos.REASON_CONTAINER_LAUNCH_FAILED.Enum(),
			Message: proto.String("Failed to launch container: the DOCKER containerizer is unavailable: no Docker engine runs on this mesos-local agent")})
		return
	}
	c.agentUpdate(t, mesos.TaskStatus{State: mesos.TASK_STARTING.Enum()})
	c.agentUpdate(t, mesos.TaskStatus{State: mesos.TASK_RUNNING.Enum()})
	if t.info.HealthCheck != nil {
		c.agentUpdate(t, mesos.TaskStatus{State: mesos.TASK_RUNNING.Enum(), Healthy: proto.Bool(true),
			Reason: mesos.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED.Enum()})
	}
	if d := c.cfg.SimTaskDuration; d > 0 {
		final := c.cfg.SimTaskFinalState
		r.mu.Lock()
		r.timer = time.AfterFunc(d, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.closed || t.runner != r || !t.alive {
				return
			}
			c.agentUpdate(t, mesos.TaskStatus{State: final.Enum(), Message: proto.String("simulated task ended")})
		})
		r.mu.Unlock()
	}
}

// kill is called with c.mu held: the simulated task ends at once.
func (r *simRunner) kill(time.Duration, bool) {
	r.stopTimer()
	if r.t.alive {
		r.c.agentUpdate(r.t, mesos.TaskStatus{State: mesos.TASK_KILLED.Enum(), Message: proto.String("simulated task killed")})
	}
}

func (r *simRunner) abandon() { r.stopTimer() }
func (r *simRunner) detach()  { r.stopTimer() }
func (r *simRunner) wait()    {}

func (r *simRunner) stopTimer() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
	}
	r.done = true
}
