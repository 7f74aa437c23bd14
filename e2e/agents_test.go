package e2e

import (
	"strings"
	"testing"
	"time"
)

type agentJSON struct {
	ID, Hostname, IP, State string
	Attributes              map[string]string
}

type agentTaskJSON struct {
	ID, InstanceID, Host, AgentID, State, AgentNotice string
	BerthEpoch                                        string // uint64 in proto JSON
	LocalVolumes                                      []struct{ PersistenceID string }
}

func agentsByID(t *testing.T, api string) map[string]agentJSON {
	t.Helper()
	var res struct{ Agents []agentJSON }
	cliJSON(t, api, &res, "agent", "list")
	out := map[string]agentJSON{}
	for _, a := range res.Agents {
		out[a.ID] = a
	}
	return out
}

func tasksByInstance(t *testing.T, api, app string) map[string]agentTaskJSON {
	t.Helper()
	var res struct{ Tasks []agentTaskJSON }
	cliJSON(t, api, &res, "task", "list", "--app", app)
	out := map[string]agentTaskJSON{}
	for _, tk := range res.Tasks {
		out[tk.InstanceID] = tk
	}
	return out
}

// Agents that go away, end to end on `berth dev --agents 3`: each agent
// has its own loopback address and attributes; hostname:UNIQUE puts the
// two instances on two agents, each task seeing its agent's address as
// $HOST. Draining one agent kills its instance's task, which waits there
// (said on the task) and runs nowhere else; reactivated, it relaunches on
// its berth. Drained with --mark-gone, the agent is gone and the instance
// gets a new berth, with the next epoch, on the third agent; at no time
// does an instance run twice.
func TestAgentsDistinctHostsDrainAndGone(t *testing.T) {
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr,
		"--agents", "3", "--agent-attributes", "rack:r1|rack:r2|rack:r3")
	waitAPI(t, api)

	var agents map[string]agentJSON
	eventually(t, time.Minute, "three agents", func() bool {
		agents = agentsByID(t, api)
		return len(agents) == 3
	})
	hostOf := map[string]string{}
	distinct := map[string]bool{}
	for id, a := range agents {
		if a.State != "ACTIVE" || a.IP != a.Hostname || !strings.HasPrefix(a.Hostname, "127.0.0.") || a.Attributes["rack"] == "" {
			t.Fatalf("agent %s: %+v", id, a)
		}
		hostOf[id] = a.Hostname
		distinct[a.Hostname] = true
	}
	if len(distinct) != 3 {
		t.Fatalf("agents share hostnames: %v", hostOf)
	}

	mustCLI(t, api, "app", "add", "--wait", writeFile(t, "spread.json", `{
		"id": "/spread", "instances": 2, "cpus": 0.05, "mem": 16,
		"cmd": "echo \"$HOST\" > data/host; sleep 100000",
		"constraints": [["hostname", "UNIQUE"]],
		"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 1}}]}
	}`))
	running := func(ts map[string]agentTaskJSON) int {
		n := 0
		for _, tk := range ts {
			if tk.State == "TASK_RUNNING" {
				n++
			}
		}
		return n
	}
	var tasks map[string]agentTaskJSON
	eventually(t, 2*time.Minute, "two running instances", func() bool {
		tasks = tasksByInstance(t, api, "/spread")
		return len(tasks) == 2 && running(tasks) == 2
	})
	used := map[string]bool{}
	var victim agentTaskJSON
	for _, tk := range tasks {
		if used[tk.AgentID] || tk.Host != hostOf[tk.AgentID] || tk.BerthEpoch != "1" || len(tk.LocalVolumes) != 1 {
			t.Fatalf("task %+v (agents %v)", tk, hostOf)
		}
		used[tk.AgentID] = true
		victim = tk
	}

	// Drain the victim's agent (no mark-gone): the task is killed, the
	// instance waits on its berth and says why, the agent ends DRAINED.
	mustCLI(t, api, "agent", "drain", victim.AgentID, "--grace", "2s")
	eventually(t, 2*time.Minute, "the drained instance to wait", func() bool {
		tasks = tasksByInstance(t, api, "/spread")
		tk := tasks[victim.InstanceID]
		return tk.State == "TASK_KILLED" && strings.HasPrefix(tk.AgentNotice, "agent draining")
	})
	eventually(t, time.Minute, "the agent to be DRAINED", func() bool {
		return agentsByID(t, api)[victim.AgentID].State == "DRAINED"
	})
	time.Sleep(3 * time.Second) // a few offer rounds: nothing may relaunch it elsewhere
	tasks = tasksByInstance(t, api, "/spread")
	if tk := tasks[victim.InstanceID]; tk.State != "TASK_KILLED" || tk.AgentID != victim.AgentID || running(tasks) != 1 {
		t.Fatalf("while drained: %+v", tasks)
	}

	// Reactivated: back on the same berth, same volume, same epoch.
	mustCLI(t, api, "agent", "reactivate", victim.AgentID)
	eventually(t, 2*time.Minute, "the instance to run again on its berth", func() bool {
		tasks = tasksByInstance(t, api, "/spread")
		tk := tasks[victim.InstanceID]
		return tk.State == "TASK_RUNNING" && tk.AgentNotice == ""
	})
	if tk := tasks[victim.InstanceID]; tk.AgentID != victim.AgentID || tk.BerthEpoch != "1" ||
		tk.LocalVolumes[0].PersistenceID != victim.LocalVolumes[0].PersistenceID {
		t.Fatalf("after reactivation: %+v, before %+v", tk, victim)
	}

	// Drained with --mark-gone: the agent is gone, its berth lost; the
	// instance gets a new berth (epoch 2) on the third agent.
	mustCLI(t, api, "agent", "drain", victim.AgentID, "--grace", "2s", "--mark-gone")
	eventually(t, 2*time.Minute, "the instance on a new berth", func() bool {
		tasks = tasksByInstance(t, api, "/spread")
		tk := tasks[victim.InstanceID]
		return tk.State == "TASK_RUNNING" && tk.AgentID != victim.AgentID && tk.BerthEpoch == "2"
	})
	moved := tasks[victim.InstanceID]
	if moved.LocalVolumes[0].PersistenceID == victim.LocalVolumes[0].PersistenceID || used[moved.AgentID] || moved.Host != hostOf[moved.AgentID] {
		t.Fatalf("moved instance %+v (was %+v)", moved, victim)
	}
	if running(tasks) != 2 || len(tasks) != 2 {
		t.Fatalf("instances after the move: %+v", tasks)
	}
	// The agent list follows the master's (polled) agents: a replacement
	// can now be quicker than the next poll.
	eventually(t, time.Minute, "the gone agent to leave the agent list", func() bool {
		_, listed := agentsByID(t, api)[victim.AgentID]
		return !listed
	})

	// Maintenance scheduled for the moved instance's agent: the agent list
	// shows the window, the instance says so, nothing moves or stops.
	mustCLI(t, api, "agent", "maintenance", "schedule", moved.AgentID, "--start", "2030-01-02T03:04:05Z", "--duration", "2h")
	out := mustCLI(t, api, "agent", "list")
	if !strings.Contains(out, "HOSTNAME") || !strings.Contains(out, "rack:") || !strings.Contains(out, "from 2030-01-02T03:04:05Z for 2h0m0s") {
		t.Fatalf("agent list:\n%s", out)
	}
	eventually(t, time.Minute, "the instance to show the maintenance", func() bool {
		tasks = tasksByInstance(t, api, "/spread")
		return tasks[victim.InstanceID].AgentNotice == "agent scheduled for maintenance from 2030-01-02T03:04:05Z for 2h0m0s"
	})
	if tk := tasks[victim.InstanceID]; tk.State != "TASK_RUNNING" || tk.ID != moved.ID {
		t.Fatalf("scheduled maintenance disturbed the task: %+v", tk)
	}
}
