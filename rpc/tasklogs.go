package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// A task's stdout and stderr live in its sandbox on the agent that ran it.
// Any server answers ReadTaskLog from its own copy of the state: the task
// record names the agent's HTTP endpoint and the sandbox path, and the
// server reads the file through the agent's files API (/files/read), which
// mesos-local and real Mesos agents serve alike. Nothing is forwarded to
// the leader.

// taskLogPoll is how often a followed log is read again for new output.
const taskLogPoll = 250 * time.Millisecond

// agentReadTimeout bounds one request to an agent's files API.
const agentReadTimeout = 30 * time.Second

// agentReadMax is the most one /files/read returns (16 pages in Mesos).
const agentReadMax = 64 << 10

// taskLogTarget is where a task's sandbox is.
type taskLogTarget struct {
	taskID, agentURL, sandbox string
}

// findTaskLog locates the sandbox of a task: the current task of an
// instance (by task or instance id) or the last failed task of one.
func (s *Server) findTaskLog(id string) (*taskLogTarget, error) {
	st := s.store().Snapshot()
	var t *v1.Task
	byTask, err := st.InstanceByTaskID(id)
	if err != nil {
		return nil, stateError(err)
	}
	byID, err := st.Instance(id)
	if err != nil {
		return nil, stateError(err)
	}
	switch {
	case byTask != nil:
		t = byTask.GetTask()
	case byID != nil:
		if t = byID.GetTask(); t == nil {
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("instance %s has not launched a task yet", id))
		}
	}
	if t != nil {
		return checkLogTarget(&taskLogTarget{taskID: t.GetId(), agentURL: t.GetAgentUrl(), sandbox: t.GetSandbox()})
	}
	insts, err := st.Instances()
	if err != nil {
		return nil, stateError(err)
	}
	for _, inst := range insts {
		if f := inst.GetLastFailure(); f.GetTaskId() == id {
			return checkLogTarget(&taskLogTarget{taskID: id, agentURL: f.GetAgentUrl(), sandbox: f.GetSandbox()})
		}
	}
	target, err := earlierTask(st.Instance, id)
	if err != nil {
		return nil, stateError(err)
	}
	if target != nil {
		return checkLogTarget(target)
	}
	return nil, notFound("no task or instance %s", id)
}

// earlierTask locates an earlier incarnation of an instance's task
// ("<instance>._app.<n>", n below the current one): its sandbox is named
// like the current task's, on the same agent as far as Berth knows (a
// resident instance never moves; if a stateless one did, the agent answers
// 404). Nil if id is no such task.
func earlierTask(instance func(string) (*v1.Instance, error), id string) (*taskLogTarget, error) {
	cut := strings.LastIndex(id, "._app.")
	if cut < 0 {
		return nil, nil
	}
	n, perr := strconv.ParseUint(id[cut+len("._app."):], 10, 32)
	inst, err := instance(id[:cut])
	if err != nil {
		return nil, err
	}
	if perr != nil || n == 0 || inst == nil || uint32(n) >= inst.GetIncarnation() {
		return nil, nil
	}
	cur := inst.GetTask()
	curPart := "/executors/" + cur.GetId() + "/"
	if cur.GetId() == "" || !strings.Contains(cur.GetSandbox(), curPart) {
		return nil, nil
	}
	return &taskLogTarget{taskID: id, agentURL: cur.GetAgentUrl(),
		sandbox: strings.Replace(cur.GetSandbox(), curPart, "/executors/"+id+"/", 1)}, nil
}

func checkLogTarget(t *taskLogTarget) (*taskLogTarget, error) {
	if t.sandbox == "" || t.agentURL == "" {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("task %s has no sandbox on record (it was launched by an older Berth)", t.taskID))
	}
	return t, nil
}

// taskRunning reports whether taskID is still an instance's current task
// and not in a terminal state.
func (s *Server) taskRunning(taskID string) bool {
	inst, err := s.store().Snapshot().InstanceByTaskID(taskID)
	return err == nil && inst != nil && !isTerminal(inst.GetTask().GetState())
}

