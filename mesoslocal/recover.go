package mesoslocal

// Agent recovery, as a Mesos agent with checkpointing does it: task
// processes of checkpointing frameworks run in sessions of their own and
// outlive mesos-local (a crash, kill -9, or Close without
// Config.KillTasksOnClose). The next mesos-local on the same work dir
// brings the agent back with the same id and adopts every task whose
// process still runs: the task stays RUNNING, keeps its resources, and is
// watched, health-checked and killed as before. A task whose process is
// gone is reported GONE (TASK_LOST without PARTITION_AWARE) with
// REASON_EXECUTOR_TERMINATED.
//
// Exit status: an adopted process is not mesos-local's child, so when it
// ends there is no status to read (only its parent, now init, gets it).
// Mesos learns a task's end from its executor, which mesos-local does not
// run; rather than guess FINISHED or FAILED it reports what a Mesos agent
// reports when an executor ends without a terminal update: GONE/LOST with
// REASON_EXECUTOR_TERMINATED, or KILLED when the task was being killed.
// A scheduler treats either as "the task ended" and relaunches a service.
//
// A process is recognised by its pid and its start time in /proc/<pid>/stat
// (checkpointed when it started), so a reused pid is never taken for the
// task. A task checkpointed before its pid was (mesos-local died between
// starting the process and writing the checkpoint) is found by the sandbox
// in its environment (MESOS_DIRECTORY).

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// errExitUnknown ends an adopted task: it is gone, its status unknown.
var errExitUnknown = errors.New("the process was adopted after a mesos-local restart and is not its child")

// adoptedPollInterval is how often an adopted process is looked up in /proc.
const adoptedPollInterval = 250 * time.Millisecond

// procStat is what mesos-local reads of a process in /proc/<pid>/stat.
type procStat struct {
	state   byte   // R, S, D, Z, X, ...
	session int    // session id
	start   string // start time, clock ticks since boot
}

// procInfo reads /proc/<pid>/stat; ok is false if the process does not exist.
func procInfo(pid int) (ps procStat, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ps, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ps, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "" {
		return ps, false
	}
	sid, err := strconv.Atoi(f[3])
	if err != nil {
		return ps, false
	}
	return procStat{state: f[0][0], session: sid, start: f[19]}, true
}

// processRuns reports whether pid is the live process that started at
// start (a zombie or a reused pid is not).
func processRuns(pid int, start string) bool {
	if pid <= 0 || start == "" {
		return false
	}
	ps, ok := procInfo(pid)
	return ok && ps.start == start && ps.state != 'Z' && ps.state != 'X'
}

// findSandboxProcess looks for the session leader whose MESOS_DIRECTORY is
// sandbox: a task started by a mesos-local that died before it checkpointed
// the pid. It returns 0 if there is none.
func findSandboxProcess(sandbox string) int {
	if sandbox == "" {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	want := []byte("MESOS_DIRECTORY=" + sandbox + "\x00")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(append([]byte{0}, env...), append([]byte{0}, want...)) {
			continue
		}
		if ps, ok := procInfo(pid); ok && ps.session == pid {
			return pid
		}
	}
	return 0
}

// taskProcess finds the live process of a checkpointed task: pid and start
// time, or 0 and "".
func taskProcess(tc *taskCheckpoint) (int, string) {
	if tc.PID > 0 {
		if processRuns(tc.PID, tc.PIDStart) {
			return tc.PID, tc.PIDStart
		}
		return 0, ""
	}
	if pid := findSandboxProcess(tc.Sandbox); pid > 0 {
		if ps, ok := procInfo(pid); ok && processRuns(pid, ps.start) {
			return pid, ps.start
		}
	}
	return 0, ""
}

// adoptable reports whether a checkpointed task can be adopted: a live
// command task of a checkpointing framework on a real agent. Tasks of a
// task group are not: their default executor's state is not checkpointed.
func (c *Cluster) adoptable(tc *taskCheckpoint, fi mesos.FrameworkInfo, state mesos.TaskState) bool {
	return !c.cfg.Simulate && fi.GetCheckpoint() && !isTerminal(state) && tc.ExecutorID == tc.Info.TaskID.Value
}

// adoptTask makes t, recovered from a checkpoint with its process pid
// alive, a live task again: it holds its resources and a runner watches
// the process. Called with c.mu held during recovery.
func (c *Cluster) adoptTask(t *task, pid int, start string) {
	a := t.agent
	t.alive = true
	t.pid, t.pidStart = pid, start
	if t.containerID == "" {
		t.containerID = newUUIDString()
	}
	t.started = time.Now()
	a.tasks[t] = struct{}{}
	a.res.use(t.res...)
	spec := c.procSpecOf(t, t.sandbox)
	r := newProcRunner(c, t)
	t.runner = r
	killing := t.state == mesos.TASK_KILLING
	if t.state != mesos.TASK_RUNNING && !killing {
		// STAGING or STARTING when checkpointed: the process runs now.
		c.agentUpdate(t, mesos.TaskStatus{State: mesos.TASK_RUNNING.Enum(),
			Message: proto.String("Task process recovered after a mesos-local restart")})
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(r.done)
		cred, err := taskCredential(spec.user)
		if err != nil {
			cred = nil // health checks then run as the agent's user
		}
		env, err := taskEnv(spec, spec.info.Command)
		if err != nil {
			env = os.Environ()
		}
		exited := make(chan error, 1)
		go func() { exited <- watchProcess(r, pid, start) }()
		r.supervise(spec, env, cred, pid, exited, time.Time{})
	}()
	if killing {
		// The kill was under way when mesos-local stopped: finish it.
		r.kill(spec.grace, false)
	}
	c.log.Info("task recovered", "agent_id", a.id, "framework_id", t.fwID, "task_id", t.info.TaskID.Value, "pid", pid, "state", t.state.String())
}

// watchProcess polls /proc until the adopted process is gone, or the runner
// is detached (then it returns nil, which nobody reads).
func watchProcess(r *procRunner, pid int, start string) error {
	tick := time.NewTicker(adoptedPollInterval)
	defer tick.Stop()
	for processRuns(pid, start) {
		select {
		case <-tick.C:
		case <-r.detached:
			return nil
		}
	}
	return errExitUnknown
}

// leaveOrKill ends a runner at Close: a task of a checkpointing framework
// keeps running for the next start to adopt, unless Config.KillTasksOnClose
// is set; any other is killed (a Mesos executor of a non-checkpointing
// framework exits with its agent). Called with c.mu held.
func (c *Cluster) leaveOrKill(t *task) {
	fw := c.frameworks[t.fwID]
	if !c.cfg.KillTasksOnClose && !c.cfg.Simulate && fw != nil && fw.checkpoint() && t.group == nil {
		t.runner.detach()
		return
	}
	t.runner.abandon()
}
