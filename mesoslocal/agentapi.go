package mesoslocal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	agentapi "github.com/mesos/mesos-go/api/v1/lib/agent"
)

// The agent v1 API (POST http://<agent host>:<agent port>/api/v1), as a
// Mesos agent serves it: each real (not simulated) agent has a listener of
// its own on the master's bind address, whose port is AgentInfo.port and
// the port of its PID and of Offer.url, and is kept across mesos-local
// restarts through the agent checkpoint when it is still free. It serves
// the calls that launch, wait for and kill containers nested in a task's
// container (what `dcos task exec` and Berth's online backups use), and
// the agent's /files and /metrics endpoints.
//
// Nested containers follow the Mesos containerizer: LAUNCH_CONTAINER with a
// ContainerID whose parent is the container of a task running on the agent
// starts a nested container of class DEFAULT (the v1 LAUNCH_CONTAINER call
// has no class; DEBUG containers exist only for the attach-bound
// LAUNCH_NESTED_CONTAINER_SESSION). Its sandbox is
// <task sandbox>/containers/<id>, so the task's persistent volumes are at
// $MESOS_SANDBOX/../../<containerPath>, where the task sees them; its
// CommandInfo.uris are fetched into that sandbox; it gets no resources of
// its own (a nested container shares its parent's). A nested container
// dies with its parent task; once the parent is gone the agent forgets it
// (WAIT_CONTAINER then answers 404, as Mesos does after destroying the
// parent). mesos-local does not recover nested containers across its own
// restarts (a Mesos agent does): they are killed when mesos-local or their
// agent stops. Operator calls are not authenticated, as for the master.

// nestedContainer is a process launched by LAUNCH_CONTAINER in a task's
// container.
type nestedContainer struct {
	id      mesos.ContainerID // with its parent
	parent  *task
	sandbox string
	pid     int
	killed  bool
	done    chan struct{} // closed once status is set
	// status is the raw wait(2) status, as WAIT_CONTAINER's exit_status.
	status int32
	// launchErr is why the process could not start (status is then 1<<8).
	launchErr string
}

// agentAPI is an agent's own HTTP listener.
type agentAPI struct {
	ln  net.Listener
	srv *http.Server
}

// agentPortOf is the port an agent answers on: its own listener's, or the
// master's for a simulated agent (no processes, no agent API).
func (c *Cluster) agentPortOf(a *agent) int32 {
	if a != nil && a.api != nil {
		_, p, err := net.SplitHostPort(a.api.ln.Addr().String())
		if err == nil {
			n, _ := strconv.ParseInt(p, 10, 32)
			return int32(n)
		}
	}
	return c.agentPort()
}

// AgentURL is the base URL of an agent's own endpoints ("http://host:port"),
// or "" for an unknown agent.
func (c *Cluster) AgentURL(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.agents[id]
	if a == nil {
		return ""
	}
	return "http://" + net.JoinHostPort(c.agentHost(a), strconv.Itoa(int(c.agentPortOf(a))))
}

// agentHost is the address an agent's listener binds: the master's bind
// address, or, when that is a specific one and the agent has a loopback
// address of its own (Config.DistinctHosts: 127.0.0.<n>, which its PID
// names), that address.
func (c *Cluster) agentHost(a *agent) string {
	host, _, _ := net.SplitHostPort(c.Addr())
	if mip := net.ParseIP(host); mip != nil && mip.IsUnspecified() {
		return host // every address, the agents' loopback ones included
	}
	if ip := net.ParseIP(a.hostname); ip != nil && ip.IsLoopback() {
		return ip.String()
	}
	return host
}

// startAgentAPIs gives every real agent its listener (on agentHost), on
// its checkpointed port when that is free. Called from Start before
// serving.
func (c *Cluster) startAgentAPIs(ctx context.Context) error {
	if c.cfg.Simulate {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.agentList {
		if a.gone {
			continue
		}
		host := c.agentHost(a)
		var err error
		var lc net.ListenConfig
		var ln net.Listener
		if a.apiPort != 0 {
			ln, err = lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(a.apiPort))))
			if err != nil {
				c.log.Warn("agent API: the checkpointed port is taken; the agent gets a new one", "agent_id", a.id, "port", a.apiPort, "err", err)
			}
		}
		if ln == nil {
			if ln, err = lc.Listen(ctx, "tcp", net.JoinHostPort(host, "0")); err != nil {
				return fmt.Errorf("agent %s API: %w", a.id, err)
			}
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/api/v1", c.agentAPIHandler(a))
		mux.HandleFunc("/files/read", c.handleFilesRead)
		mux.HandleFunc("/files/browse", c.handleFilesBrowse)
		mux.HandleFunc("/metrics/snapshot", c.handleMetricsSnapshot)
		mux.HandleFunc("/slave(1)/metrics/snapshot", c.handleMetricsSnapshot)
		a.api = &agentAPI{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second,
			ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)}}
		a.apiPort = c.agentPortOf(a)
		a.nested = map[string]*nestedContainer{}
		c.checkpointAgent(a)
		srv := a.api.srv
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.log.Error("agent API server stopped", "agent_id", a.id, "err", err)
			}
		}()
	}
	return nil
}

