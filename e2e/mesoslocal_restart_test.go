package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sameTasks waits until the app lists exactly the running tasks want
// (instance → task id) and fails if they differ once all are running.
func sameTasks(t *testing.T, api, app string, want map[string]string) {
	t.Helper()
	var got map[string]string
	eventually(t, 2*time.Minute, app+"'s tasks running again", func() bool {
		got = runningTasks(t, api, app)
		return len(got) == len(want)
	})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s's tasks changed across the mesos-local restart: %v → %v", app, want, got)
	}
}

// checkAlive fails unless every task pid still runs.
func checkAlive(t *testing.T, pids map[string]int, when string) {
	t.Helper()
	for vol, pid := range pids {
		if !alive(pid) {
			t.Fatalf("task process %d (volume %s) is gone %s", pid, vol, when)
		}
	}
}

// TestMesosLocalRestartKeepsTasks: stopping standalone mesos-local (SIGTERM)
// or crashing it (kill -9) does not stop the tasks; started again on its
// work dir, it adopts them, Berth re-subscribes and reconciles, and every
// instance keeps its task id and its process: nothing is relaunched.
func TestMesosLocalRestartKeepsTasks(t *testing.T) {
	c := startCluster(t, 1)
	api := c.servers[0].api
	mustCLI(t, api, "app", "add", residentApp(t, "/keep", 2), "--wait")
	eventually(t, 2*time.Minute, "two running tasks with PIDs", func() bool {
		return len(runningTasks(t, api, "/keep")) == 2 && len(taskPIDs(t, c.mesosDir)) == 2
	})
	before := runningTasks(t, api, "/keep")
	pids := taskPIDs(t, c.mesosDir)

	for _, how := range []string{"SIGTERM", "kill -9"} {
		if how == "SIGTERM" {
			c.mesos.stop(syscall.SIGTERM, 30*time.Second)
		} else {
			c.mesos.kill9()
		}
		checkAlive(t, pids, "while mesos-local is down after "+how)
		c.mesos.restart()
		eventually(t, time.Minute, "mesos-local to answer after "+how, func() bool { return len(mesosStateOrNil(c.mesosAddr)) > 0 })
		eventually(t, 2*time.Minute, "Berth to subscribe again after "+how, func() bool {
			n, _ := c.subscriptions() // the restarted process's log only
			return n > 0
		})
		if n := strings.Count(c.mesos.out.String(), `msg="task recovered"`); n != 2 {
			t.Fatalf("mesos-local recovered %d tasks after %s, want 2", n, how)
		}
		sameTasks(t, api, "/keep", before)
		checkAlive(t, pids, "after mesos-local came back from "+how)
	}
	// The adopted tasks are still Berth's to stop: scale to 0 kills both.
	mustCLI(t, api, "app", "scale", "/keep", "0", "--wait")
	eventually(t, 2*time.Minute, "the adopted tasks to be killed", func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}

// TestDevRestartKeepsTasks: `berth dev` stopped with SIGTERM and started
// again on its data dir keeps the running task and its process.
func TestDevRestartKeepsTasks(t *testing.T) {
	api, mesosAddr, dir := freePort(t), freePort(t), traversableTempDir(t)
	dev := startProc(t, "dev", "dev", "--data-dir", dir, "--api-addr", api, "--mesos-listen", mesosAddr)
	waitAPI(t, api)
	mustCLI(t, api, "app", "add", residentApp(t, "/devkeep", 1), "--wait")
	mesosDir := filepath.Join(dir, "mesos")
	eventually(t, 2*time.Minute, "a running task with its PID", func() bool {
		return len(runningTasks(t, api, "/devkeep")) == 1 && len(taskPIDs(t, mesosDir)) == 1
	})
	before := runningTasks(t, api, "/devkeep")
	pids := taskPIDs(t, mesosDir)
	dev.stop(syscall.SIGTERM, 30*time.Second)
	checkAlive(t, pids, "while dev is stopped")
	dev.restart()
	waitAPI(t, api)
	sameTasks(t, api, "/devkeep", before)
	checkAlive(t, pids, "after dev restarted")
}
