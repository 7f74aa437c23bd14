package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOutageRecovery loses two of three servers for good. The survivor
// alone has no quorum and cannot take writes; the operator writes a
// recovery file naming it as the whole cluster and restarts it. It comes
// back as a cluster of one with every write it held and the same Mesos
// framework: the running task is neither restarted nor relaunched.
func TestOutageRecovery(t *testing.T) {
	c := startCluster(t, 3)
	lead := c.waitLeader(c.servers)
	mustCLI(t, lead.api, "app", "add", residentApp(t, "/survivor", 1), "--wait")
	var before map[string]string
	eventually(t, 2*time.Minute, "the task running with its PID", func() bool {
		before = runningTasks(t, lead.api, "/survivor")
		return len(before) == 1 && len(taskPIDs(t, c.mesosDir)) == 1
	})
	pids := taskPIDs(t, c.mesosDir)
	mustCLI(t, lead.api, "app", "add", writeFile(t, "last.json", `{"id": "/last-write", "cmd": "sleep 1", "instances": 0}`))

	// Keep a follower; lose the others (the leader among them) for good.
	survivor := c.others(lead)[0]
	for _, s := range c.others(survivor) {
		s.p.kill9()
	}
	if r := cli(t, survivor.api, "app", "add", writeFile(t, "lost.json", `{"id": "/no-quorum", "cmd": "x", "instances": 0}`)); r.err == nil {
		t.Fatal("a lone survivor of three took a write")
	}

	survivor.p.stop(syscall.SIGTERM, 30*time.Second)
	peers := fmt.Sprintf(`[{"id": %q, "address": %q, "non_voter": false}]`, survivor.name, survivor.raft)
	if err := os.WriteFile(filepath.Join(survivor.dataDir, "raft", "peers.json"), []byte(peers), 0o600); err != nil {
		t.Fatal(err)
	}
	subsBefore, _ := c.subscriptions()
	survivor.p.restart()
	waitAPI(t, survivor.api)
	c.waitLeader([]*server{survivor})

	// Every write it held is there, and it takes new ones.
	var apps struct{ Apps []appJSON }
	cliJSON(t, survivor.api, &apps, "app", "list")
	var ids []string
	for _, a := range apps.Apps {
		ids = append(ids, a.ID)
	}
	if got := strings.Join(ids, ","); got != "/last-write,/survivor" {
		t.Fatalf("apps after recovery: %s", got)
	}
	mustCLI(t, survivor.api, "app", "add", writeFile(t, "new.json", `{"id": "/after-recovery", "cmd": "x", "instances": 0}`))
	// The same framework subscribed again; the task kept its id and its
	// process.
	eventually(t, time.Minute, "the recovered leader to subscribe", func() bool {
		n, _ := c.subscriptions()
		return n > subsBefore
	})
	if !strings.Contains(c.mesos.out.String(), "failover=true") {
		t.Fatal("the recovered leader did not subscribe as the same framework")
	}
	eventually(t, time.Minute, "the task reconciled as running", func() bool {
		after := runningTasks(t, survivor.api, "/survivor")
		return fmt.Sprint(after) == fmt.Sprint(before)
	})
	for vol, pid := range pids {
		if !alive(pid) {
			t.Fatalf("task process %d of %s died", pid, vol)
		}
	}
	if _, err := os.Stat(filepath.Join(survivor.dataDir, "raft", "peers.json.applied")); err != nil {
		t.Fatalf("the recovery file was not marked applied: %v", err)
	}
}
