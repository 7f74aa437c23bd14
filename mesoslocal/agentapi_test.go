package mesoslocal

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	agentapi "github.com/mesos/mesos-go/api/v1/lib/agent"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// agentCall posts an agent API call (JSON) and returns the HTTP status,
// the decoded response (for 200 with a body) and the raw body.
func agentCall(t testing.TB, url string, call *agentapi.Call) (int, *agentapi.Response, string) {
	t.Helper()
	b, err := codec(mediaJSON).marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := rawPost(t, url+"/api/v1", map[string]string{"Content-Type": mediaJSON, "Accept": mediaJSON}, b)
	var out agentapi.Response
	if resp.StatusCode == http.StatusOK && strings.TrimSpace(body) != "" {
		if err := codec(mediaJSON).unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("agent %v: decode: %v (%s)", call.Type, err, body)
		}
	}
	return resp.StatusCode, &out, body
}

func nestedID(parent, id string) mesos.ContainerID {
	return mesos.ContainerID{Value: id, Parent: &mesos.ContainerID{Value: parent}}
}

func launchContainer(id mesos.ContainerID, cmd string) *agentapi.Call {
	return &agentapi.Call{Type: agentapi.Call_LAUNCH_CONTAINER, LaunchContainer: &agentapi.Call_LaunchContainer{
		ContainerID: id, Command: &mesos.CommandInfo{Value: proto.String(cmd)}}}
}

func waitContainer(id mesos.ContainerID) *agentapi.Call {
	return &agentapi.Call{Type: agentapi.Call_WAIT_CONTAINER, WaitContainer: &agentapi.Call_WaitContainer{ContainerID: id}}
}

// startVolumeTask launches a long-running task with a persistent volume at
// "data" holding one file, and returns its RUNNING status.
func startVolumeTask(t *testing.T, s *sched, id string) (mesos.Offer, mesos.TaskStatus) {
	t.Helper()
	lbl := labels("berth_framework_id", "fw-1", "berth_instance_id", id)
	o := s.awaitOffer("unreserved", func(o mesos.Offer) bool { return sumScalar(o.Resources, "cpus", unreservedRes) >= 1 })
	cpus := reserved(scalar("cpus", 0.1), "berth", "berth", lbl)
	mem := reserved(scalar("mem", 32), "berth", "berth", lbl)
	disk := reserved(scalar("disk", 10), "berth", "berth", lbl)
	vol := volume(disk, id+"#data#1", "data")
	ti := shellTask(id, o, `echo kept > data/file; exec sleep 1000`, []mesos.Resource{cpus, mem, vol})
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpReserve(cpus, mem, disk), calls.OpCreate(vol), calls.OpLaunch(ti)}.
		WithOffers(o.ID)).With(calls.RefuseSeconds(time.Hour)))
	st := s.awaitUpdate(id, mesos.TASK_RUNNING)
	return o, st
}