// closeAgentAPIs kills every nested container and stops the agents'
// listeners. Called from Close with c.mu held.
func (c *Cluster) closeAgentAPIs() {
	for _, a := range c.agentList {
		c.killNested(a, nil)
		if a.api != nil {
			a.api.srv.Close()
		}
	}
}

// killNested kills the nested containers of parent on a (all of them for a
// nil parent), and makes the agent forget them once they ended. Called
// with c.mu held, when the parent task ends or the agent stops.
func (c *Cluster) killNested(a *agent, parent *task) {
	for id, n := range a.nested {
		if parent != nil && n.parent != parent {
			continue
		}
		n.killed = true
		if n.pid > 0 {
			_ = syscall.Kill(-n.pid, syscall.SIGKILL)
		}
		delete(a.nested, id)
	}
}

func (c *Cluster) agentAPIHandler(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var call agentapi.Call
		rk, ok := readCall(w, r, &call)
		if !ok {
			return
		}
		respond := func(resp *agentapi.Response) { respondWith(w, rk, resp) }
		c.mu.Lock()
		up := a.active && !c.closed
		c.mu.Unlock()
		if !up {
			writeError(w, http.StatusServiceUnavailable, "Agent "+a.id+" is not running")
			return
		}
		switch call.Type {
		case agentapi.Call_GET_HEALTH:
			respond(&agentapi.Response{Type: agentapi.Response_GET_HEALTH, GetHealth: &agentapi.Response_GetHealth{Healthy: true}})
		case agentapi.Call_GET_VERSION:
			respond(&agentapi.Response{Type: agentapi.Response_GET_VERSION, GetVersion: &agentapi.Response_GetVersion{VersionInfo: versionInfo()}})
		case agentapi.Call_GET_CONTAINERS:
			c.mu.Lock()
			cs := c.agentContainers(a, call.GetContainers.GetShowNested())
			c.mu.Unlock()
			respond(&agentapi.Response{Type: agentapi.Response_GET_CONTAINERS, GetContainers: cs})
		case agentapi.Call_LAUNCH_CONTAINER:
			if call.LaunchContainer == nil {
				writeError(w, http.StatusBadRequest, "Expecting 'launch_container' to be present")
				return
			}
			code, msg := c.launchNested(a, call.LaunchContainer)
			if code == http.StatusOK || code == http.StatusAccepted {
				w.WriteHeader(code)
				return
			}
			writeError(w, code, msg)
		case agentapi.Call_WAIT_CONTAINER:
			if call.WaitContainer == nil {
				writeError(w, http.StatusBadRequest, "Expecting 'wait_container' to be present")
				return
			}
			resp, code, msg := c.waitNested(r.Context(), a, call.WaitContainer.ContainerID)
			if code != http.StatusOK {
				writeError(w, code, msg)
				return
			}
			respond(&agentapi.Response{Type: agentapi.Response_WAIT_CONTAINER, WaitContainer: resp})
		case agentapi.Call_KILL_CONTAINER:
			if call.KillContainer == nil {
				writeError(w, http.StatusBadRequest, "Expecting 'kill_container' to be present")
				return
			}
			code, msg := c.killNestedCall(a, call.KillContainer)
			if code != http.StatusOK {
				writeError(w, code, msg)
				return
			}
			w.WriteHeader(http.StatusOK)
		case agentapi.Call_UNKNOWN:
			writeError(w, http.StatusBadRequest, "Expecting 'type' to be present")
		default:
			writeError(w, http.StatusNotImplemented, "mesos-local does not implement agent call "+call.Type.String())
		}
	}
}

// containerIDString renders a ContainerID as Mesos does: the values of its
// ancestors and its own, joined by '.'.
func containerIDString(id *mesos.ContainerID) string {
	if id == nil {
		return ""
	}
	if id.Parent != nil {
		return containerIDString(id.Parent) + "." + id.Value
	}
	return id.Value
}

