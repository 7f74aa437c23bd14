package mesoslocal

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

func faultPost(t *testing.T, c *Cluster, what, agentID string) (int, string) {
	t.Helper()
	resp, body := rawPost(t, c.URL()+"/fault/"+what+"?agent_id="+agentID, nil, nil)
	return resp.StatusCode, body
}

// A partition cuts an agent off the master: after the ping timeout its
// task is TASK_UNREACHABLE for the (PARTITION_AWARE) framework, with its
// unreachable time, a kill cannot reach it, and its offers stop; its
// process keeps running all along. Healed, the agent reregisters: the task
// is reported TASK_RUNNING again (REASON_AGENT_REREGISTERED), the agent's
// resources are offered again, and a kill now ends the task.
func TestPartitionMarksUnreachableAndHealReregisters(t *testing.T) {
	c := startCluster(t, func(cfg *Config) {
		cfg.FaultInjection = true
		cfg.AgentPingTimeout = 300 * time.Millisecond
	})
	s := subscribe(t, c, berthInfo())
	o := s.awaitOffer("any", nil)
	agentID := o.AgentID.Value
	pidFile := filepath.Join(t.TempDir(), "pid")
	launch(s, o, smallTask("t", o, "echo $$ > "+pidFile+"; exec sleep 1000"))
	s.awaitUpdate("t", mesos.TASK_RUNNING)
	var pid int
	eventually(t, "the task's pid", func() bool {
		b, err := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})

	if code, body := faultPost(t, c, "partition", "nope"); code != http.StatusBadRequest || !strings.Contains(body, `unknown agent \"nope\"`) {
		t.Fatalf("partition of an unknown agent: %d %s", code, body)
	}
	if code, body := faultPost(t, c, "partition", agentID); code != http.StatusOK {
		t.Fatalf("partition: %d %s", code, body)
	}
	if code, body := faultPost(t, c, "partition", agentID); code != http.StatusBadRequest || !strings.Contains(body, "already partitioned") {
		t.Fatalf("second partition: %d %s", code, body)
	}
	st := s.awaitUpdate("t", mesos.TASK_UNREACHABLE)
	if st.GetReason() != mesos.REASON_AGENT_REMOVED || st.UnreachableTime == nil || st.GetSource() != mesos.SOURCE_MASTER {
		t.Fatalf("unreachable status %v", st)
	}
	s.await("FAILURE of the agent", func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_FAILURE && e.Failure.GetAgentID().GetValue() == agentID
	})
	noOfferFrom(t, c, s, agentID)
	// A kill cannot reach the agent: the master answers with the state.
	s.mustCall(calls.Kill("t", agentID))
	s.awaitUpdate("t", mesos.TASK_UNREACHABLE)
	s.mustCall(calls.Reconcile(calls.ReconcileTasks(map[string]string{"t": agentID})))
	s.awaitUpdate("t", mesos.TASK_UNREACHABLE)
	if !processAlive(pid) {
		t.Fatal("the partitioned agent's task process was stopped")
	}

	if code, body := faultPost(t, c, "heal", agentID); code != http.StatusOK {
		t.Fatalf("heal: %d %s", code, body)
	}
	st = s.awaitUpdate("t", mesos.TASK_RUNNING)
	if st.GetReason() != mesos.REASON_AGENT_REREGISTERED || st.GetAgentID().GetValue() != agentID {
		t.Fatalf("running again %v", st)
	}
	s.awaitOffer("an offer from the healed agent", func(o mesos.Offer) bool { return o.AgentID.Value == agentID })
	if code, _ := faultPost(t, c, "heal", agentID); code != http.StatusBadRequest {
		t.Fatalf("heal of an agent not partitioned: %d", code)
	}
	s.mustCall(calls.Kill("t", agentID))
	s.awaitUpdate("t", mesos.TASK_KILLED)
	eventually(t, "the task process to end", func() bool { return !processAlive(pid) })
}

// What a task reports while its agent is partitioned is held on the agent
// and delivered when it reregisters: here the task's end.
func TestPartitionHoldsUpdatesUntilHeal(t *testing.T) {
	c := startCluster(t, func(cfg *Config) {
		cfg.FaultInjection = true
		cfg.AgentPingTimeout = 200 * time.Millisecond
	})
	s := subscribe(t, c, berthInfo())
	o := s.awaitOffer("any", nil)
	stop := filepath.Join(t.TempDir(), "stop")
	launch(s, o, smallTask("t", o, "while [ ! -f "+stop+" ]; do sleep 0.1; done; exit 3"))
	s.awaitUpdate("t", mesos.TASK_RUNNING)
	if code, body := faultPost(t, c, "partition", o.AgentID.Value); code != http.StatusOK {
		t.Fatalf("partition: %d %s", code, body)
	}
	s.awaitUpdate("t", mesos.TASK_UNREACHABLE)
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if ev := s.tryAwait(func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_UPDATE && e.Update.Status.TaskID.Value == "t" && isTerminal(e.Update.Status.GetState())
	}, time.Second); ev != nil {
		t.Fatalf("an update crossed the partition: %v", ev.Update.Status)
	}
	if code, body := faultPost(t, c, "heal", o.AgentID.Value); code != http.StatusOK {
		t.Fatalf("heal: %d %s", code, body)
	}
	s.awaitUpdate("t", mesos.TASK_FAILED)
}

// Without Config.FaultInjection there is no fault endpoint.
func TestFaultInjectionIsOffByDefault(t *testing.T) {
	c := startCluster(t, nil)
	resp, _ := rawPost(t, c.URL()+"/fault/partition?agent_id=x", nil, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("fault endpoint without fault injection: %d", resp.StatusCode)
	}
}

// A task that ends while its agent is cut off, before the master marks the
// agent unreachable: the master never heard of the end, so it reports the
// task unreachable like the others, and the end arrives after the heal.
func TestPartitionTaskEndedBeforeUnreachable(t *testing.T) {
	c := startCluster(t, func(cfg *Config) {
		cfg.FaultInjection = true
		cfg.AgentPingTimeout = 2 * time.Second
	})
	s := subscribe(t, c, berthInfo())
	o := s.awaitOffer("any", nil)
	agentID := o.AgentID.Value
	done := filepath.Join(t.TempDir(), "done")
	launch(s, o, smallTask("t", o, "while [ ! -e "+done+" ]; do sleep 0.05; done"))
	s.awaitUpdate("t", mesos.TASK_RUNNING)
	if code, body := faultPost(t, c, "partition", agentID); code != http.StatusOK {
		t.Fatalf("partition: %d %s", code, body)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil { // the task ends, cut off
		t.Fatal(err)
	}
	if e := s.tryAwait(func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_UPDATE && e.Update.Status.GetState() == mesos.TASK_FINISHED
	}, time.Second); e != nil {
		t.Fatalf("the end of a task on a cut-off agent reached the framework: %v", e.Update.Status)
	}
	st := s.awaitUpdate("t", mesos.TASK_UNREACHABLE)
	if st.GetSource() != mesos.SOURCE_MASTER {
		t.Fatalf("unreachable status %v", st)
	}
	s.mustCall(calls.Reconcile(calls.ReconcileTasks(map[string]string{"t": agentID})))
	s.awaitUpdate("t", mesos.TASK_UNREACHABLE)
	if code, body := faultPost(t, c, "heal", agentID); code != http.StatusOK {
		t.Fatalf("heal: %d %s", code, body)
	}
	s.awaitUpdate("t", mesos.TASK_FINISHED)
}