// TestAgentAPINestedContainers: each agent serves the agent API on a port
// of its own (AgentInfo.port, Offer.url); a nested container launched in a
// running task's container sees the task's volume, its exit status comes
// back from WAIT_CONTAINER, a repeated launch is accepted without a second
// process, unknown containers answer 404, and nested containers die with
// their parent task.
func TestAgentAPINestedContainers(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, berthInfo())
	o, st := startVolumeTask(t, s, "app1")
	parent := st.GetContainerStatus().GetContainerID().GetValue()
	if parent == "" {
		t.Fatalf("TASK_RUNNING carries no container_status.container_id: %+v", st)
	}
	url := c.AgentURL(o.AgentID.Value)
	_, masterPort, _ := net.SplitHostPort(c.Addr())
	_, agentPort, _ := net.SplitHostPort(strings.TrimPrefix(url, "http://"))
	if agentPort == masterPort || agentPort == "" {
		t.Fatalf("agent URL %s shares the master's port %s", url, masterPort)
	}
	if p := o.GetURL().Address.Port; strconv.Itoa(int(p)) != agentPort {
		t.Fatalf("offer url port %d, agent listens on %s", p, agentPort)
	}
	ag := operator(t, c, &master.Call{Type: master.Call_GET_AGENTS}).GetGetAgents().GetAgents()
	if len(ag) != 1 || strconv.Itoa(int(ag[0].AgentInfo.GetPort())) != agentPort {
		t.Fatalf("GET_AGENTS agent info %+v, agent listens on %s", ag, agentPort)
	}

	code, resp, body := agentCall(t, url, &agentapi.Call{Type: agentapi.Call_GET_CONTAINERS})
	if code != http.StatusOK || len(resp.GetGetContainers().GetContainers()) != 1 ||
		resp.GetGetContainers().GetContainers()[0].ContainerID.Value != parent {
		t.Fatalf("GET_CONTAINERS: %d %s", code, body)
	}

	// A copy reading the volume through the parent's sandbox.
	copyID := nestedID(parent, "copy1")
	cmd := `set -e; test "$(cat "$MESOS_SANDBOX"/../../data/file)" = kept; echo copied > "$MESOS_SANDBOX"/../../data/copied; ` +
		`case "$MESOS_SANDBOX" in */containers/copy1) ;; *) exit 9;; esac; exit 3`
	if code, _, body := agentCall(t, url, launchContainer(copyID, cmd)); code != http.StatusOK {
		t.Fatalf("LAUNCH_CONTAINER: %d %s", code, body)
	}
	code, resp, body = agentCall(t, url, waitContainer(copyID))
	if code != http.StatusOK || resp.GetWaitContainer().GetExitStatus() != 3<<8 ||
		resp.GetWaitContainer().GetState() != mesos.TASK_FAILED {
		t.Fatalf("WAIT_CONTAINER: %d %s", code, body)
	}
	sandbox := c.taskSandbox(t, s.fwID, "app1")
	if b, err := os.ReadFile(filepath.Join(sandbox, "data", "copied")); err != nil || string(b) != "copied\n" {
		t.Fatalf("the nested container did not write into the task's volume: %q %v", b, err)
	}
	// A finished container is still known while its parent runs; a
	// repeated launch is accepted and starts nothing.
	if code, _, body := agentCall(t, url, launchContainer(copyID, "touch again")); code != http.StatusAccepted {
		t.Fatalf("repeated LAUNCH_CONTAINER: %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(sandbox, "containers", "copy1", "again")); err == nil {
		t.Fatal("a repeated launch ran its command")
	}
	if code, resp, _ := agentCall(t, url, waitContainer(copyID)); code != http.StatusOK || resp.GetWaitContainer().GetExitStatus() != 3<<8 {
		t.Fatalf("second WAIT_CONTAINER: %d", code)
	}

	// Refusals, as Mesos answers them.
	for _, tc := range []struct {
		call *agentapi.Call
		code int
		want string
	}{
		{waitContainer(nestedID(parent, "never")), http.StatusNotFound, "cannot be found"},
		{launchContainer(nestedID("no-such-parent", "x"), "true"), http.StatusNotFound, "no-such-parent"},
		{launchContainer(mesos.ContainerID{Value: "standalone"}, "true"), http.StatusBadRequest, "parent"},
		{launchContainer(nestedID(parent, "a.b"), "true"), http.StatusBadRequest, "must not contain"},
		{&agentapi.Call{Type: agentapi.Call_KILL_CONTAINER, KillContainer: &agentapi.Call_KillContainer{ContainerID: nestedID(parent, "never")}},
			http.StatusNotFound, "cannot be found"},
	} {
		if code, _, body := agentCall(t, url, tc.call); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%v: %d %q, want %d containing %q", tc.call.Type, code, body, tc.code, tc.want)
		}
	}

	// KILL_CONTAINER ends a running nested container.
	sleeper := nestedID(parent, "sleeper")
	if code, _, body := agentCall(t, url, launchContainer(sleeper, "exec sleep 1000")); code != http.StatusOK {
		t.Fatalf("LAUNCH_CONTAINER: %d %s", code, body)
	}
	if code, _, body := agentCall(t, url, &agentapi.Call{Type: agentapi.Call_KILL_CONTAINER,
		KillContainer: &agentapi.Call_KillContainer{ContainerID: sleeper}}); code != http.StatusOK {
		t.Fatalf("KILL_CONTAINER: %d %s", code, body)
	}
	if code, resp, body := agentCall(t, url, waitContainer(sleeper)); code != http.StatusOK || resp.GetWaitContainer().GetState() != mesos.TASK_KILLED {
		t.Fatalf("WAIT_CONTAINER after kill: %d %s", code, body)
	}

	// A nested container dies with its parent; the agent then forgets it.
	orphan := nestedID(parent, "orphan")
	if code, _, body := agentCall(t, url, launchContainer(orphan, `echo $$ > pid; exec sleep 1000`)); code != http.StatusOK {
		t.Fatalf("LAUNCH_CONTAINER: %d %s", code, body)
	}
	var pid int
	eventually(t, "nested pid written", func() bool {
		b, _ := os.ReadFile(filepath.Join(sandbox, "containers", "orphan", "pid"))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	})
	waited := make(chan *agentapi.Response_WaitContainer, 1)
	go func() {
		_, resp, _ := agentCall(t, url, waitContainer(orphan))
		waited <- resp.GetWaitContainer()
	}()
	s.mustCall(calls.Kill("app1", o.AgentID.Value))
	s.awaitUpdate("app1", mesos.TASK_KILLED)
	select {
	case w := <-waited:
		if w.GetState() != mesos.TASK_KILLED {
			t.Fatalf("a waiter of a nested container whose parent died got %+v", w)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WAIT_CONTAINER did not return when the parent task ended")
	}
	eventually(t, "nested process gone", func() bool { return !processAlive(pid) })
	if code, _, _ := agentCall(t, url, waitContainer(orphan)); code != http.StatusNotFound {
		t.Fatalf("WAIT_CONTAINER after the parent ended: %d, want 404", code)
	}
}

