package mesoslocal

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

func TestReconciliationTable(t *testing.T) {
	c := simCluster(t, func(cfg *Config) { cfg.Agents = 3 })
	ids := c.AgentIDs()
	for _, pa := range []bool{true, false} {
		info := frameworkInfo("*")
		if pa {
			info.Capabilities = append(info.Capabilities, mesos.FrameworkInfo_Capability{Type: mesos.FrameworkInfo_Capability_PARTITION_AWARE})
		}
		s := subscribe(t, c, info)
		o := s.awaitOffer("on agent 0", func(o mesos.Offer) bool { return o.AgentID.Value == ids[0] })
		launch(s, o, smallTask("live", o, "sleep 1000"), smallTask("done", o, "true"))
		s.awaitUpdate("live", mesos.TASK_RUNNING)
		s.mustCall(calls.Kill("done", ids[0]))
		s.awaitUpdate("done", mesos.TASK_KILLED) // acknowledged: the master forgets it
		eventually(t, "done forgotten", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.frameworks[s.fwID].tasks["done"] == nil
		})
		if pa {
			if err := c.StopAgent(ids[1]); err != nil {
				t.Fatal(err)
			}
			if code, msg, _ := func() (int, string, []taskRunner) { c.mu.Lock(); defer c.mu.Unlock(); return c.markAgentGone(ids[2]) }(); code != 200 {
				t.Fatalf("mark gone: %d %s", code, msg)
			}
		}
		want := map[string]mesos.TaskState{
			"live":       mesos.TASK_RUNNING,
			"done":       mesos.TASK_GONE,
			"on-unr":     mesos.TASK_UNREACHABLE,
			"on-gone":    mesos.TASK_GONE_BY_OPERATOR,
			"on-nowhere": mesos.TASK_UNKNOWN,
			"no-agent":   mesos.TASK_UNKNOWN,
		}
		if !pa {
			for k, v := range want {
				if v != mesos.TASK_RUNNING {
					want[k] = mesos.TASK_LOST
				}
			}
		}
		s.mustCall(calls.Reconcile(calls.ReconcileTasks(map[string]string{
			"live": ids[0], "done": ids[0], "on-unr": ids[1], "on-gone": ids[2], "on-nowhere": "no-such-agent",
		})))
		r := &scheduler.Call{Type: scheduler.Call_RECONCILE, Reconcile: &scheduler.Call_Reconcile{Tasks: []scheduler.Call_Reconcile_Task{{TaskID: mesos.TaskID{Value: "no-agent"}}}}}
		s.mustCall(r)
		for id, state := range want {
			st := s.awaitUpdate(id, state)
			if st.GetReason() != mesos.REASON_RECONCILIATION || st.GetSource() != mesos.SOURCE_MASTER || st.UUID != nil || st.Message != nil {
				t.Fatalf("%s: %v", id, st)
			}
		}
		// Implicit reconciliation returns every tracked task.
		s.mustCall(calls.Reconcile())
		s.awaitUpdate("live", mesos.TASK_RUNNING)
		s.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN})
		s.close()
	}
}

// TestStatusUpdatesRetriedUntilAcked: one update in flight per task,
// resent until acknowledged.
func TestStatusUpdatesRetriedUntilAcked(t *testing.T) {
	c := simCluster(t, func(cfg *Config) { cfg.StatusUpdateRetry = 100 * time.Millisecond })
	s := subscribe(t, c, frameworkInfo("*"))
	s.noAck = true
	o := s.awaitOffer("any", nil)
	launch(s, o, smallTask("t", o, "x"))
	first := s.await("STARTING", func(e *scheduler.Event) bool { return e.Type == scheduler.Event_UPDATE }).Update.Status
	if first.GetState() != mesos.TASK_STARTING {
		t.Fatalf("first update %v", first.GetState())
	}
	again := s.await("STARTING resent", func(e *scheduler.Event) bool { return e.Type == scheduler.Event_UPDATE }).Update.Status
	if again.GetState() != mesos.TASK_STARTING || string(again.UUID) != string(first.UUID) {
		t.Fatalf("resent %v (uuid %x vs %x): RUNNING must wait for the ack", again.GetState(), again.UUID, first.UUID)
	}
	s.noAck = false
	s.ack(first)
	running := s.await("RUNNING", func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_UPDATE && e.Update.Status.GetState() == mesos.TASK_RUNNING
	}).Update.Status
	s.ack(running)
	tasks := operator(t, c, &master.Call{Type: master.Call_GET_TASKS}).GetTasks.Tasks
	if len(tasks) != 1 || tasks[0].GetState() != mesos.TASK_RUNNING {
		t.Fatalf("GET_TASKS %v", tasks)
	}
}

