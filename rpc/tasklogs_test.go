package rpc_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// fakeAgent serves a Mesos agent's /files/read over in-memory files, with
// Mesos' semantics (offset -1 gives the size, 404 for a missing file) and
// a tiny read cap so that clients must loop.
type fakeAgent struct {
	srv   *httptest.Server
	mu    sync.Mutex
	files map[string]string
	cap   int
	reads int
}

func newFakeAgent(t *testing.T) *fakeAgent {
	a := &fakeAgent{files: map[string]string{}, cap: 7}
	a.srv = httptest.NewServer(http.HandlerFunc(a.read))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAgent) set(path, content string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.files[path] = content
}

func (a *fakeAgent) appendTo(path, more string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.files[path] += more
}

func (a *fakeAgent) read(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/files/read" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	parse := func(name string) int64 {
		if q.Get(name) == "" {
			return -1
		}
		n, err := strconv.ParseInt(q.Get(name), 10, 64)
		if err != nil {
			panic(err)
		}
		return n
	}
	offset, length := parse("offset"), parse("length")
	a.mu.Lock()
	a.reads++
	content, ok := a.files[q.Get("path")]
	a.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	res := map[string]any{"data": "", "offset": offset}
	switch {
	case offset == -1:
		res["offset"] = len(content)
	case offset < int64(len(content)):
		end := int64(len(content))
		if length >= 0 && offset+length < end {
			end = offset + length
		}
		end = min(end, offset+int64(a.cap))
		res["data"] = content[offset:end]
	}
	_ = json.NewEncoder(w).Encode(res)
}

// readLog reads a whole ReadTaskLog stream.
func readLog(t *testing.T, c clients, req *v1.ReadTaskLogRequest) (string, *v1.ReadTaskLogResponse, error) {
	t.Helper()
	stream, err := c.task.ReadTaskLog(ctxFor(t, 30*time.Second), connect.NewRequest(req))
	if err != nil {
		return "", nil, err
	}
	defer stream.Close()
	var out strings.Builder
	var first *v1.ReadTaskLogResponse
	for stream.Receive() {
		if first == nil {
			first = stream.Msg()
		}
		out.Write(stream.Msg().GetData())
	}
	return out.String(), first, stream.Err()
}

