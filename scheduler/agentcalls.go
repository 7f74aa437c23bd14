package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	agentapi "github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/master"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The leader's side of online copies (online.go): it finds the agent of a
// RUNNING nested copy through the master (GET_AGENTS), sends it
// LAUNCH_CONTAINER and WAIT_CONTAINER over the agent's v1 operator API
// (POST http://<agent>:<port>/api/v1, with the framework's TLS and
// credentials) and reports the outcome to the core as a NestedCopyResult.

// AgentClient calls agents' v1 operator API.
type AgentClient struct {
	op        *OperatorClient
	hc        *http.Client
	scheme    string
	principal string
	secret    string
}

// NewAgentClient returns a client for the agents of cfg's master.
func NewAgentClient(cfg Config) (*AgentClient, error) {
	op, err := NewOperatorClient(cfg)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if cfg.MesosTLS != nil {
		scheme = "https"
	}
	// No client timeout: WAIT_CONTAINER lasts as long as the copy; calls
	// are bounded by their contexts.
	return &AgentClient{op: op, hc: &http.Client{Transport: mesosTransport(cfg)}, scheme: scheme, principal: cfg.Principal, secret: cfg.Secret}, nil
}

// AgentError is a call an agent refused: its HTTP status and message.
type AgentError struct {
	Call    agentapi.Call_Type
	Status  int
	Message string
}

func (e *AgentError) Error() string {
	return fmt.Sprintf("mesos agent refused %v: HTTP %d: %s", e.Call, e.Status, e.Message)
}

// notFound is true for an agent's 404: an unknown container (or parent).
func notFound(err error) bool {
	var ae *AgentError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// AgentURL returns an agent's base URL ("http://ip:port") from the master.
func (c *AgentClient) AgentURL(ctx context.Context, agentID string) (string, error) {
	res, err := c.op.Call(ctx, &master.Call{Type: master.Call_GET_AGENTS})
	if err != nil {
		return "", err
	}
	for _, a := range res.GetGetAgents().GetAgents() {
		if a.AgentInfo.GetID().GetValue() != agentID {
			continue
		}
		// The PID ("slave(1)@ip:port") has the address the agent binds.
		if _, addr, ok := strings.Cut(a.GetPID(), "@"); ok {
			if _, _, err := net.SplitHostPort(addr); err == nil {
				return c.scheme + "://" + addr, nil
			}
		}
		return c.scheme + "://" + net.JoinHostPort(a.AgentInfo.Hostname, strconv.Itoa(int(a.AgentInfo.GetPort()))), nil
	}
	return "", fmt.Errorf("agent %s is not registered with the master", agentID)
}

// Call sends one call to the agent at base and decodes its response.
func (c *AgentClient) Call(ctx context.Context, base string, call *agentapi.Call) (*agentapi.Response, int, error) {
	b, status, err := postCall(ctx, c.hc, base+"/api/v1", c.principal, c.secret, call, call.Type)
	if err != nil {
		return nil, status, err
	}
	if status/100 != 2 {
		return nil, status, &AgentError{Call: call.Type, Status: status, Message: strings.TrimSpace(string(b))}
	}
	out := &agentapi.Response{}
	if len(b) > 0 {
		if err := proto.Unmarshal(b, out); err != nil {
			return nil, status, fmt.Errorf("%v to %s: decode response: %w", call.Type, base, err)
		}
	}
	return out, status, nil
}

// ManifestCheck says whether a backup's manifest is on its target.
type ManifestCheck func(ctx context.Context, b *v1.Backup) (bool, error)

// nestedCopier follows the RUNNING nested copies the core committed: one
// goroutine each, started by sync and stopped when the record is no
// longer RUNNING (or the leader steps down).
type nestedCopier struct {
	ctx      context.Context
	client   *AgentClient
	manifest ManifestCheck
	log      *slog.Logger
	results  chan NestedCopyResult
	// retry is the first delay between attempts to reach an agent; give
	// up is how long an agent may stay unreachable before the target
	// alone decides the outcome.
	retry, giveUp time.Duration

	mu       sync.Mutex
	running  map[string]context.CancelFunc // by backup id
	stopping atomic.Bool                   // the leader steps down: leave the copies running
	wg       sync.WaitGroup
}

func newNestedCopier(ctx context.Context, client *AgentClient, manifest ManifestCheck, log *slog.Logger) *nestedCopier {
	return &nestedCopier{ctx: ctx, client: client, manifest: manifest, log: log, results: make(chan NestedCopyResult, 16),
		retry: time.Second, giveUp: 5 * time.Minute, running: map[string]context.CancelFunc{}}
}

// sync starts following new targets and stops following those gone.
func (n *nestedCopier) sync(targets []NestedCopyTarget) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	want := map[string]bool{}
	for _, t := range targets {
		want[t.BackupID] = true
		if _, ok := n.running[t.BackupID]; ok || n.ctx.Err() != nil {
			continue
		}
		ctx, cancel := context.WithCancel(n.ctx)
		n.running[t.BackupID] = cancel
		n.wg.Add(1)
		go func(t NestedCopyTarget) {
			defer n.wg.Done()
			n.follow(ctx, t)
		}(t)
	}
	for id, cancel := range n.running {
		if !want[id] {
			cancel()
			delete(n.running, id)
		}
	}
}

