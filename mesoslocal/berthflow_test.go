package mesoslocal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// TestBerthResidentFlow drives the exact flow the Berth scheduler uses:
// RESERVE+CREATE+LAUNCH in one ACCEPT, a relaunch on the labelled
// reservation and volume, then DESTROY+UNRESERVE in one ACCEPT.
func TestBerthResidentFlow(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, berthInfo())
	lbl := labels("berth_framework_id", "fw-1", "berth_instance_id", "inst-1")
	pid := "pg#pgdata#0b7c"

	o := s.awaitOffer("unreserved", func(o mesos.Offer) bool { return sumScalar(o.Resources, "cpus", unreservedRes) >= 1 })
	if o.GetAllocationInfo().GetRole() != "berth" {
		t.Fatalf("offer allocation_info.role = %q", o.GetAllocationInfo().GetRole())
	}
	for _, r := range o.Resources {
		if r.GetAllocationInfo().GetRole() != "berth" {
			t.Fatalf("resource %s has allocation role %q", r.Name, r.GetAllocationInfo().GetRole())
		}
		if r.Role != nil {
			t.Fatalf("RESERVATION_REFINEMENT framework got legacy role %q on %s", *r.Role, r.Name)
		}
	}
	cpus := reserved(scalar("cpus", 0.2), "berth", "berth", lbl)
	mem := reserved(scalar("mem", 64), "berth", "berth", lbl)
	disk := reserved(scalar("disk", 100), "berth", "berth", lbl)
	ports := reserved(portRange(31005, 31006), "berth", "berth", lbl)
	vol := volume(disk, pid, "pgdata")
	taskCPU := reserved(scalar("cpus", 0.1), "berth", "berth", lbl) // 0.1 reserved cpus stay unused

	// The first task writes into its volume and checks the environment.
	cmd := `set -e; echo hello > pgdata/file; test "$MESOS_SANDBOX" = "$PWD"; test "$MESOS_DIRECTORY" = "$PWD"; ` +
		`test -n "$MESOS_FRAMEWORK_ID"; test "$MESOS_EXECUTOR_ID" = t1; test "$MESOS_ALLOCATION_ROLE" = berth; ` +
		`test "$MESOS_CHECKPOINT" = 1; test -n "$MESOS_AGENT_ENDPOINT"; test -z "$PORT0"; echo out; echo err >&2`
	t1 := shellTask("t1", o, cmd, []mesos.Resource{taskCPU, mem, ports, vol})
	s.mustCall(calls.Accept(calls.OfferOperations{
		calls.OpReserve(cpus, mem, disk, ports),
		calls.OpCreate(vol),
		calls.OpLaunch(t1),
	}.WithOffers(o.ID)).With(calls.RefuseSeconds(time.Hour)))

	s.awaitUpdate("t1", mesos.TASK_STARTING)
	s.awaitUpdate("t1", mesos.TASK_RUNNING)
	fin := s.awaitUpdate("t1", mesos.TASK_FINISHED)
	if fin.GetSource() != mesos.SOURCE_EXECUTOR || len(fin.UUID) != 16 {
		t.Fatalf("terminal update source %v uuid %x", fin.GetSource(), fin.UUID)
	}

	// Operations were logged in order with the stream id.
	var ops []string
	for _, r := range c.Operations() {
		ops = append(ops, r.Op)
		if r.FrameworkID != s.fwID || r.StreamID == "" || r.AgentID != o.AgentID.Value {
			t.Fatalf("operation record %+v", r)
		}
	}
	if strings.Join(ops, ",") != "RESERVE,CREATE,LAUNCH" {
		t.Fatalf("operations = %v", ops)
	}

	// The volume is offered again, labels and data intact.
	o2 := s.awaitOffer("with the volume", func(o mesos.Offer) bool { return offerHas(o, hasVolume(pid)) })
	for _, r := range o2.Resources {
		if len(r.Reservations) > 0 && !r.Reservations[0].GetLabels().Equivalent(lbl) {
			t.Fatalf("reservation labels lost: %v", r.Reservations[0].GetLabels())
		}
	}
	// The unused reserved cpus came back without a filter (maybe in an
	// earlier offer than the volume's).
	var reservedCPU float64
	for _, off := range append(s.backlogOffers(), o2) {
		reservedCPU += sumScalar(off.Resources, "cpus", func(r mesos.Resource) bool { return len(r.Reservations) > 0 })
	}
	if reservedCPU != 0.2 {
		t.Fatalf("offered reserved cpus %v, want 0.2 (the unused leftover included)", reservedCPU)
	}
	var vol2 mesos.Resource
	for _, r := range o2.Resources {
		if hasVolume(pid)(r) {
			vol2 = r
		}
	}
	if vol2.GetDisk().GetVolume().GetContainerPath() != "pgdata" {
		t.Fatalf("volume container path = %q", vol2.GetDisk().GetVolume().GetContainerPath())
	}
	hostDir := filepath.Join(c.cfg.WorkDir, "agents", o.AgentID.Value, "volumes", "roles", "berth", pid)
	if b, err := os.ReadFile(filepath.Join(hostDir, "file")); err != nil || string(b) != "hello\n" {
		t.Fatalf("volume data: %q, %v", b, err)
	}
	sandbox := c.taskSandbox(t, s.fwID, "t1")
	if b, _ := os.ReadFile(filepath.Join(sandbox, "stdout")); !strings.Contains(string(b), "out") {
		t.Fatalf("stdout = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(sandbox, "stderr")); !strings.Contains(string(b), "err") {
		t.Fatalf("stderr = %q", b)
	}

	// Relaunch on the labelled reservation: the data is there.
	t2 := shellTask("t2", o2, "grep -q hello pgdata/file", []mesos.Resource{taskCPU, mem, ports, vol2})
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpLaunch(t2)}.WithOffers(o2.ID)))
	s.awaitUpdate("t2", mesos.TASK_FINISHED)

	// DESTROY + UNRESERVE in one ACCEPT frees everything.
	o3 := s.awaitOffer("with the volume again", func(o mesos.Offer) bool { return offerHas(o, hasVolume(pid)) })
	var resv []mesos.Resource
	var vol3 mesos.Resource
	for _, r := range o3.Resources {
		switch {
		case hasVolume(pid)(r):
			vol3 = r
			resv = append(resv, r)
		case len(r.Reservations) > 0:
			resv = append(resv, r)
		}
	}
	// The disk to unreserve is the volume's disk without persistence.
	var unres []mesos.Resource
	for _, r := range resv {
		if r.Disk != nil {
			r.Disk = nil
		}
		unres = append(unres, r)
	}
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpDestroy(vol3), calls.OpUnreserve(unres...)}.WithOffers(o3.ID)))
	eventually(t, "volume directory removed", func() bool { _, err := os.Stat(hostDir); return os.IsNotExist(err) })
	o4 := s.awaitOfferDeclining("fully unreserved", func(o mesos.Offer) bool {
		// Reserved leftovers that were in another offer are unreserved as
		// Berth's garbage collection would.
		var left []mesos.Resource
		for _, r := range o.Resources {
			if len(r.Reservations) > 0 && r.Disk == nil {
				left = append(left, r)
			}
		}
		if len(left) > 0 {
			s.mustCall(calls.Accept(calls.OfferOperations{calls.OpUnreserve(left...)}.WithOffers(o.ID)).With(calls.RefuseSeconds(0)))
			return false
		}
		return sumScalar(o.Resources, "disk", unreservedRes) == 10000 && sumScalar(o.Resources, "cpus", unreservedRes) == 4
	})
	for _, r := range o4.Resources {
		if !unreservedRes(r) {
			t.Fatalf("reserved resource left: %v", r)
		}
	}
	st := operator(t, c, &master.Call{Type: master.Call_GET_STATE})
	for _, a := range st.GetState.GetAgents.Agents {
		for _, r := range a.TotalResources {
			if len(r.Reservations) > 0 || r.Disk != nil {
				t.Fatalf("GET_STATE still shows reserved %v", r)
			}
		}
	}
	ops = nil
	for _, r := range c.Operations() {
		ops = append(ops, r.Op)
	}
	if j := strings.Join(ops, ","); !strings.HasPrefix(j, "RESERVE,CREATE,LAUNCH,LAUNCH,DESTROY,UNRESERVE") || strings.Trim(strings.TrimPrefix(j, "RESERVE,CREATE,LAUNCH,LAUNCH,DESTROY"), ",UNRESERVE") != "" {
		t.Fatalf("operations = %v", ops)
	}
}

// taskSandbox finds a task's sandbox directory.
func (c *Cluster) taskSandbox(t testing.TB, fwID, taskID string) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	fw := c.frameworks[fwID]
	if fw != nil {
		if tk := fw.tasks[taskID]; tk != nil {
			return tk.sandbox
		}
		for _, tk := range fw.completed {
			if tk.info.TaskID.Value == taskID {
				return tk.sandbox
			}
		}
	}
	t.Fatalf("task %s not found", taskID)
	return ""
}
