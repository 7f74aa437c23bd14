package scheduler

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	agentapi "github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/master"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// fakeAgentAPI is a master answering GET_AGENTS with one agent, and that
// agent's v1 API with scripted answers per container id.
type fakeAgentAPI struct {
	mu       sync.Mutex
	launches map[string]int // LAUNCH_CONTAINER calls by container id
	kills    map[string]int
	// launch and wait answer for a container id: an HTTP status and, for a
	// 200 WAIT, an exit status.
	launch map[string]int
	wait   map[string]int
	exit   map[string]int32
	// block makes WAIT hang until the request is cancelled.
	block map[string]bool
}

func newFakeAgentAPI(t *testing.T) (*fakeAgentAPI, Config) {
	f := &fakeAgentAPI{launches: map[string]int{}, kills: map[string]int{}, launch: map[string]int{}, wait: map[string]int{},
		exit: map[string]int32{}, block: map[string]bool{}}
	agentSrv := httptest.NewServer(http.HandlerFunc(f.agent))
	t.Cleanup(agentSrv.Close)
	masterSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var call master.Call
		if err := proto.Unmarshal(body, &call); err != nil || call.Type != master.Call_GET_AGENTS {
			http.Error(w, "unexpected call", http.StatusBadRequest)
			return
		}
		b, _ := proto.Marshal(&master.Response{Type: master.Response_GET_AGENTS, GetAgents: &master.Response_GetAgents{
			Agents: []master.Response_GetAgents_Agent{{AgentInfo: mesos.AgentInfo{ID: &mesos.AgentID{Value: "A1"}, Hostname: "nowhere.invalid"},
				PID: proto.String("slave(1)@" + strings.TrimPrefix(agentSrv.URL, "http://"))}}}})
		w.Write(b)
	}))
	t.Cleanup(masterSrv.Close)
	return f, Config{MesosMaster: masterSrv.URL}
}

func (f *fakeAgentAPI) agent(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var call agentapi.Call
	if err := proto.Unmarshal(body, &call); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	switch call.Type {
	case agentapi.Call_LAUNCH_CONTAINER:
		id := call.LaunchContainer.ContainerID.Value
		f.launches[id]++
		code := f.launch[id]
		f.mu.Unlock()
		w.WriteHeader(code)
	case agentapi.Call_WAIT_CONTAINER:
		id := call.WaitContainer.ContainerID.Value
		code, exit, block := f.wait[id], f.exit[id], f.block[id]
		f.mu.Unlock()
		if block {
			<-r.Context().Done()
			return
		}
		if code != http.StatusOK {
			http.Error(w, "Container "+id+" cannot be found", code)
			return
		}
		b, _ := proto.Marshal(&agentapi.Response{Type: agentapi.Response_WAIT_CONTAINER, WaitContainer: &agentapi.Response_WaitContainer{ExitStatus: &exit}})
		w.Write(b)
	case agentapi.Call_KILL_CONTAINER:
		f.kills[call.KillContainer.ContainerID.Value]++
		f.mu.Unlock()
	default:
		f.mu.Unlock()
		http.Error(w, "unexpected", http.StatusNotImplemented)
	}
}

func (f *fakeAgentAPI) set(id string, launch, wait int, exit int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.launch[id], f.wait[id], f.exit[id] = launch, wait, exit
}

// The nested copier decides each copy from the agent's answers, and the
// target when the container's outcome is lost: a copy is never reported
// as succeeded without its manifest.
func TestNestedCopierOutcomes(t *testing.T) {
	f, cfg := newFakeAgentAPI(t)
	client, err := NewAgentClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	manifests := map[string]bool{"ok": true, "gone-done": true}
	check := func(_ context.Context, b *v1.Backup) (bool, error) { return manifests[b.GetId()], nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := newNestedCopier(ctx, client, check, slog.New(slog.NewTextHandler(io.Discard, nil)))
	n.retry = time.Millisecond

	f.set("ok", http.StatusOK, http.StatusOK, 0)
	f.set("again", http.StatusAccepted, http.StatusOK, 0) // launched by a previous leader; no manifest
	f.set("failed", http.StatusOK, http.StatusOK, 2<<8)
	f.set("gone-done", http.StatusNotFound, http.StatusNotFound, 0)
	f.set("gone-lost", http.StatusOK, http.StatusNotFound, 0)
	f.set("refused", http.StatusBadRequest, http.StatusOK, 0)
	var targets []NestedCopyTarget
	for _, id := range []string{"ok", "again", "failed", "gone-done", "gone-lost", "refused"} {
		targets = append(targets, NestedCopyTarget{BackupID: id, AgentID: "A1", Record: &v1.Backup{Id: id},
			ContainerID: mesos.ContainerID{Value: id, Parent: &mesos.ContainerID{Value: "task"}}, Command: &mesos.CommandInfo{Value: proto.String("true")}})
	}
	n.sync(targets)
	got := map[string]NestedCopyResult{}
	for len(got) < len(targets) {
		select {
		case r := <-n.results:
			got[r.BackupID] = r
		case <-time.After(30 * time.Second):
			t.Fatalf("results so far %v", got)
		}
	}
	want := map[string]bool{"ok": true, "again": false, "failed": false, "gone-done": true, "gone-lost": false, "refused": false}
	for id, ok := range want {
		if r := got[id]; r.Succeeded != ok || r.ContainerID != id || (!ok && r.Message == "") {
			t.Errorf("%s: %+v, want succeeded=%v", id, r, ok)
		}
	}
	if !strings.Contains(got["failed"].Message, "exited with status 2") || !strings.Contains(got["again"].Message, "no manifest") {
		t.Errorf("messages: %q / %q", got["failed"].Message, got["again"].Message)
	}

	// A copy whose record ended otherwise (the planner failed it) is killed;
	// one left when the leader steps down is not.
	f.mu.Lock()
	f.launch["abandoned"], f.block["abandoned"] = http.StatusOK, true
	f.launch["left"], f.block["left"] = http.StatusOK, true
	f.mu.Unlock()
	mk := func(id string) NestedCopyTarget {
		return NestedCopyTarget{BackupID: id, AgentID: "A1", Record: &v1.Backup{Id: id}, ContainerID: mesos.ContainerID{Value: id}}
	}
	n.sync([]NestedCopyTarget{mk("abandoned"), mk("left")})
	eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.launches["abandoned"] == 1 && f.launches["left"] == 1
	})
	n.sync([]NestedCopyTarget{mk("left")})
	eventually(t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.kills["abandoned"] == 1 })
	n.wait()
	if f.kills["left"] != 0 {
		t.Error("a copy was killed when the leader stepped down")
	}
}

// eventually polls cond for up to a minute.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached")
}
