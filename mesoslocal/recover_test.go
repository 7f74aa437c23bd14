package mesoslocal

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// killGroupsAtEnd kills the process groups of the pids *pids names when the
// test ends: tasks left running for adoption are not mesos-local's to kill
// once it is closed. Register it before the clusters, so it runs after
// their Close.
func killGroupsAtEnd(t *testing.T, pids *[]int) {
	t.Cleanup(func() {
		for _, pid := range *pids {
			if pid > 0 {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	})
}

// berthReservation is what Berth reserves for one instance: 0.5 cpus and
// 64 MB of disk labelled with it, and a volume "data" on the disk.
func berthReservation(instance, persistenceID string) (lbl *mesos.Labels, cpus, disk, vol mesos.Resource) {
	lbl = labels("berth_instance_id", instance)
	cpus = reserved(scalar("cpus", 0.5), "berth", "berth", lbl)
	disk = reserved(scalar("disk", 64), "berth", "berth", lbl)
	return lbl, cpus, disk, volume(disk, persistenceID, "data")
}

// TestRestartAdoptsLiveTasks: with agent recovery (the default), Close
// leaves a checkpointing framework's tasks running; the next Cluster on the
// work dir brings the agent back with the same id, adopts the live tasks
// (same pid, still RUNNING, resources held, volume not offered), reports a
// task that ended while it was down as GONE, reports one that ends after
// adoption as GONE with an unknown exit status, and kills an adopted task
// on request.
func TestRestartAdoptsLiveTasks(t *testing.T) {
	var pids []int
	killGroupsAtEnd(t, &pids)
	cfg := testConfig(t)
	cfg.KillTasksOnClose = false
	c := startWith(t, cfg)
	info := berthInfo()
	s := subscribe(t, c, info)
	o := s.awaitOffer("any", nil)
	lbl, cpus, disk, vol := berthReservation("i1", "pid-1")
	db := shellTask("db", o, "echo $$ > data/pid && exec sleep 1000", []mesos.Resource{cpus, vol})
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpReserve(cpus, disk), calls.OpCreate(vol),
		calls.OpLaunch(db, smallTask("ends-while-down", o, "sleep 1000"), smallTask("ends-later", o, "sleep 1000"))}.WithOffers(o.ID)))
	running := map[string]int{}
	for _, id := range []string{"db", "ends-while-down", "ends-later"} {
		s.awaitUpdate(id, mesos.TASK_RUNNING)
		running[id] = c.taskPID(s.fwID, id)
		pids = append(pids, running[id])
	}
	agentID := o.AgentID.Value
	pidFile := filepath.Join(cfg.WorkDir, "agents", agentID, "volumes", "roles", "berth", "pid-1", "pid")
	eventually(t, "the task to write its pid", func() bool {
		b, err := os.ReadFile(pidFile)
		return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(running["db"])
	})
	s.close()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for id, pid := range running {
		if !processAlive(pid) {
			t.Fatalf("task %s (pid %d) did not survive Close", id, pid)
		}
	}
	// One task ends while mesos-local is down.
	_ = syscall.Kill(-running["ends-while-down"], syscall.SIGKILL)
	eventually(t, "ends-while-down to end", func() bool { return !processAlive(running["ends-while-down"]) })

	c2 := startWith(t, cfg)
	if ids := c2.AgentIDs(); len(ids) != 1 || ids[0] != agentID {
		t.Fatalf("agents after restart %v, want [%s]", ids, agentID)
	}
	info.ID = &mesos.FrameworkID{Value: s.fwID}
	s2 := subscribe(t, c2, info)
	st := s2.awaitUpdate("ends-while-down", mesos.TASK_GONE)
	if st.GetReason() != mesos.REASON_EXECUTOR_TERMINATED || st.GetSource() != mesos.SOURCE_AGENT {
		t.Fatalf("task that ended while mesos-local was down: %v", st)
	}
	for _, id := range []string{"db", "ends-later"} {
		if got := c2.taskPID(s.fwID, id); got != running[id] {
			t.Fatalf("%s after restart: pid %d, want the adopted %d", id, got, running[id])
		}
	}
	s2.mustCall(calls.Reconcile(calls.ReconcileTasks(map[string]string{"db": agentID})))
	if st := s2.awaitUpdate("db", mesos.TASK_RUNNING); st.GetReason() != mesos.REASON_RECONCILIATION {
		t.Fatalf("reconciled db: %v", st)
	}
	// The adopted task holds its reservation and volume: the agent's first
	// offer carries neither.
	o2 := s2.awaitOffer("from the recovered agent", func(o mesos.Offer) bool { return o.AgentID.Value == agentID })
	if offerHas(o2, hasVolume("pid-1")) {
		t.Fatal("the volume of a running adopted task was offered")
	}
	if got := sumScalar(o2.Resources, "cpus", func(r mesos.Resource) bool {
		return len(r.Reservations) == 1 && r.Reservations[0].GetLabels().Equivalent(lbl)
	}); got != 0 {
		t.Fatalf("the reserved cpus of a running adopted task were offered: %v", got)
	}

	// An adopted task that ends: GONE, its exit status unknown.
	_ = syscall.Kill(-running["ends-later"], syscall.SIGKILL)
	st = s2.awaitUpdate("ends-later", mesos.TASK_GONE)
	if st.GetReason() != mesos.REASON_EXECUTOR_TERMINATED || !strings.Contains(st.GetMessage(), "exit status is unknown") {
		t.Fatalf("adopted task that ended: %v", st)
	}
	// An adopted task killed on request: KILLED, the process gone.
	s2.mustCall(calls.Kill("db", agentID))
	s2.awaitUpdate("db", mesos.TASK_KILLED)
	if processAlive(running["db"]) {
		t.Fatal("the killed adopted task still runs")
	}
	o3 := s2.awaitOfferDeclining("the volume back", func(o mesos.Offer) bool { return offerHas(o, hasVolume("pid-1")) })
	if o3.AgentID.Value != agentID {
		t.Fatalf("volume offered on %s", o3.AgentID.Value)
	}
}