// TestAgentAPIPortSurvivesRestart: a restarted mesos-local gives the agent
// the port it had (from its checkpoint) when it is free.
func TestAgentAPIPortSurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	c1 := startWith(t, cfg)
	id := c1.AgentIDs()[0]
	url := c1.AgentURL(id)
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := c2.AgentURL(id); got != url {
		t.Fatalf("agent URL after restart %s, before %s", got, url)
	}
	if code, resp, body := agentCall(t, url, &agentapi.Call{Type: agentapi.Call_GET_HEALTH}); code != http.StatusOK || !resp.GetGetHealth().Healthy {
		t.Fatalf("GET_HEALTH after restart: %d %s", code, body)
	}
}

// TestAgentAPIDistinctHosts: with an address per agent, each agent's API
// listens on its own address, the one its PID names.
func TestAgentAPIDistinctHosts(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.Agents, cfg.DistinctHosts = 2, true })
	for _, ag := range operator(t, c, &master.Call{Type: master.Call_GET_AGENTS}).GetGetAgents().GetAgents() {
		_, addr, _ := strings.Cut(ag.GetPID(), "@")
		if !strings.HasPrefix(addr, ag.AgentInfo.Hostname+":") {
			t.Errorf("agent %s on %s has PID %s", ag.AgentInfo.GetID().GetValue(), ag.AgentInfo.Hostname, ag.GetPID())
		}
		if code, _, body := agentCall(t, "http://"+addr, &agentapi.Call{Type: agentapi.Call_GET_HEALTH}); code != http.StatusOK {
			t.Errorf("agent API at its PID %s: %d %s", addr, code, body)
		}
	}
}

// TestAgentAPINestedDiesWithItsAgent: a stopped agent takes its tasks'
// nested containers with it (mesos-local does not recover them) and
// answers no agent call until it is back.
func TestAgentAPINestedDiesWithItsAgent(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, berthInfo())
	o, st := startVolumeTask(t, s, "app1")
	url := c.AgentURL(o.AgentID.Value)
	parent := st.GetContainerStatus().GetContainerID().GetValue()
	if code, _, body := agentCall(t, url, launchContainer(nestedID(parent, "copy"), `echo $$ > pid; exec sleep 1000`)); code != http.StatusOK {
		t.Fatalf("LAUNCH_CONTAINER: %d %s", code, body)
	}
	sandbox := c.taskSandbox(t, s.fwID, "app1")
	var pid int
	eventually(t, "nested pid written", func() bool {
		b, _ := os.ReadFile(filepath.Join(sandbox, "containers", "copy", "pid"))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	})
	if err := c.StopAgent(o.AgentID.Value); err != nil {
		t.Fatal(err)
	}
	eventually(t, "nested process gone with its agent", func() bool { return !processAlive(pid) })
	if code, _, _ := agentCall(t, url, waitContainer(nestedID(parent, "copy"))); code != http.StatusServiceUnavailable {
		t.Fatalf("WAIT_CONTAINER on a stopped agent: %d, want 503", code)
	}
}