// A failed task's state, message and sandbox are in the task list, the
// app's lastTaskFailure is its newest instance failure, and its stdout and
// stderr are read through the agent's files API by any server, a follower
// included, by task id, instance id, or the id of the last failed task.
func TestTaskFailureVisibleAndLogs(t *testing.T) {
	servers := startCluster(t, 3, clusterOpts{})
	leader := waitLeader(t, servers)
	follower := clientsFor(followerOf(servers))
	ctx := ctxFor(t, 60*time.Second)
	agent := newFakeAgent(t)

	created, err := clientsFor(leader).app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id":"/crash","cmd":"exit 3","instances":0}`)}))
	if err != nil {
		t.Fatal(err)
	}
	ver := created.Msg.App.GetVersion()
	sandbox := func(task string) string { return "/frameworks/fw-1/executors/" + task + "/runs/latest" }
	earlier := timestamppb.New(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	later := timestamppb.New(time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC))
	failure := func(inst, task string, at *timestamppb.Timestamp) *v1.TaskFailure {
		return &v1.TaskFailure{AppId: "/crash", InstanceId: inst, TaskId: task, State: "TASK_FAILED",
			Reason: "REASON_COMMAND_EXECUTOR_FAILED", Message: "Command exited with status 3", Timestamp: at,
			Host: "127.0.0.1", Version: ver, AgentId: "agent-1", Sandbox: sandbox(task), AgentUrl: agent.srv.URL}
	}
	failed := &v1.Instance{
		Id: "crash.instance-1", AppId: "/crash", AppVersion: ver, Goal: v1.Goal_GOAL_RUNNING, Incarnation: 2,
		Task: &v1.Task{Id: "crash.instance-1._app.2", AgentId: "agent-1", Hostname: "127.0.0.1", State: "TASK_FAILED",
			Message: "Command exited with status 3", Reason: "REASON_COMMAND_EXECUTOR_FAILED", AppVersion: ver,
			Sandbox: sandbox("crash.instance-1._app.2"), AgentUrl: agent.srv.URL},
		LastFailure: failure("crash.instance-1", "crash.instance-1._app.2", later),
	}
	// A second instance failed earlier and runs again since.
	running := &v1.Instance{
		Id: "crash.instance-2", AppId: "/crash", AppVersion: ver, Goal: v1.Goal_GOAL_RUNNING, Incarnation: 5,
		Task: &v1.Task{Id: "crash.instance-2._app.5", AgentId: "agent-1", Hostname: "127.0.0.1", State: "TASK_RUNNING",
			Ports: []uint32{31005}, AppVersion: ver, Sandbox: sandbox("crash.instance-2._app.5"), AgentUrl: agent.srv.URL},
		LastFailure: failure("crash.instance-2", "crash.instance-2._app.4", earlier),
	}
	// A task launched by an older Berth has no sandbox on record.
	old := &v1.Instance{
		Id: "crash.instance-3", AppId: "/crash", AppVersion: ver, Goal: v1.Goal_GOAL_RUNNING, Incarnation: 1,
		Task: &v1.Task{Id: "crash.instance-3._app.1", AgentId: "agent-1", Hostname: "127.0.0.1", State: "TASK_RUNNING"},
	}
	applyDirect(t, leader, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{failed, running, old}})

	agent.set(sandbox("crash.instance-1._app.2")+"/stdout", "starting\nline 2\nline 3\nlast line\n")
	agent.set(sandbox("crash.instance-1._app.2")+"/stderr", "FATAL: database files are incompatible with server\n")
	agent.set(sandbox("crash.instance-2._app.4")+"/stderr", "earlier crash\n")
	agent.set(sandbox("crash.instance-1._app.1")+"/stdout", "first run\n")

	waitFor(t, 20*time.Second, "the follower to have the instances", func() error {
		res, err := follower.task.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{AppId: "/crash"}))
		if err != nil {
			return err
		}
		if len(res.Msg.Tasks) != 3 {
			return fmt.Errorf("%d tasks", len(res.Msg.Tasks))
		}
		return nil
	})

	// task list: state, message, sandbox.
	res, err := follower.task.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{AppId: "/crash"}))
	if err != nil {
		t.Fatal(err)
	}
	tv := res.Msg.Tasks[0]
	if tv.State != "TASK_FAILED" || tv.Message != "Command exited with status 3" || tv.Reason != "REASON_COMMAND_EXECUTOR_FAILED" ||
		tv.Sandbox != sandbox("crash.instance-1._app.2") || tv.AgentUrl != agent.srv.URL {
		t.Errorf("failed task view = %v", tv)
	}
	if tv := res.Msg.Tasks[1]; tv.State != "TASK_RUNNING" || len(tv.Ports) != 1 || tv.Ports[0] != 31005 {
		t.Errorf("running task view = %v", tv)
	}

	// app show and app list: the newest failure of the app's instances.
	got, err := follower.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/crash"}))
	if err != nil {
		t.Fatal(err)
	}
	if f := got.Msg.Summary.GetLastTaskFailure(); !proto.Equal(f, failed.LastFailure) {
		t.Errorf("lastTaskFailure = %v, want %v", f, failed.LastFailure)
	}
	if got.Msg.Summary.TasksRunning != 2 {
		t.Errorf("tasksRunning = %d, want 2", got.Msg.Summary.TasksRunning)
	}
	list, err := follower.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.Summaries) != 1 || !proto.Equal(list.Msg.Summaries[0].GetLastTaskFailure(), failed.LastFailure) {
		t.Errorf("list summaries = %v", list.Msg.Summaries)
	}

	// task logs, through the follower.
	stderr := v1.TaskLogFile_TASK_LOG_FILE_STDERR
	cases := []struct {
		name string
		req  *v1.ReadTaskLogRequest
		want string
	}{
		{"stderr by task id", &v1.ReadTaskLogRequest{TaskId: "crash.instance-1._app.2", File: stderr}, "FATAL: database files are incompatible with server\n"},
		{"stdout by default", &v1.ReadTaskLogRequest{TaskId: "crash.instance-1._app.2"}, "starting\nline 2\nline 3\nlast line\n"},
		{"last two lines", &v1.ReadTaskLogRequest{TaskId: "crash.instance-1._app.2", Lines: 2}, "line 3\nlast line\n"},
		{"more lines than the file", &v1.ReadTaskLogRequest{TaskId: "crash.instance-1._app.2", Lines: 50}, "starting\nline 2\nline 3\nlast line\n"},
		{"by instance id", &v1.ReadTaskLogRequest{TaskId: "crash.instance-1", File: stderr}, "FATAL: database files are incompatible with server\n"},
		{"last failed task of a relaunched instance", &v1.ReadTaskLogRequest{TaskId: "crash.instance-2._app.4", File: stderr}, "earlier crash\n"},
		{"an earlier task of an instance", &v1.ReadTaskLogRequest{TaskId: "crash.instance-1._app.1"}, "first run\n"},
	}
	for _, tc := range cases {
		out, first, err := readLog(t, follower, tc.req)
		if err != nil || out != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, out, err, tc.want)
			continue
		}
		if first.GetTaskId() == "" || !strings.HasSuffix(first.GetPath(), "/"+map[bool]string{true: "stderr", false: "stdout"}[tc.req.File == stderr]) {
			t.Errorf("%s: first message %v does not name the task and file", tc.name, first)
		}
	}

	errCases := []struct {
		name string
		req  *v1.ReadTaskLogRequest
		code connect.Code
		msg  string
	}{
		{"no id", &v1.ReadTaskLogRequest{}, connect.CodeInvalidArgument, "task_id"},
		{"unknown file", &v1.ReadTaskLogRequest{TaskId: "crash.instance-1", File: 7}, connect.CodeInvalidArgument, "file"},
		{"unknown task", &v1.ReadTaskLogRequest{TaskId: "crash.instance-9._app.1"}, connect.CodeNotFound, "crash.instance-9._app.1"},
		{"a future task", &v1.ReadTaskLogRequest{TaskId: "crash.instance-1._app.3"}, connect.CodeNotFound, "crash.instance-1._app.3"},
		{"an earlier task whose sandbox is gone", &v1.ReadTaskLogRequest{TaskId: "crash.instance-2._app.1"}, connect.CodeNotFound, "not found on agent"},
		{"missing file", &v1.ReadTaskLogRequest{TaskId: "crash.instance-2"}, connect.CodeNotFound, "not found on agent"},
		{"no sandbox on record", &v1.ReadTaskLogRequest{TaskId: "crash.instance-3"}, connect.CodeFailedPrecondition, "no sandbox"},
	}
	for _, tc := range errCases {
		_, _, err := readLog(t, follower, tc.req)
		if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err %v, want %v mentioning %q", tc.name, err, tc.code, tc.msg)
		}
	}

	// An agent that cannot be reached.
	agent.srv.Close()
	if _, _, err := readLog(t, follower, &v1.ReadTaskLogRequest{TaskId: "crash.instance-1"}); connect.CodeOf(err) != connect.CodeUnavailable ||
		!strings.Contains(err.Error(), "cannot reach agent") {
		t.Errorf("unreachable agent: %v", err)
	}
}