// TestCloseKillsTasksOfNonCheckpointingFrameworks: only checkpointing
// frameworks' tasks outlive Close, as only their executors outlive a Mesos
// agent.
func TestCloseKillsTasksOfNonCheckpointingFrameworks(t *testing.T) {
	var pids []int
	killGroupsAtEnd(t, &pids)
	cfg := testConfig(t)
	cfg.KillTasksOnClose = false
	c := startWith(t, cfg)
	info := frameworkInfo("*")
	info.Checkpoint = nil
	s := subscribe(t, c, info)
	o := s.awaitOffer("any", nil)
	launch(s, o, smallTask("t", o, "sleep 1000"))
	s.awaitUpdate("t", mesos.TASK_RUNNING)
	pid := c.taskPID(s.fwID, "t")
	pids = append(pids, pid)
	s.close()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Fatal("a task of a framework without checkpointing survived Close")
	}
}

// TestRecognisesTaskProcesses: a pid whose start time differs is not the
// task (pid reuse), and a task started but not yet checkpointed with its
// pid is found by its sandbox.
func TestRecognisesTaskProcesses(t *testing.T) {
	self := os.Getpid()
	if !processRuns(self, procStartTime(self)) {
		t.Fatal("this process is not recognised by its start time")
	}
	if processRuns(self, procStartTime(self)+"1") {
		t.Fatal("a different start time was taken for the same process")
	}
	sandbox := t.TempDir()
	cmd := exec.Command("sleep", "1000")
	cmd.Env = append(os.Environ(), "MESOS_DIRECTORY="+sandbox)
	cmd.SysProcAttr = (*credential)(nil).sysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	tc := taskCheckpoint{Sandbox: sandbox}
	if pid, start := taskProcess(&tc); pid != cmd.Process.Pid || start == "" {
		t.Fatalf("task process by sandbox: %d %q, want %d", pid, start, cmd.Process.Pid)
	}
	if pid := findSandboxProcess(sandbox + "x"); pid != 0 {
		t.Fatalf("another sandbox matched pid %d", pid)
	}
	tc = taskCheckpoint{PID: cmd.Process.Pid, PIDStart: "1"}
	if pid, _ := taskProcess(&tc); pid != 0 {
		t.Fatalf("a reused pid was adopted: %d", pid)
	}
}