// wait stops following every copy and waits for the goroutines.
func (n *nestedCopier) wait() {
	if n == nil {
		return
	}
	n.stopping.Store(true)
	n.mu.Lock()
	for id, cancel := range n.running {
		cancel()
		delete(n.running, id)
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// follow launches (again) and waits for one nested copy until it has an
// outcome, then reports it. Cancelled before (the record ended otherwise),
// it kills the container: nothing is left copying that no record owns.
func (n *nestedCopier) follow(ctx context.Context, t NestedCopyTarget) {
	delay := n.retry
	var unreachableSince time.Time
	for {
		res, err := n.attempt(ctx, t)
		if ctx.Err() != nil {
			if n.ctx.Err() == nil && !n.stopping.Load() {
				n.kill(t)
			}
			return
		}
		if err == nil {
			select {
			case n.results <- res:
			case <-ctx.Done():
			}
			return
		}
		if unreachableSince.IsZero() {
			unreachableSince = time.Now()
		}
		if time.Since(unreachableSince) > n.giveUp {
			res = n.decideByTarget(ctx, t, fmt.Sprintf("agent %s unreachable for %s (%v)", t.AgentID, n.giveUp, err))
			select {
			case n.results <- res:
			case <-ctx.Done():
			}
			return
		}
		n.log.Warn("online copy: agent call failed; retrying", "backup_id", t.BackupID, "agent_id", t.AgentID, "err", err, "in", delay)
		select {
		case <-ctx.Done():
			continue // reported by the check at the top of the loop
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// attempt is one LAUNCH_CONTAINER + WAIT_CONTAINER. An error means "try
// again" (the agent could not be reached or answered 5xx).
func (n *nestedCopier) attempt(ctx context.Context, t NestedCopyTarget) (NestedCopyResult, error) {
	base, err := n.client.AgentURL(ctx, t.AgentID)
	if err != nil {
		return NestedCopyResult{}, err
	}
	launch := &agentapi.Call{Type: agentapi.Call_LAUNCH_CONTAINER, LaunchContainer: &agentapi.Call_LaunchContainer{
		ContainerID: t.ContainerID, Command: t.Command}}
	if _, _, err := n.client.Call(ctx, base, launch); err != nil {
		if notFound(err) {
			// The task's container is gone: so is any copy that ran in it.
			return n.decideByTarget(ctx, t, "the task ended before the copy was done"), nil
		}
		if permanent(err) {
			return NestedCopyResult{BackupID: t.BackupID, ContainerID: t.ContainerID.Value, Message: err.Error()}, nil
		}
		return NestedCopyResult{}, err
	}
	wait := &agentapi.Call{Type: agentapi.Call_WAIT_CONTAINER, WaitContainer: &agentapi.Call_WaitContainer{ContainerID: t.ContainerID}}
	res, _, err := n.client.Call(ctx, base, wait)
	if err != nil {
		if notFound(err) {
			return n.decideByTarget(ctx, t, "the copy's container is gone (its task ended)"), nil
		}
		return NestedCopyResult{}, err
	}
	w := res.GetWaitContainer()
	if ws := syscall.WaitStatus(w.GetExitStatus()); w.ExitStatus == nil || ws.Signaled() || ws.ExitStatus() != 0 {
		why := "the copy " + exitText(w)
		if w.GetState() == mesos.TASK_KILLED {
			why = "the copy was killed (its task ended, or the copy was aborted)"
		}
		return NestedCopyResult{BackupID: t.BackupID, ContainerID: t.ContainerID.Value, Message: why}, nil
	}
	return n.decideByTarget(ctx, t, "the copy exited 0 but wrote no manifest"), nil
}

// permanent is true for an agent's refusal that a repeat cannot change.
func permanent(err error) bool {
	var ae *AgentError
	return errors.As(err, &ae) && ae.Status/100 == 4
}

func exitText(w *agentapi.Response_WaitContainer) string {
	if w.ExitStatus == nil {
		return "ended without an exit status: " + w.GetMessage()
	}
	ws := syscall.WaitStatus(w.GetExitStatus())
	msg := "exited with status " + strconv.Itoa(ws.ExitStatus())
	if ws.Signaled() {
		msg = "was terminated by signal " + ws.Signal().String()
	}
	if w.GetMessage() != "" {
		msg += " (" + w.GetMessage() + ")"
	}
	return msg + "; see its stderr in the task's sandbox under containers/"
}

// decideByTarget decides a copy whose container's outcome is not known
// (or that claims success) by its target: SUCCEEDED only if its manifest
// is there, never otherwise.
func (n *nestedCopier) decideByTarget(ctx context.Context, t NestedCopyTarget, why string) NestedCopyResult {
	res := NestedCopyResult{BackupID: t.BackupID, ContainerID: t.ContainerID.Value, Message: why}
	if n.manifest == nil {
		res.Message += "; the leader cannot read the backup target to check for a manifest"
		return res
	}
	ok, err := n.manifest(ctx, t.Record)
	if err != nil {
		res.Message += fmt.Sprintf("; the manifest could not be checked: %v", err)
		return res
	}
	res.Succeeded = ok
	return res
}

// kill sends KILL_CONTAINER for an abandoned copy (best effort).
func (n *nestedCopier) kill(t NestedCopyTarget) {
	ctx, cancel := context.WithTimeout(context.Background(), operatorTimeout)
	defer cancel()
	base, err := n.client.AgentURL(ctx, t.AgentID)
	if err == nil {
		_, _, err = n.client.Call(ctx, base, &agentapi.Call{Type: agentapi.Call_KILL_CONTAINER,
			KillContainer: &agentapi.Call_KillContainer{ContainerID: t.ContainerID}})
	}
	if err != nil && !notFound(err) {
		n.log.Warn("online copy: could not kill an abandoned copy", "backup_id", t.BackupID, "err", err)
	}
}

// nestedCopier returns the leader's nested copier, nil (no online copies
// followed, logged) when no agent client can be made.
func (s *Scheduler) nestedCopier(ctx context.Context) *nestedCopier {
	c, err := NewAgentClient(s.cfg)
	if err != nil {
		s.log.Warn("online copies: no agent client; online backups and live copies stay RUNNING until a leader has one", "err", err)
		return nil
	}
	return newNestedCopier(ctx, c, s.cfg.BackupManifest, s.log)
}

// resultsChan is where outcomes arrive (nil, never ready, without a copier).
func (n *nestedCopier) resultsChan() <-chan NestedCopyResult {
	if n == nil {
		return nil
	}
	return n.results
}
