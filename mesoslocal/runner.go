package mesoslocal

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// taskRunner is the agent side of one task.
type taskRunner interface {
	// kill stops the task: SIGTERM, then SIGKILL after grace.
	kill(grace time.Duration, health bool)
	// abandon kills the task without reporting anything (agent stopped or
	// mesos-local closing). It does not wait.
	abandon()
	// detach stops watching the task and leaves its process running, for a
	// later mesos-local on the same work dir to adopt (recover.go). It
	// does not wait.
	detach()
	// wait blocks until the runner has finished.
	wait()
}

type killRequest struct {
	grace  time.Duration
	health bool
}

// procRunner runs a command task as a local process in a session of its
// own, or watches one adopted after a restart (recover.go).
type procRunner struct {
	c          *Cluster
	t          *task
	killCh     chan killRequest
	stop       chan struct{} // closed by abandon: kill, report nothing
	once       sync.Once
	detached   chan struct{} // closed by detach: leave running, report nothing
	detachOnce sync.Once
	done       chan struct{}
}

func newProcRunner(c *Cluster, t *task) *procRunner {
	return &procRunner{c: c, t: t, killCh: make(chan killRequest, 1), stop: make(chan struct{}),
		detached: make(chan struct{}), done: make(chan struct{})}
}

func (r *procRunner) kill(grace time.Duration, health bool) {
	select {
	case r.killCh <- killRequest{grace: grace, health: health}:
	default:
	}
}

func (r *procRunner) abandon() { r.once.Do(func() { close(r.stop) }) }
func (r *procRunner) detach()  { r.detachOnce.Do(func() { close(r.detached) }) }
func (r *procRunner) wait()    { <-r.done }

// abandoned reports whether the runner was abandoned or detached: it
// reports nothing more either way.
func (r *procRunner) abandoned() bool {
	select {
	case <-r.stop:
		return true
	case <-r.detached:
		return true
	default:
		return false
	}
}

// report delivers a status update unless the runner was abandoned.
func (r *procRunner) report(st mesos.TaskStatus, apply func(t *task)) bool {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.c.closed || r.abandoned() || r.t.runner != r {
		return false
	}
	if apply != nil {
		apply(r.t)
	}
	r.c.agentUpdate(r.t, st)
	return true
}

// procSpec is everything the runner goroutine needs, copied under the lock.
type procSpec struct {
	info       mesos.TaskInfo
	fwID       string
	agentID    string
	executorID string
	role       string
	user       string
	checkpoint bool
	sandbox    string
	volumes    []volumeLink
	endpoint   string
	grace      time.Duration
	// checkHost is the agent machine's own address, where its MESOS_HTTP
	// and MESOS_TCP checks connect (Mesos checks 127.0.0.1 of the task's
	// machine; with distinct hosts an agent's machine is its loopback
	// address).
	checkHost string
	// lostState is what an adopted task whose exit status is unknown ends
	// in: TASK_GONE for PARTITION_AWARE frameworks, else TASK_LOST.
	lostState mesos.TaskState
}

type volumeLink struct {
	containerPath string
	hostPath      string
}

// procSpecOf copies what a runner of t needs, with sandbox as its sandbox.
// Called with c.mu held.
func (c *Cluster) procSpecOf(t *task, sandbox string) procSpec {
	fw := c.frameworks[t.fwID]
	spec := procSpec{
		info:       t.info,
		fwID:       t.fwID,
		agentID:    t.agent.id,
		executorID: t.executorID,
		role:       t.role,
		user:       t.user,
		checkpoint: fw != nil && fw.checkpoint(),
		sandbox:    sandbox,
		endpoint:   c.Addr(),
		grace:      c.cfg.KillGracePeriod,
		checkHost:  "127.0.0.1",
		lostState:  fw.lostState(mesos.TASK_GONE),
	}
	if kp := t.info.KillPolicy; kp != nil && kp.GracePeriod != nil {
		spec.grace = time.Duration(kp.GracePeriod.Nanoseconds)
	}
	if ip := net.ParseIP(t.agent.hostname); ip != nil && ip.IsLoopback() {
		spec.checkHost = ip.String()
	}
	for i := range t.res {
		v := &t.res[i]
		if !isVolume(v) {
			continue
		}
		cp := v.GetDisk().GetVolume().GetContainerPath()
		if cp == "" {
			if tv := t.agent.res.totalOf(v); tv != nil {
				cp = tv.GetDisk().GetVolume().GetContainerPath()
			}
		}
		spec.volumes = append(spec.volumes, volumeLink{containerPath: cp, hostPath: c.volumePath(t.agent, v)})
	}
	return spec
}

