package appmodel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Field is one extra key of an app object (e.g. Marathon's embedded
// "tasks"), with its value already encoded as JSON.
type Field struct {
	Key   string
	Value json.RawMessage
}

// AppInfoJSON renders an app as Marathon's /v2/apps does (its AppInfo): the
// app definition in Marathon's forms (Render), then its counters
// (tasksStaged, tasksRunning, tasksHealthy, tasksUnhealthy), its running
// deployments as [{"id": ...}], its lastTaskFailure if a task failed, and
// then extra, all inside the app object. The CLI's -o json and the /v2 REST
// API both use it, so they print the same object.
//
// versionInfo's times are written as Marathon writes times (milliseconds,
// see Timestamp); version stays whole, as the key of the stored version.
func AppInfoJSON(a *v1.App, s *v1.AppSummary, extra ...Field) ([]byte, error) {
	if vi := a.GetVersionInfo(); vi != nil {
		a = proto.Clone(a).(*v1.App)
		a.VersionInfo = &v1.VersionInfo{LastScalingAt: marathonTime(vi.GetLastScalingAt()), LastConfigChangeAt: marathonTime(vi.GetLastConfigChangeAt())}
	}
	b, err := Render(a)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimRight(b, " \n")
	if len(b) < 2 || b[len(b)-1] != '}' {
		return nil, fmt.Errorf("app JSON is not an object: %.40q", b)
	}
	b = b[:len(b)-1]
	empty := len(bytes.TrimSpace(b)) == 1 // just "{"
	add := func(key string, raw []byte) {
		if !empty {
			b = append(b, ',')
		}
		empty = false
		b = fmt.Appendf(b, "%q:", key)
		b = append(b, raw...)
	}
	for _, kv := range []struct {
		key string
		n   int32
	}{
		{"tasksStaged", s.GetTasksStaged()},
		{"tasksRunning", s.GetTasksRunning()},
		{"tasksHealthy", s.GetTasksHealthy()},
		{"tasksUnhealthy", s.GetTasksUnhealthy()},
	} {
		add(kv.key, []byte(strconv.Itoa(int(kv.n))))
	}
	deployments := []map[string]string{}
	for _, id := range s.GetDeployments() {
		deployments = append(deployments, map[string]string{"id": id})
	}
	raw, err := json.Marshal(deployments)
	if err != nil {
		return nil, err
	}
	add("deployments", raw)
	if f := s.GetLastTaskFailure(); f != nil {
		raw, err := json.Marshal(marathonTaskFailure(f))
		if err != nil {
			return nil, err
		}
		add("lastTaskFailure", raw)
	}
	for _, f := range extra {
		add(f.Key, f.Value)
	}
	return append(b, '}'), nil
}

// taskFailure is Marathon's lastTaskFailure object (the keys clients
// such as python-marathon accept, and no others).
type taskFailure struct {
	AppID     string `json:"appId"`
	Host      string `json:"host"`
	Message   string `json:"message"`
	State     string `json:"state"`
	TaskID    string `json:"taskId"`
	Timestamp string `json:"timestamp"`
	Version   string `json:"version"`
	SlaveID   string `json:"slaveId,omitempty"`
}

func marathonTaskFailure(f *v1.TaskFailure) taskFailure {
	return taskFailure{
		AppID: f.GetAppId(), Host: f.GetHost(), Message: f.GetMessage(), State: f.GetState(),
		TaskID: f.GetTaskId(), Timestamp: Timestamp(f.GetTimestamp()), Version: f.GetVersion(), SlaveID: f.GetAgentId(),
	}
}

// marathonTime rewrites an RFC 3339 time in Marathon's form; other text
// stays as it is.
func marathonTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return Timestamp(timestamppb.New(t))
}

// Timestamp formats a time as Marathon does (ISO 8601 UTC with
// milliseconds, e.g. 2015-09-30T09:09:17.614Z); "" for nil.
func Timestamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.000Z")
}