// taskByContainer returns the live task of a whose container is id.
func taskByContainer(a *agent, id *mesos.ContainerID) *task {
	if id == nil || id.Parent != nil {
		return nil
	}
	for t := range a.tasks {
		if t.containerID != "" && t.containerID == id.Value {
			return t
		}
	}
	return nil
}

// agentContainers is GET_CONTAINERS: the tasks' containers and, with
// showNested, the nested ones. Called with c.mu held.
func (c *Cluster) agentContainers(a *agent, showNested bool) *agentapi.Response_GetContainers {
	out := &agentapi.Response_GetContainers{}
	for t := range a.tasks {
		if t.containerID == "" {
			continue
		}
		cid := mesos.ContainerID{Value: t.containerID}
		out.Containers = append(out.Containers, agentapi.Response_GetContainers_Container{
			FrameworkID: &mesos.FrameworkID{Value: t.fwID}, ExecutorID: &mesos.ExecutorID{Value: t.executorID},
			ExecutorName: proto.String("Command Executor (Task: " + t.info.TaskID.Value + ")"), ContainerID: cid,
			ContainerStatus: &mesos.ContainerStatus{ContainerID: &mesos.ContainerID{Value: t.containerID}},
		})
	}
	if showNested {
		for _, n := range a.nested {
			id := n.id
			out.Containers = append(out.Containers, agentapi.Response_GetContainers_Container{ContainerID: id,
				ContainerStatus: &mesos.ContainerStatus{ContainerID: &id}})
		}
	}
	sort.Slice(out.Containers, func(i, j int) bool {
		return containerIDString(&out.Containers[i].ContainerID) < containerIDString(&out.Containers[j].ContainerID)
	})
	return out
}

// launchNested is LAUNCH_CONTAINER: 200 once launched, 202 when a container
// with that id exists already (Mesos' answer to a repeated launch), 400 for
// a call Mesos would refuse, 404 when the parent container is not on the
// agent.
func (c *Cluster) launchNested(a *agent, lc *agentapi.Call_LaunchContainer) (int, string) {
	id := lc.ContainerID
	switch {
	case id.Value == "":
		return http.StatusBadRequest, "Expecting 'launch_container.container_id.value' to be present"
	case id.Parent == nil:
		return http.StatusBadRequest, "mesos-local supports only nested containers: 'launch_container.container_id.parent' must name a task's container (standalone containers are not supported)"
	case id.Parent.Parent != nil:
		return http.StatusBadRequest, "mesos-local supports containers nested one level deep: the parent of " + containerIDString(&id) + " must be a task's container"
	case lc.Command == nil:
		return http.StatusBadRequest, "Expecting 'launch_container.command' to be present"
	case len(lc.Resources) > 0:
		return http.StatusBadRequest, "Nested containers may not specify resources: they share their parent's ('launch_container.resources' must be empty)"
	case lc.Container != nil && lc.Container.GetMesos().GetImage() != nil:
		return http.StatusBadRequest, "container images are not supported by mesos-local (no image provisioner): 'launch_container.container.mesos.image' must be empty"
	}
	if strings.ContainsAny(id.Value, "/.") {
		return http.StatusBadRequest, "'launch_container.container_id.value' " + strconv.Quote(id.Value) + " must not contain '/' or '.'"
	}
	c.mu.Lock()
	if _, ok := a.nested[id.Value]; ok {
		c.mu.Unlock()
		return http.StatusAccepted, ""
	}
	parent := taskByContainer(a, id.Parent)
	if parent == nil || parent.runner == nil || parent.pid == 0 || parent.state != mesos.TASK_RUNNING {
		c.mu.Unlock()
		return http.StatusNotFound, "Container " + id.Parent.Value + " cannot be found (or is not running) on agent " + a.id
	}
	sandbox := filepath.Join(parent.sandbox, "containers", id.Value)
	spec := c.procSpecOf(parent, sandbox)
	n := &nestedContainer{id: id, parent: parent, sandbox: sandbox, done: make(chan struct{})}
	a.nested[id.Value] = n
	c.mu.Unlock()

	cmd, err := c.startNested(spec, lc.Command)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		n.launchErr = err.Error()
		n.status = 1 << 8
		close(n.done)
		return http.StatusInternalServerError, "Failed to launch container " + containerIDString(&id) + ": " + err.Error()
	}
	n.pid = cmd.Process.Pid
	if n.killed || a.nested[id.Value] != n {
		// The parent ended while the process started.
		_ = syscall.Kill(-n.pid, syscall.SIGKILL)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := cmd.Wait()
		status := int32(0)
		if cmd.ProcessState != nil {
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
				status = int32(ws)
			}
		} else if err != nil {
			status = 1 << 8
		}
		_ = syscall.Kill(-n.pid, syscall.SIGKILL) // leftovers of its process group
		c.mu.Lock()
		n.status = status
		close(n.done)
		c.mu.Unlock()
	}()
	return http.StatusOK, ""
}