// TestRestartRecovery: a new Cluster on the same work dir brings back the
// agents with their reservations and volumes; tasks killed at Close
// (KillTasksOnClose) end with a clear reason; the data is intact.
func TestRestartRecovery(t *testing.T) {
	cfg := testConfig(t)
	c := startWith(t, cfg)
	info := berthInfo()
	s := subscribe(t, c, info)
	o := s.awaitOffer("any", nil)
	lbl, cpus, disk, vol := berthReservation("i1", "pid-1")
	task := shellTask("db", o, "echo keep > data/f && sleep 1000", []mesos.Resource{cpus, vol})
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpReserve(cpus, disk), calls.OpCreate(vol), calls.OpLaunch(task)}.WithOffers(o.ID)))
	s.awaitUpdate("db", mesos.TASK_RUNNING)
	pid := c.taskPID(s.fwID, "db")
	agentID := o.AgentID.Value
	volFile := filepath.Join(cfg.WorkDir, "agents", agentID, "volumes", "roles", "berth", "pid-1", "f")
	eventually(t, "file written", func() bool { _, err := os.Stat(volFile); return err == nil })
	s.close()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Fatal("task process survived Close")
	}

	c2 := startWith(t, cfg)
	if ids := c2.AgentIDs(); len(ids) != 1 || ids[0] != agentID {
		t.Fatalf("agents after restart %v, want [%s]", ids, agentID)
	}
	info.ID = &mesos.FrameworkID{Value: s.fwID}
	s2 := subscribe(t, c2, info)
	st := s2.awaitUpdate("db", mesos.TASK_GONE)
	if st.GetReason() != mesos.REASON_EXECUTOR_TERMINATED || st.GetMessage() == "" || len(st.UUID) != 16 {
		t.Fatalf("terminal update after restart: %v", st)
	}
	o2 := s2.awaitOffer("reservation and volume back", func(o mesos.Offer) bool { return offerHas(o, hasVolume("pid-1")) })
	if got := sumScalar(o2.Resources, "cpus", func(r mesos.Resource) bool {
		return len(r.Reservations) == 1 && r.Reservations[0].GetLabels().Equivalent(lbl)
	}); got != 0.5 {
		t.Fatalf("reserved cpus after restart %v", got)
	}
	if b, err := os.ReadFile(volFile); err != nil || string(b) != "keep\n" {
		t.Fatalf("volume data after restart: %q %v", b, err)
	}
	var v mesos.Resource
	for _, r := range o2.Resources {
		if hasVolume("pid-1")(r) {
			v = r
		}
	}
	launch(s2, o2, shellTask("db2", o2, "grep -q keep data/f", []mesos.Resource{cpus, v}))
	s2.awaitUpdate("db2", mesos.TASK_FINISHED)
}

// TestStopStartAgent: a stopped agent's tasks become UNREACHABLE for
// PARTITION_AWARE frameworks and LOST for others; when it returns they end.
func TestStopStartAgent(t *testing.T) {
	c := startCluster(t, nil)
	pa := subscribe(t, c, berthInfo())
	agent := c.firstAgent()
	o1 := pa.awaitOffer("pa", nil)
	launch(pa, o1, smallTask("pa-task", o1, "sleep 1000"))
	pa.awaitUpdate("pa-task", mesos.TASK_RUNNING)
	// Let the second framework have the rest of the agent.
	pa.mustCall(calls.Suppress())
	pa.declineOutstanding(c)
	plain := subscribe(t, c, frameworkInfo("other"))
	o2 := plain.awaitOffer("plain", nil)
	launch(plain, o2, smallTask("plain-task", o2, "sleep 1000"))
	plain.awaitUpdate("plain-task", mesos.TASK_RUNNING)
	pid := c.taskPID(pa.fwID, "pa-task")

	if err := c.StopAgent(agent); err != nil {
		t.Fatal(err)
	}
	if err := c.StopAgent(agent); err == nil {
		t.Fatal("stopping a stopped agent succeeded")
	}
	if st := pa.awaitUpdate("pa-task", mesos.TASK_UNREACHABLE); st.GetSource() != mesos.SOURCE_MASTER || st.UnreachableTime == nil {
		t.Fatalf("pa update %v", st)
	}
	plain.awaitUpdate("plain-task", mesos.TASK_LOST)
	pa.await("FAILURE", func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_FAILURE && e.Failure.GetAgentID().GetValue() == agent
	})
	if processAlive(pid) {
		t.Fatal("task process survived StopAgent")
	}
	if e := pa.tryAwait(func(e *scheduler.Event) bool { return e.Type == scheduler.Event_OFFERS }, 300*time.Millisecond); e != nil {
		t.Fatal("offer from a stopped agent")
	}
	plain.mustCall(calls.Suppress()) // its offers were rescinded with the agent
	if err := c.StartAgent(agent); err != nil {
		t.Fatal(err)
	}
	if st := pa.awaitUpdate("pa-task", mesos.TASK_GONE); st.GetReason() != mesos.REASON_EXECUTOR_TERMINATED {
		t.Fatalf("after restart: %v", st)
	}
	pa.mustCall(calls.Revive())
	pa.awaitOffer("agent back", nil)
	if err := c.StartAgent("nope"); err == nil {
		t.Fatal("starting an unknown agent succeeded")
	}
}