// Following a running task's output sends what it appends, and the stream
// ends once the task has ended and the rest of its output is sent.
func TestReadTaskLogFollow(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 60*time.Second)
	agent := newFakeAgent(t)
	const task = "tail.instance-1._app.1"
	path := "/frameworks/fw-1/executors/" + task + "/runs/latest/stdout"
	inst := &v1.Instance{
		Id: "tail.instance-1", AppId: "/tail", Goal: v1.Goal_GOAL_RUNNING, Incarnation: 1,
		Task: &v1.Task{Id: task, AgentId: "agent-1", Hostname: "127.0.0.1", State: "TASK_STAGING",
			Sandbox: "/frameworks/fw-1/executors/" + task + "/runs/latest", AgentUrl: agent.srv.URL},
	}
	applyDirect(t, s, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{inst}})

	// The sandbox does not exist yet: following waits for it.
	stream, err := c.task.ReadTaskLog(ctx, connect.NewRequest(&v1.ReadTaskLogRequest{TaskId: task, Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var mu sync.Mutex
	var got strings.Builder
	done := make(chan error, 1)
	go func() {
		for stream.Receive() {
			mu.Lock()
			got.Write(stream.Msg().GetData())
			mu.Unlock()
		}
		done <- stream.Err()
	}()
	waitGot := func(want string) {
		t.Helper()
		waitFor(t, 20*time.Second, "followed output "+strconv.Quote(want), func() error {
			mu.Lock()
			defer mu.Unlock()
			if got.String() != want {
				return fmt.Errorf("have %q", got.String())
			}
			return nil
		})
	}
	agent.set(path, "first line, longer than one read\n")
	waitGot("first line, longer than one read\n")
	agent.appendTo(path, "second\n")
	waitGot("first line, longer than one read\nsecond\n")

	// The task writes its last words and fails: the stream sends them and ends.
	agent.appendTo(path, "last words\n")
	cur := proto.Clone(inst).(*v1.Instance)
	cur.ModifyIndex = fsm.NewTestReader(t, s.fsm.State).Instance(inst.Id).GetModifyIndex()
	cur.Task.State = "TASK_FAILED"
	applyDirect(t, s, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{cur}})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("follow ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("follow did not end after the task ended")
	}
	if want := "first line, longer than one read\nsecond\nlast words\n"; got.String() != want {
		t.Fatalf("followed %q, want %q", got.String(), want)
	}
}