// ReadTaskLog streams a task's stdout or stderr: first a message naming
// the task and file, then the file's content in chunks; with follow, what
// the task appends, until the task has ended and everything is sent.
func (t *taskService) ReadTaskLog(ctx context.Context, req *connect.Request[v1.ReadTaskLogRequest], stream *connect.ServerStream[v1.ReadTaskLogResponse]) error {
	msg := req.Msg
	if msg.TaskId == "" {
		return invalid("task_id", "must not be empty")
	}
	var file string
	switch msg.File {
	case v1.TaskLogFile_TASK_LOG_FILE_UNSPECIFIED, v1.TaskLogFile_TASK_LOG_FILE_STDOUT:
		file = "stdout"
	case v1.TaskLogFile_TASK_LOG_FILE_STDERR:
		file = "stderr"
	default:
		return invalid("file", fmt.Sprintf("unknown file %d (stdout or stderr)", msg.File))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.streams, cancel)
	defer stop()

	target, err := t.findTaskLog(msg.TaskId)
	if err != nil {
		return err
	}
	af := agentFiles{hc: t.httpClient, base: target.agentURL}
	path := target.sandbox + "/" + file
	if err := stream.Send(&v1.ReadTaskLogResponse{TaskId: target.taskID, Path: path}); err != nil {
		return err
	}
	started := false
	var offset int64
	for {
		// Whether the task still runs is read before the file: output
		// written before it ended is then all in the file.
		more := msg.Follow && t.taskRunning(target.taskID)
		if !started {
			size, err := af.size(ctx, path)
			switch {
			case err == nil:
				started = true
				if msg.Lines > 0 {
					if offset, err = af.tailStart(ctx, path, size, int(msg.Lines)); err != nil {
						return err
					}
				}
			case connect.CodeOf(err) == connect.CodeNotFound && more:
				// The sandbox is not there yet: the task is still starting.
			default:
				return err
			}
		}
		if started {
			next, err := af.copyFrom(ctx, path, offset, func(data []byte, at int64) error {
				return stream.Send(&v1.ReadTaskLogResponse{Data: data, Offset: at})
			})
			if err != nil {
				return err
			}
			offset = next
		}
		if !more {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(taskLogPoll):
		}
	}
}

// agentFiles reads files through a Mesos agent's files API.
type agentFiles struct {
	hc   *http.Client
	base string // "http://host:port"
}

// read is one /files/read call: up to length bytes (-1: to the end, as
// far as the agent's cap allows) from offset; offset -1 asks for the size.
func (a agentFiles) read(ctx context.Context, path string, offset, length int64) ([]byte, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, agentReadTimeout)
	defer cancel()
	q := url.Values{"path": {path}, "offset": {strconv.FormatInt(offset, 10)}, "length": {strconv.FormatInt(length, 10)}}
	u := strings.TrimRight(a.base, "/") + "/files/read?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("agent address %q: %w", a.base, err))
	}
	res, err := a.hc.Do(req)
	if err != nil {
		return nil, 0, connect.NewError(connect.CodeUnavailable, fmt.Errorf("cannot reach agent %s: %w", a.base, err))
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4*agentReadMax+1024))
	if err != nil {
		return nil, 0, connect.NewError(connect.CodeUnavailable, fmt.Errorf("read from agent %s: %w", a.base, err))
	}
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, 0, connect.NewError(connect.CodeNotFound,
			fmt.Errorf("%s not found on agent %s (the task never started, or its sandbox was garbage-collected)", path, a.base))
	default:
		return nil, 0, connect.NewError(connect.CodeUnavailable,
			fmt.Errorf("agent %s answered %s for %s: %s", a.base, res.Status, path, strings.TrimSpace(string(body))))
	}
	var fr struct {
		Data   string `json:"data"`
		Offset int64  `json:"offset"`
	}
	if err := json.Unmarshal(body, &fr); err != nil {
		return nil, 0, connect.NewError(connect.CodeUnavailable, fmt.Errorf("agent %s: not a files API reply: %w", a.base, err))
	}
	return []byte(fr.Data), fr.Offset, nil
}

// size returns a file's size (a read at offset -1).
func (a agentFiles) size(ctx context.Context, path string) (int64, error) {
	_, size, err := a.read(ctx, path, -1, -1)
	return size, err
}

// copyFrom hands the file from offset to its current end to send, chunk by
// chunk, and returns the offset after the last byte sent.
func (a agentFiles) copyFrom(ctx context.Context, path string, offset int64, send func([]byte, int64) error) (int64, error) {
	for {
		data, _, err := a.read(ctx, path, offset, -1)
		if err != nil {
			return offset, err
		}
		if len(data) == 0 {
			return offset, nil
		}
		if err := send(data, offset); err != nil {
			return offset, err
		}
		offset += int64(len(data))
	}
}

// tailStart returns the offset where the last `lines` lines of a file of
// the given size start, reading backwards from the end. A final newline
// ends the last line; it does not start another one.
func (a agentFiles) tailStart(ctx context.Context, path string, size int64, lines int) (int64, error) {
	end := size
	for end > 0 {
		from := max(0, end-agentReadMax)
		chunk, err := a.readRange(ctx, path, from, end)
		if err != nil {
			return 0, err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			at := from + int64(i)
			if chunk[i] != '\n' || at == size-1 {
				continue
			}
			if lines--; lines == 0 {
				return at + 1, nil
			}
		}
		end = from
	}
	return 0, nil
}

// readRange reads [from, to) of a file, in as many calls as the agent's cap
// needs; it stops early if the file is shorter.
func (a agentFiles) readRange(ctx context.Context, path string, from, to int64) ([]byte, error) {
	var out []byte
	for from < to {
		data, _, err := a.read(ctx, path, from, to-from)
		if err != nil {
			return nil, err
		}
		if len(data) == 0 {
			break
		}
		out = append(out, data...)
		from += int64(len(data))
	}
	return out, nil
}
