package scheduler

import (
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// defaultAgentPort is where a Mesos agent serves HTTP when an offer does
// not say (masters before 1.0 sent no Offer.url).
const defaultAgentPort = 5051

// sandboxPath is a command task's sandbox as every Mesos agent's files API
// names it: the executor of a command task has the task's id, and the
// agent keeps runs/latest pointing at its newest run.
func sandboxPath(frameworkID, taskID string) string {
	if frameworkID == "" || taskID == "" {
		return ""
	}
	return "/frameworks/" + frameworkID + "/executors/" + taskID + "/runs/latest"
}

// agentURL is the HTTP endpoint of the agent that made an offer, from the
// offer's url (the agent's ip, else hostname, and port), else the offer's
// hostname on the default agent port.
func agentURL(o *mesos.Offer) string {
	host, port := o.GetHostname(), int32(defaultAgentPort)
	if u := o.GetURL(); u != nil {
		if ip := u.Address.GetIP(); ip != "" {
			host = ip
		} else if h := u.Address.GetHostname(); h != "" {
			host = h
		}
		if u.Address.Port > 0 {
			port = u.Address.Port
		}
	}
	if host == "" {
		return ""
	}
	scheme := "http"
	if u := o.GetURL(); u != nil && u.Scheme != "" {
		scheme = u.Scheme
	}
	return (&url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(int(port)))}).String()
}

// recordFailure keeps a task's unexpected end on its instance (Marathon's
// lastTaskFailure): it is committed with the plan that processes the
// status, so it survives a leader failover, and reported in the decision
// so the leader logs it once, after the commit. Its time is the status'
// own (when the agent saw the task end), else the decision's.
func (p *planner) recordFailure(e *v1.Instance, a *v1.App, s mesos.TaskStatus, healthKill bool) {
	t := e.GetTask()
	at := p.ts()
	if secs := s.GetTimestamp(); secs > 0 {
		at = timestamppb.New(time.Unix(0, int64(secs*float64(time.Second))))
	}
	f := &v1.TaskFailure{
		AppId:      e.GetAppId(),
		InstanceId: e.GetId(),
		TaskId:     t.GetId(),
		State:      t.GetState(),
		Reason:     t.GetReason(),
		Message:    t.GetMessage(),
		Timestamp:  at,
		Host:       t.GetHostname(),
		Version:    t.GetAppVersion(),
		AgentId:    t.GetAgentId(),
		Sandbox:    t.GetSandbox(),
		AgentUrl:   t.GetAgentUrl(),
	}
	if healthKill {
		// Berth's own health checks killed it: say so, Mesos only saw a kill.
		f.Message = strings.TrimSuffix("killed after failing its health checks: "+f.Message, ": ")
	}
	if f.Version == "" {
		f.Version = a.GetVersion()
	}
	e.LastFailure = f
	p.failures = append(p.failures, f)
}

// LogTaskFailure writes the one log line of a task failure.
func LogTaskFailure(log *slog.Logger, f *v1.TaskFailure) {
	log.Warn("task failed",
		"app", f.GetAppId(), "instance", f.GetInstanceId(), "task", f.GetTaskId(),
		"state", f.GetState(), "reason", f.GetReason(), "message", f.GetMessage(),
		"host", f.GetHost(), "sandbox", f.GetSandbox(), "agent", f.GetAgentUrl())
}
