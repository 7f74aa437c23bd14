package e2e

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// masterTasks are the tasks mesos-local's GET_STATE lists as its
// frameworks' tasks (live or unreachable; not completed).
type masterTask struct {
	TaskID  struct{ Value string } `json:"task_id"`
	AgentID struct{ Value string } `json:"agent_id"`
	State   string                 `json:"state"`
}

func masterTasks(mesosAddr string) ([]masterTask, bool) {
	l, ok := masterTaskState(mesosAddr)
	return l.Tasks, ok
}

// masterTaskState is mesos-local's GET_STATE tasks: live and unreachable.
func masterTaskState(mesosAddr string) (masterTaskLists, bool) {
	resp, err := http.Post("http://"+mesosAddr+"/api/v1", "application/json", strings.NewReader(`{"type":"GET_STATE"}`))
	if err != nil {
		return masterTaskLists{}, false
	}
	defer resp.Body.Close()
	var st struct {
		GetState struct {
			GetTasks masterTaskLists `json:"get_tasks"`
		} `json:"get_state"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return masterTaskLists{}, false
	}
	return st.GetState.GetTasks, true
}

func faultCall(t *testing.T, mesosAddr, what, agentID string) {
	t.Helper()
	resp, err := http.Post("http://"+mesosAddr+"/fault/"+what+"?agent_id="+agentID, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fault %s of %s: HTTP %d", what, agentID, resp.StatusCode)
	}
}

// The old agent returns (issue 16): an app with an enabled
// unreachableStrategy and replaceFromBackup, backed up; its agent is
// partitioned from the master (mesos-local --fault-injection): past
// inactiveAfterSeconds the instance is replaced from its backup on another
// agent. The partition heals: the agent reregisters with the old task
// still running and the old berth: the old task is killed, the old berth
// destroyed and unreserved (mesos-local's operation log), never launched
// on. Sampled throughout, the master never lists two live tasks of the
// instance other than the returned old one between its return and its
// kill, and the replacement runs on, untouched.
//
// Two timings: the agent returns once the replacement is done, and while
// it is under way (mid-migration: the new berth being placed or filled).
func TestPartitionedAgentReturns(t *testing.T) {
	t.Run("after the replacement", func(t *testing.T) { partitionedAgentReturns(t, false) })
	t.Run("during the replacement", func(t *testing.T) { partitionedAgentReturns(t, true) })
}

func partitionedAgentReturns(t *testing.T, midMove bool) {
	dataDir := traversableTempDir(t)
	target := filepath.Join(dataDir, "backups")
	if err := os.Mkdir(target, 0o777); err != nil {
		t.Fatal(err)
	}
	api, mesosAddr := freePort(t), freePort(t)
	dev := startProc(t, "dev", "dev", "--data-dir", dataDir, "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "3",
		"--fault-injection", "--agent-ping-timeout", "2s")
	waitAPI(t, api)
	eventually(t, time.Minute, "three agents", func() bool { return len(agentsByID(t, api)) == 3 })
	mustCLI(t, api, "app", "add", "--wait", writeFile(t, "part.json", markerApp("/part",
		`, "unreachableStrategy": {"inactiveAfterSeconds": 5, "expungeAfterSeconds": 600}, "backup": {"target": "file://`+target+`", "replaceFromBackup": true}`)))
	pre := onlyTask(t, api, "/part", nil)
	if midMove {
		// Enough data that the restore onto the new berth takes seconds:
		// a replacement of a near-empty volume is done within one poll
		// of the move's step, and the heal would come after it.
		ballast := make([]byte, 96<<20)
		rand.Read(ballast)
		if err := os.WriteFile(filepath.Join(volumeDir(dataDir, pre.agentTaskJSON), "ballast"), ballast, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	backupDone(t, api, "/part")
	first := onlyTask(t, api, "/part", nil)
	marker := readVolumeFile(t, dataDir, first.agentTaskJSON, "marker")
	oldVolume := volumeDir(dataDir, first.agentTaskJSON)
	oldPID := first.LocalVolumes[0].PersistenceID

	// Sample the master's tasks of the instance throughout.
	var healed atomic.Bool
	var mu sync.Mutex
	var violations []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			tasks, ok := masterTasks(mesosAddr)
			if !ok {
				continue
			}
			var live []string
			for _, tk := range tasks {
				switch tk.State {
				case "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING":
					if strings.HasPrefix(tk.TaskID.Value, first.InstanceID+".") {
						live = append(live, tk.TaskID.Value)
					}
				}
			}
			if len(live) < 2 {
				continue
			}
			// Two live tasks: only the old one come back, before its kill.
			returned := false
			for _, id := range live {
				returned = returned || id == first.ID
			}
			if len(live) > 2 || !returned || !healed.Load() {
				mu.Lock()
				violations = append(violations, strings.Join(live, ", "))
				mu.Unlock()
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	partitioned := time.Now()
	faultCall(t, mesosAddr, "partition", first.AgentID)
	healAt := -1
	var healedAt time.Time
	heal := func() {
		healed.Store(true)
		healedAt = time.Now()
		healAt = len(dev.out.String())
		faultCall(t, mesosAddr, "heal", first.AgentID)
	}
	if midMove {
		step := ""
		eventually(t, 3*time.Minute, "the replacement to start", func() bool {
			tk := movesByInstance(t, api, "/part")[first.InstanceID]
			step = tk.Move.Step
			return tk.Move.Kind == "replace" && step != "done"
		})
		heal()
		t.Logf("healed during the replacement, at step %q", step)
	}
	replaced := onlyTask(t, api, "/part", func(tk moveTaskJSON) bool {
		return tk.AgentID != first.AgentID && tk.Move.Kind == "replace" && tk.Move.Step == "done"
	})
	t.Logf("partition → replaced from the backup and running on %s: %s (ping timeout 2 s, inactiveAfterSeconds 5; downtime %s ms)",
		replaced.AgentID, time.Since(partitioned).Round(100*time.Millisecond), replaced.Move.DowntimeMs)
	if replaced.BerthEpoch != "2" {
		t.Fatalf("replacement: %+v", replaced)
	}
	if got := readVolumeFile(t, dataDir, replaced.agentTaskJSON, "marker"); got != marker {
		t.Fatalf("marker after the replacement %q, want %q", got, marker)
	}
	if !midMove {
		if _, err := os.Stat(oldVolume); err != nil {
			t.Fatalf("the old berth's volume went while its agent was unreachable: %v", err)
		}
		heal()
	}
	eventually(t, 2*time.Minute, "the old berth destroyed and unreserved", func() bool {
		_, err := os.Stat(oldVolume)
		out := dev.out.String()
		destroyed, unreserved := false, false
		for _, line := range strings.Split(out, "\n") {
			if !strings.Contains(line, `msg="operation applied"`) || !strings.Contains(line, "agent_id="+first.AgentID) {
				continue
			}
			destroyed = destroyed || strings.Contains(line, "op=DESTROY") && strings.Contains(line, oldPID)
			unreserved = unreserved || strings.Contains(line, "op=UNRESERVE")
		}
		return os.IsNotExist(err) && destroyed && unreserved
	})
	eventually(t, time.Minute, "the old task killed", func() bool {
		tasks, ok := masterTasks(mesosAddr)
		if !ok {
			return false
		}
		for _, tk := range tasks {
			if tk.TaskID.Value == first.ID {
				return false
			}
		}
		return true
	})
	t.Logf("heal → old task killed, old berth destroyed and unreserved: %s", time.Since(healedAt).Round(100*time.Millisecond))
	time.Sleep(3 * time.Second) // offer rounds: nothing launches on the old agent
	now := onlyTask(t, api, "/part", nil)
	if now.ID != replaced.ID || now.AgentID != replaced.AgentID {
		t.Fatalf("the replacement was disturbed: %+v, was %+v", now, replaced)
	}
	for _, line := range strings.Split(dev.out.String()[healAt:], "\n") {
		if strings.Contains(line, "op=LAUNCH") && strings.Contains(line, "agent_id="+first.AgentID) && strings.Contains(line, first.InstanceID) {
			t.Fatalf("the instance launched on the old agent after it returned: %s", line)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("two live tasks of the instance: %v", violations)
	}
}