func (c *Cluster) startProcTask(t *task) {
	spec := c.procSpecOf(t, c.sandboxPath(t))
	r := newProcRunner(c, t)
	t.runner = r
	t.sandbox = spec.sandbox
	t.containerID = newUUIDString()
	t.started = time.Now()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(r.done)
		r.run(spec)
	}()
}

func (r *procRunner) fail(reason mesos.TaskStatus_Reason, msg string) {
	st := mesos.TaskStatus{State: mesos.TASK_FAILED.Enum(), Message: proto.String(msg), Source: mesos.SOURCE_AGENT.Enum()}
	if reason != 0 {
		st.Reason = reason.Enum()
	}
	r.report(st, nil)
}

func (r *procRunner) run(s procSpec) {
	ti := &s.info
	if ct := ti.Container; ct != nil {
		switch {
		case ct.GetType() == mesos.ContainerInfo_DOCKER:
			r.fail(mesos.REASON_CONTAINER_LAUNCH_FAILED, "Failed to launch container: the DOCKER containerizer is unavailable: no Docker engine runs on this mesos-local agent (only the MESOS containerizer, which runs commands as local processes, is supported)")
			return
		case ct.GetMesos().GetImage() != nil:
			r.fail(mesos.REASON_CONTAINER_LAUNCH_FAILED, "Failed to launch container: container images are not supported by mesos-local (no image provisioner); run the command without an image")
			return
		}
	}
	if ti.Executor != nil {
		r.fail(mesos.REASON_CONTAINER_LAUNCH_FAILED, "Failed to launch executor: custom executors are not supported by mesos-local; use a command task or LAUNCH_GROUP with the DEFAULT executor")
		return
	}
	cred, err := taskCredential(s.user)
	if err != nil {
		r.fail(mesos.REASON_CONTAINER_LAUNCH_FAILED, err.Error())
		return
	}
	if err := prepareSandbox(s, cred); err != nil {
		r.fail(mesos.REASON_CONTAINER_LAUNCH_FAILED, "Failed to prepare the sandbox: "+err.Error())
		return
	}
	if err := checkReachable(cred, s.sandboxAndVolumes()...); err != nil {
		r.fail(mesos.REASON_CONTAINER_LAUNCH_FAILED, "Failed to prepare the sandbox: "+err.Error())
		return
	}
	if err := fetchURIs(ti.Command.URIs, s.sandbox, cred); err != nil {
		r.fail(mesos.REASON_CONTAINER_LAUNCH_FAILED, "Failed to fetch all URIs for container: "+err.Error())
		return
	}
	if !r.report(mesos.TaskStatus{State: mesos.TASK_STARTING.Enum()}, nil) {
		return
	}
	env, err := taskEnv(s, ti.Command)
	if err != nil {
		r.fail(mesos.REASON_CONTAINER_LAUNCH_FAILED, err.Error())
		return
	}
	cmd, err := buildCommand(ti.Command, s.sandbox, env, cred)
	if err != nil {
		r.fail(0, err.Error())
		return
	}
	stdout, err1 := os.OpenFile(filepath.Join(s.sandbox, "stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	stderr, err2 := os.OpenFile(filepath.Join(s.sandbox, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err := errors.Join(err1, err2); err != nil {
		r.fail(mesos.REASON_CONTAINER_LAUNCH_FAILED, "Failed to open sandbox output: "+err.Error())
		return
	}
	defer stdout.Close()
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if r.abandoned() {
		return
	}
	if err := cmd.Start(); err != nil {
		r.fail(0, "Failed to launch command: "+err.Error())
		return
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	// This goroutine outlives the runner when it is detached: it reaps the
	// process whenever it ends.
	go func() { exited <- cmd.Wait() }()
	startTime := procStartTime(pid)
	if !r.report(mesos.TaskStatus{State: mesos.TASK_RUNNING.Enum()}, func(t *task) { t.pid, t.pidStart = pid, startTime }) {
		if r.isDetached() {
			return
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
		return
	}
	r.supervise(s, env, cred, pid, exited, time.Now())
}

func (r *procRunner) isDetached() bool {
	select {
	case <-r.detached:
		return true
	default:
		return false
	}
}

// supervise watches the task's process (pid, the leader of its session and
// process group) until exited delivers its end, running its health checks
// and kills. launched is when it started (zero if unknown).
func (r *procRunner) supervise(s procSpec, env []string, cred *credential, pid int, exited <-chan error, launched time.Time) {
	ti := &s.info
	killGroup := func(sig syscall.Signal) { _ = syscall.Kill(-pid, sig) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	health := make(chan healthResult, 1)
	checksDone := make(chan struct{}) // closed when no health check runs any more
	if hc := ti.HealthCheck; hc != nil {
		go func() {
			defer close(checksDone)
			runHealthChecks(ctx, hc, s, env, cred, launched, health)
		}()
	} else {
		close(checksDone)
	}
	var (
		killed, killedByHealth bool
		killTimer              <-chan time.Time
	)
	startKill := func(grace time.Duration) {
		if killed {
			return
		}
		killed = true
		if grace <= 0 {
			killGroup(syscall.SIGKILL)
			return
		}
		killGroup(syscall.SIGTERM)
		killTimer = time.After(grace)
	}
	for {
		select {
		case err := <-exited:
			killGroup(syscall.SIGKILL) // leftovers of the process group
			cancel()
			// A check in flight is killed and reaped before the end is
			// reported: the framework may give the task's resources and
			// volume to another task as soon as it reads it (a Mesos agent
			// reports an executor's end once its container is destroyed).
			<-checksDone
			r.report(terminalStatus(err, killed, killedByHealth, s.lostState), nil)
			return
		case req := <-r.killCh:
			killedByHealth = killedByHealth || req.health
			startKill(req.grace)
		case <-killTimer:
			killGroup(syscall.SIGKILL)
		case <-r.stop:
			killGroup(syscall.SIGKILL)
			<-exited
			return
		case <-r.detached:
			return
		case h := <-health:
			if killed {
				continue
			}
			hv := h.healthy
			r.report(mesos.TaskStatus{State: mesos.TASK_RUNNING.Enum(), Healthy: &hv,
				Reason: mesos.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED.Enum(), Message: proto.String(h.message)}, nil)
			if h.kill {
				killedByHealth = true
				startKill(s.grace)
			}
		}
	}
}

// terminalStatus is the update for a task process that ended with waitErr
// (errExitUnknown for an adopted process: no status to read). lost is the
// state of a task that ended unkilled with an unknown status.
func terminalStatus(waitErr error, killed, byHealth bool, lost mesos.TaskState) mesos.TaskStatus {
	var ws syscall.WaitStatus
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		ws, _ = ee.Sys().(syscall.WaitStatus)
	}
	unknown := errors.Is(waitErr, errExitUnknown)
	var msg string
	switch {
	case unknown:
		msg = "Command ended; its exit status is unknown (" + waitErr.Error() + ")"
	case waitErr == nil:
		msg = "Command exited with status 0"
	case ws.Signaled():
		msg = "Command terminated with signal " + ws.Signal().String()
	case ws.Exited():
		msg = "Command exited with status " + strconv.Itoa(ws.ExitStatus())
	default:
		msg = "Command failed: " + waitErr.Error()
	}
	st := mesos.TaskStatus{Message: proto.String(msg)}
	switch {
	case killed:
		st.State = mesos.TASK_KILLED.Enum()
		if byHealth {
			st.Healthy = proto.Bool(false)
			st.Message = proto.String("Task killed because it failed its health check: " + msg)
		}
	case unknown:
		// As a Mesos agent whose executor terminated without a
		// checkpointed terminal update: GONE (or LOST), never FINISHED
		// or FAILED on a guess.
		st.State = lost.Enum()
		st.Reason = mesos.REASON_EXECUTOR_TERMINATED.Enum()
		st.Source = mesos.SOURCE_AGENT.Enum()
		st.Message = proto.String("Abnormal executor termination: " + msg)
	case waitErr == nil:
		st.State = mesos.TASK_FINISHED.Enum()
	default:
		st.State = mesos.TASK_FAILED.Enum()
	}
	return st
}

// credential is the identity a task runs as; nil means the agent's own.
type credential struct {
	uid, gid uint32
	groups   []uint32
	name     string
	home     string
}

// taskCredential resolves the task's user. When the agent is root it
// switches to that user; otherwise only its own user is possible.
func taskCredential(name string) (*credential, error) {
	if name == "" {
		return nil, nil
	}
	self, err := user.Current()
	if err == nil && self.Username == name {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		me := "uid " + strconv.Itoa(os.Geteuid())
		if err == nil {
			me = self.Username
		}
		return nil, fmt.Errorf("Cannot run the task as user %q: mesos-local runs as %q, not root, so it cannot switch users; set the task's user (FrameworkInfo.user or CommandInfo.user) to %q or leave it empty", name, me, me)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("Failed to get user information for %q: %v", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %q has a non-numeric uid/gid (%s/%s)", name, u.Uid, u.Gid)
	}
	cr := &credential{uid: uint32(uid), gid: uint32(gid), name: name, home: u.HomeDir}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				cr.groups = append(cr.groups, uint32(n))
			}
		}
	}
	return cr, nil
}

// sysProcAttr starts a process in a session of its own (so also its own
// process group): a task outlives mesos-local as a Mesos executor outlives
// its agent's restart, a terminal's signals to mesos-local do not reach
// it, and a signal to the group reaches everything it started.
func (cr *credential) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setsid: true}
	if cr != nil {
		attr.Credential = &syscall.Credential{Uid: cr.uid, Gid: cr.gid, Groups: cr.groups}
	}
	return attr
}