// startNested prepares a nested container's sandbox, fetches its URIs and
// starts its process in a process group of its own.
func (c *Cluster) startNested(spec procSpec, ci *mesos.CommandInfo) (*exec.Cmd, error) {
	user := spec.user
	if ci.User != nil && *ci.User != "" {
		user = *ci.User
	}
	cred, err := taskCredential(user)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(spec.sandbox, 0o755); err != nil {
		return nil, fmt.Errorf("create the sandbox: %v", err)
	}
	if err := cred.chown(spec.sandbox); err != nil {
		return nil, fmt.Errorf("chown the sandbox to %s: %v", cred.name, err)
	}
	if err := fetchURIs(ci.URIs, spec.sandbox, cred); err != nil {
		return nil, fmt.Errorf("fetch URIs: %v", err)
	}
	env, err := taskEnv(spec, ci)
	if err != nil {
		return nil, err
	}
	cmd, err := buildCommand(ci, spec.sandbox, env, cred)
	if err != nil {
		return nil, err
	}
	stdout, err1 := os.OpenFile(filepath.Join(spec.sandbox, "stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	stderr, err2 := os.OpenFile(filepath.Join(spec.sandbox, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("open the sandbox output: %v", err)
	}
	// The child has its own copies once started.
	defer stdout.Close()
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// waitNested is WAIT_CONTAINER: it blocks until the container ends (or the
// caller goes away) and answers its raw wait status; 404 for a container
// the agent does not know (never launched, or its parent is gone).
func (c *Cluster) waitNested(ctx context.Context, a *agent, id mesos.ContainerID) (*agentapi.Response_WaitContainer, int, string) {
	c.mu.Lock()
	n := a.nested[id.Value]
	if n != nil && !sameContainer(&n.id, &id) {
		n = nil
	}
	c.mu.Unlock()
	if n == nil {
		return nil, http.StatusNotFound, "Container " + containerIDString(&id) + " cannot be found"
	}
	select {
	case <-n.done:
	case <-ctx.Done():
		return nil, http.StatusServiceUnavailable, "the wait was cancelled"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := n.status
	resp := &agentapi.Response_WaitContainer{ExitStatus: &st}
	state, reason, msg := mesos.TASK_FINISHED, mesos.TaskStatus_Reason(0), ""
	ws := syscall.WaitStatus(st)
	switch {
	case n.launchErr != "":
		state, reason, msg = mesos.TASK_FAILED, mesos.REASON_CONTAINER_LAUNCH_FAILED, n.launchErr
	case n.killed:
		state, reason, msg = mesos.TASK_KILLED, mesos.REASON_EXECUTOR_TERMINATED, "Container killed"
	case ws.Signaled() || ws.ExitStatus() != 0:
		state, msg = mesos.TASK_FAILED, fmt.Sprintf("Command %s", waitText(ws))
	}
	resp.State = state.Enum()
	if reason != 0 {
		resp.Reason = reason.Enum()
	}
	if msg != "" {
		resp.Message = proto.String(msg)
	}
	return resp, http.StatusOK, ""
}

func waitText(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "terminated with signal " + ws.Signal().String()
	}
	return "exited with status " + strconv.Itoa(ws.ExitStatus())
}

func sameContainer(a, b *mesos.ContainerID) bool {
	return containerIDString(a) == containerIDString(b)
}

// killNestedCall is KILL_CONTAINER: SIGKILL (or the given signal) to the
// container's processes; 404 for an unknown container.
func (c *Cluster) killNestedCall(a *agent, kc *agentapi.Call_KillContainer) (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := a.nested[kc.ContainerID.Value]
	if n == nil || !sameContainer(&n.id, &kc.ContainerID) {
		return http.StatusNotFound, "Container " + containerIDString(&kc.ContainerID) + " cannot be found"
	}
	sig := syscall.SIGKILL
	if kc.Signal != nil {
		sig = syscall.Signal(*kc.Signal)
	}
	select {
	case <-n.done:
		return http.StatusOK, "" // already ended
	default:
	}
	if sig == syscall.SIGKILL {
		n.killed = true
	}
	if n.pid > 0 {
		_ = syscall.Kill(-n.pid, sig)
	}
	return http.StatusOK, ""
}