func TestOperatorAPI(t *testing.T) {
	c := simCluster(t, func(cfg *Config) { cfg.HeartbeatInterval = time.Hour })
	if !operator(t, c, &master.Call{Type: master.Call_GET_HEALTH}).GetHealth.Healthy {
		t.Fatal("unhealthy")
	}
	if v := operator(t, c, &master.Call{Type: master.Call_GET_VERSION}).GetVersion.VersionInfo.Version; v != "1.11.0" {
		t.Fatalf("version %q", v)
	}
	// SUBSCRIBE streams events.
	b, _ := codec(mediaJSON).marshal(&master.Call{Type: master.Call_SUBSCRIBE})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := newRequest(ctx, c.URL()+"/api/v1", b)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := recordioReader(resp.Body)
	nextEvent := func() *master.Event {
		f, err := rd()
		if err != nil {
			t.Fatalf("operator stream: %v", err)
		}
		var e master.Event
		if err := codec(mediaJSON).unmarshal(f, &e); err != nil {
			t.Fatal(err)
		}
		return &e
	}
	if e := nextEvent(); e.Type != master.Event_SUBSCRIBED || len(e.Subscribed.GetState.GetAgents.Agents) != 1 {
		t.Fatalf("operator SUBSCRIBED %v", e)
	}
	s := subscribe(t, c, berthInfo())
	o := s.awaitOffer("any", nil)
	lbl := labels("berth_framework_id", s.fwID)
	disk := reserved(scalar("disk", 10), "berth", "berth", lbl)
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpReserve(disk), calls.OpCreate(volume(disk, "v", "d")),
		calls.OpLaunch(smallTask("t", o, "x"))}.WithOffers(o.ID)))
	s.awaitUpdate("t", mesos.TASK_RUNNING)
	seen := map[master.Event_Type]bool{}
	for !(seen[master.Event_FRAMEWORK_ADDED] && seen[master.Event_TASK_ADDED] && seen[master.Event_TASK_UPDATED]) {
		seen[nextEvent().Type] = true
	}
	st := operator(t, c, &master.Call{Type: master.Call_GET_STATE}).GetState
	ag := st.GetAgents.Agents[0]
	var foundVol, foundLabels bool
	for _, r := range ag.TotalResources {
		if r.GetDisk().GetPersistence().GetID() == "v" {
			foundVol = true
		}
		if len(r.Reservations) == 1 && r.Reservations[0].GetLabels().Equivalent(lbl) && r.GetRole() == "berth" && r.Reservation.GetLabels().Equivalent(lbl) {
			foundLabels = true
		}
	}
	if !foundVol || !foundLabels {
		t.Fatalf("GET_STATE agent resources lack the volume or labelled reservation: %v", ag.TotalResources)
	}
	if len(st.GetTasks.Tasks) != 1 || len(st.GetFrameworks.Frameworks) != 1 || !st.GetFrameworks.Frameworks[0].Connected {
		t.Fatalf("GET_STATE tasks/frameworks: %+v", st)
	}
	if n := len(operator(t, c, &master.Call{Type: master.Call_GET_AGENTS}).GetAgents.Agents); n != 1 {
		t.Fatalf("GET_AGENTS: %d", n)
	}
	if n := len(operator(t, c, &master.Call{Type: master.Call_GET_FRAMEWORKS}).GetFrameworks.Frameworks); n != 1 {
		t.Fatalf("GET_FRAMEWORKS: %d", n)
	}
	if n := len(operator(t, c, &master.Call{Type: master.Call_GET_TASKS}).GetTasks.Tasks); n != 1 {
		t.Fatalf("GET_TASKS: %d", n)
	}
	// MARK_AGENT_GONE: tasks become GONE_BY_OPERATOR, the agent disappears.
	operator(t, c, &master.Call{Type: master.Call_MARK_AGENT_GONE, MarkAgentGone: &master.Call_MarkAgentGone{AgentID: o.AgentID}})
	s.awaitUpdate("t", mesos.TASK_GONE_BY_OPERATOR)
	if n := len(operator(t, c, &master.Call{Type: master.Call_GET_AGENTS}).GetAgents.Agents); n != 0 {
		t.Fatalf("GET_AGENTS after MARK_AGENT_GONE: %d", n)
	}
	if err := c.StartAgent(o.AgentID.Value); err == nil {
		t.Fatal("a gone agent came back")
	}
	// Unsupported calls say so.
	resp2, body := rawPost(t, c.URL()+"/api/v1", map[string]string{"Content-Type": mediaJSON}, []byte(`{"type":"GET_QUOTA"}`))
	if resp2.StatusCode != 501 || body == "" {
		t.Fatalf("GET_QUOTA: %d %q", resp2.StatusCode, body)
	}
	_ = proto.String
}