func (cr *credential) chown(path string) error {
	if cr == nil {
		return nil
	}
	return os.Lchown(path, int(cr.uid), int(cr.gid))
}

// sandboxAndVolumes lists the directories a task works in: its sandbox and
// the host paths of its persistent volumes.
func (s procSpec) sandboxAndVolumes() []string {
	dirs := []string{s.sandbox}
	for _, v := range s.volumes {
		dirs = append(dirs, v.hostPath)
	}
	return dirs
}

// prepareSandbox creates the sandbox and links persistent volumes into it,
// owned by the task's user (the filesystem/posix isolator).
func prepareSandbox(s procSpec, cr *credential) error {
	if err := os.MkdirAll(s.sandbox, 0o755); err != nil {
		return err
	}
	if err := cr.chown(s.sandbox); err != nil {
		return fmt.Errorf("chown sandbox to %s: %v", cr.name, err)
	}
	// As a Mesos agent: runs/latest links to the executor's newest run, so
	// /frameworks/<fw>/executors/<ex>/runs/latest names its sandbox.
	latest := filepath.Join(filepath.Dir(s.sandbox), latestRun)
	_ = os.Remove(latest)
	if err := os.Symlink(filepath.Base(s.sandbox), latest); err != nil {
		return fmt.Errorf("link %s: %v", latest, err)
	}
	for _, v := range s.volumes {
		if err := os.MkdirAll(v.hostPath, 0o755); err != nil {
			return fmt.Errorf("volume %s: %v", v.hostPath, err)
		}
		if err := cr.chown(v.hostPath); err != nil {
			return fmt.Errorf("chown volume %s to %s: %v", v.hostPath, cr.name, err)
		}
		if v.containerPath == "" || strings.Contains(v.containerPath, "/") {
			// As Mesos' posix isolator: only a plain name becomes a link.
			continue
		}
		link := filepath.Join(s.sandbox, v.containerPath)
		_ = os.Remove(link)
		if err := os.Symlink(v.hostPath, link); err != nil {
			return fmt.Errorf("link volume into sandbox at %s: %v", v.containerPath, err)
		}
		_ = cr.chown(link)
	}
	return nil
}

// taskEnv is the agent's environment, then the executor variables Mesos
// sets, then CommandInfo.environment, then MESOS_ALLOCATION_ROLE.
func taskEnv(s procSpec, cmd *mesos.CommandInfo) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			set(k, v)
		}
	}
	checkpoint := "0"
	if s.checkpoint {
		checkpoint = "1"
	}
	set("MESOS_FRAMEWORK_ID", s.fwID)
	set("MESOS_EXECUTOR_ID", s.executorID)
	set("MESOS_DIRECTORY", s.sandbox)
	set("MESOS_SANDBOX", s.sandbox)
	set("MESOS_SLAVE_ID", s.agentID)
	set("MESOS_AGENT_ID", s.agentID)
	set("MESOS_SLAVE_PID", "slave(1)@"+s.endpoint)
	set("MESOS_AGENT_ENDPOINT", s.endpoint)
	set("MESOS_CHECKPOINT", checkpoint)
	set("MESOS_HTTP_COMMAND_EXECUTOR", "0")
	set("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "5secs")
	if s.checkpoint {
		set("MESOS_RECOVERY_TIMEOUT", "15mins")
		set("MESOS_SUBSCRIPTION_BACKOFF_MAX", "2secs")
	}
	for i, v := range cmd.GetEnvironment().GetVariables() {
		if v.Name == "" {
			return nil, fmt.Errorf("command.environment.variables[%d].name must not be empty", i)
		}
		if v.GetType() == mesos.Environment_Variable_SECRET || v.Secret != nil {
			return nil, fmt.Errorf("command.environment.variables[%d] (%s): secrets are not supported by mesos-local", i, v.Name)
		}
		set(v.Name, v.GetValue())
	}
	set("MESOS_ALLOCATION_ROLE", s.role)
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

// buildCommand turns a CommandInfo into a process in its own group.
func buildCommand(ci *mesos.CommandInfo, dir string, env []string, cr *credential) (*exec.Cmd, error) {
	var cmd *exec.Cmd
	if ci.Shell == nil || *ci.Shell {
		cmd = exec.Command("/bin/sh", "-c", ci.GetValue())
	} else {
		path := ci.GetValue()
		if !strings.Contains(path, "/") {
			p, err := lookPathIn(path, env)
			if err != nil {
				return nil, fmt.Errorf("Failed to launch command %q: %v", path, err)
			}
			path = p
		}
		args := ci.Arguments
		if len(args) == 0 {
			args = []string{ci.GetValue()}
		}
		cmd = &exec.Cmd{Path: path, Args: append([]string(nil), args...)}
	}
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = cr.sysProcAttr()
	return cmd, nil
}

func lookPathIn(name string, env []string) (string, error) {
	path := os.Getenv("PATH")
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			path = kv[5:]
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("executable %q not found in PATH", name)
}

// fetchURIs is a small fetcher: http(s) downloads and local copies, with
// executable and tar extraction support.
func fetchURIs(uris []mesos.CommandInfo_URI, sandbox string, cr *credential) error {
	for _, u := range uris {
		name := u.GetOutputFile()
		if name == "" {
			name = filepath.Base(strings.TrimRight(strings.SplitN(u.Value, "?", 2)[0], "/"))
		}
		if name == "" || name == "." || name == "/" || strings.Contains(name, "..") {
			return fmt.Errorf("cannot derive a file name from URI %q", u.Value)
		}
		dst := filepath.Join(sandbox, name)
		if err := fetchOne(u.Value, dst); err != nil {
			return fmt.Errorf("%s: %v", u.Value, err)
		}
		mode := os.FileMode(0o644)
		if u.GetExecutable() {
			mode = 0o755
		}
		_ = os.Chmod(dst, mode)
		_ = cr.chown(dst)
		lower := strings.ToLower(name)
		if (u.Extract == nil || *u.Extract) && !u.GetExecutable() &&
			(strings.HasSuffix(lower, ".tar") || strings.HasSuffix(lower, ".tar.gz") || strings.HasSuffix(lower, ".tgz") || strings.HasSuffix(lower, ".tar.bz2") || strings.HasSuffix(lower, ".txz") || strings.HasSuffix(lower, ".tar.xz")) {
			out, err := exec.Command("tar", "-C", sandbox, "-xf", dst).CombinedOutput()
			if err != nil {
				return fmt.Errorf("extract %s: %v: %s", name, err, out)
			}
		}
	}
	return nil
}

func fetchOne(src, dst string) error {
	var in io.ReadCloser
	switch {
	case strings.HasPrefix(src, "http://"), strings.HasPrefix(src, "https://"):
		resp, err := http.Get(src)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("HTTP %s", resp.Status)
		}
		in = resp.Body
	case strings.HasPrefix(src, "file://"), strings.HasPrefix(src, "/"):
		f, err := os.Open(strings.TrimPrefix(src, "file://"))
		if err != nil {
			return err
		}
		in = f
	default:
		return errors.New("only http://, https://, file:// and absolute paths can be fetched by mesos-local")
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// procStartTime reads a process's start time (clock ticks since boot), to
// recognise it after a restart despite pid reuse.
func procStartTime(pid int) string {
	ps, _ := procInfo(pid)
	return ps.start
}

type healthResult struct {
	healthy bool
	kill    bool
	message string
}

func seconds(v *float64, def float64) time.Duration {
	if v != nil {
		def = *v
	}
	return time.Duration(def * float64(time.Second))
}

// runHealthChecks runs a Mesos-native health check with its default
// timings; it sends the first healthy result, every unhealthy one, and a
// kill once consecutive failures reach the limit.
func runHealthChecks(ctx context.Context, hc *mesos.HealthCheck, s procSpec, env []string, cr *credential, launched time.Time, out chan<- healthResult) {
	delay := seconds(hc.DelaySeconds, 15)
	interval := seconds(hc.IntervalSeconds, 10)
	timeout := seconds(hc.TimeoutSeconds, 20)
	grace := seconds(hc.GracePeriodSeconds, 10)
	maxFailures := uint32(3)
	if hc.ConsecutiveFailures != nil {
		maxFailures = *hc.ConsecutiveFailures
	}
	if interval <= 0 {
		interval = time.Second
	}
	send := func(h healthResult) bool {
		select {
		case out <- h:
			return true
		case <-ctx.Done():
			return false
		}
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	var failures uint32
	everHealthy, lastHealthy := false, false
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := checkOnce(ctx, hc, s, env, cr, timeout)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			if !lastHealthy {
				if !send(healthResult{healthy: true, message: "health check passed"}) {
					return
				}
			}
			everHealthy, lastHealthy = true, true
		} else if everHealthy || time.Since(launched) >= grace {
			failures++
			lastHealthy = false
			kill := maxFailures > 0 && failures >= maxFailures
			msg := fmt.Sprintf("health check failed %d time(s) in a row: %v", failures, err)
			if !send(healthResult{healthy: false, kill: kill, message: msg}) || kill {
				return
			}
		}
		timer.Reset(interval)
	}
}

func checkOnce(ctx context.Context, hc *mesos.HealthCheck, s procSpec, env []string, cr *credential, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch hc.Type {
	case mesos.HealthCheck_COMMAND:
		ci := hc.Command
		cenv := env
		if ci.Environment != nil {
			extra, err := taskEnv(s, ci)
			if err == nil {
				cenv = extra
			}
		}
		cmd, err := buildCommand(ci, s.sandbox, cenv, cr)
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("command: %v", err)
			}
			return nil
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return fmt.Errorf("command timed out after %v", timeout)
		}
	case mesos.HealthCheck_HTTP:
		scheme := hc.HTTP.GetScheme()
		if scheme == "" {
			scheme = "http"
		}
		path := hc.HTTP.GetPath()
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(s.checkHost, strconv.Itoa(int(hc.HTTP.Port))), path)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if len(hc.HTTP.Statuses) > 0 {
			for _, code := range hc.HTTP.Statuses {
				if int(code) == resp.StatusCode {
					return nil
				}
			}
			return fmt.Errorf("GET %s returned %d", url, resp.StatusCode)
		}
		if resp.StatusCode < 200 || resp.StatusCode > 399 {
			return fmt.Errorf("GET %s returned %d", url, resp.StatusCode)
		}
		return nil
	case mesos.HealthCheck_TCP:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(s.checkHost, strconv.Itoa(int(hc.TCP.Port))))
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return fmt.Errorf("unsupported health check type %v", hc.Type)
}
