package mesoslocal

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/gogo/protobuf/types"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/maintenance"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// operatorStatus posts an operator call and returns the HTTP status and body.
func operatorStatus(t *testing.T, c *Cluster, call *master.Call) (int, string) {
	t.Helper()
	b, err := codec(mediaJSON).marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := rawPost(t, c.URL()+"/api/v1", map[string]string{"Content-Type": mediaJSON, "Accept": mediaJSON}, b)
	return resp.StatusCode, body
}

func agentByID(t *testing.T, c *Cluster, id string) *master.Response_GetAgents_Agent {
	t.Helper()
	for _, a := range operator(t, c, &master.Call{Type: master.Call_GET_AGENTS}).GetAgents.Agents {
		if a.AgentInfo.ID.Value == id {
			return &a
		}
	}
	return nil
}

// noOfferFrom checks that, after a few allocation rounds, the framework
// holds no offer from the agent (offers made before it was deactivated
// were rescinded).
func noOfferFrom(t *testing.T, c *Cluster, s *sched, agentID string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.frameworks[s.fwID].offers {
		if o.agent.id == agentID {
			t.Fatalf("a deactivated agent has an outstanding offer %s", o.id)
		}
	}
}

// runningTask starts a one-agent cluster, a partition-aware framework and
// its task "t", running.
func runningTask(t *testing.T) (*Cluster, *sched, mesos.Offer) {
	t.Helper()
	c := startCluster(t, nil)
	s := subscribe(t, c, berthInfo())
	o := s.awaitOffer("any", nil)
	launch(s, o, smallTask("t", o, "sleep 1000"))
	s.awaitUpdate("t", mesos.TASK_RUNNING)
	return c, s, o
}

func drainCall(id string, grace *time.Duration, markGone bool) *master.Call {
	d := &master.Call_DrainAgent{AgentID: mesos.AgentID{Value: id}, MarkGone: proto.Bool(markGone)}
	if grace != nil {
		d.MaxGracePeriod = types.DurationProto(*grace)
	}
	return &master.Call{Type: master.Call_DRAIN_AGENT, DrainAgent: d}
}

// A task that ignores SIGTERM is killed after min(kill policy grace,
// max_grace_period); the framework sees TASK_KILLED with
// REASON_AGENT_DRAINING, no more offers come from the agent, and it is
// DRAINED once the update is acknowledged; REACTIVATE brings offers back.
func TestDrainAgentKillsWithCappedGraceAndEndsDrained(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.KillGracePeriod = 30 * time.Second })
	s := subscribe(t, c, frameworkInfo("*", mesos.FrameworkInfo_Capability_PARTITION_AWARE))
	o := s.awaitOffer("any", nil)
	ti := smallTask("stubborn", o, "trap '' TERM; while true; do sleep 0.1; done")
	ti.KillPolicy = &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{Nanoseconds: int64(time.Hour)}}
	launch(s, o, ti)
	s.awaitUpdate("stubborn", mesos.TASK_RUNNING)
	s.noAck = true

	grace := 200 * time.Millisecond
	operator(t, c, drainCall(o.AgentID.Value, &grace, false))
	ag := agentByID(t, c, o.AgentID.Value)
	if ag == nil || !ag.GetDeactivated() || ag.GetDrainInfo().GetState() != mesos.DrainState_DRAINING ||
		ag.GetDrainInfo().Config.GetMaxGracePeriod().GetNanoseconds() != int64(grace) {
		t.Fatalf("GET_AGENTS while draining: %+v", ag)
	}
	// The one-hour kill policy is capped by max_grace_period: the task is
	// SIGKILLed long before a minute.
	st := s.awaitUpdate("stubborn", mesos.TASK_KILLED)
	if st.GetReason() != mesos.REASON_AGENT_DRAINING {
		t.Fatalf("drain kill reason %v, want REASON_AGENT_DRAINING", st.GetReason())
	}
	// Not acknowledged yet: the master still tracks the task, so DRAINING.
	time.Sleep(200 * time.Millisecond)
	if ag := agentByID(t, c, o.AgentID.Value); ag.GetDrainInfo().GetState() != mesos.DrainState_DRAINING {
		t.Fatalf("drained before the terminal update was acknowledged: %v", ag.GetDrainInfo())
	}
	code, body := operatorStatus(t, c, &master.Call{Type: master.Call_REACTIVATE_AGENT, ReactivateAgent: &master.Call_ReactivateAgent{AgentID: o.AgentID}})
	if code != http.StatusBadRequest || !strings.Contains(body, "DRAINING") {
		t.Fatalf("REACTIVATE while DRAINING: %d %s", code, body)
	}
	s.noAck = false
	s.ack(st)
	eventually(t, "DRAINED", func() bool {
		return agentByID(t, c, o.AgentID.Value).GetDrainInfo().GetState() == mesos.DrainState_DRAINED
	})
	noOfferFrom(t, c, s, o.AgentID.Value)
	operator(t, c, &master.Call{Type: master.Call_REACTIVATE_AGENT, ReactivateAgent: &master.Call_ReactivateAgent{AgentID: o.AgentID}})
	if ag := agentByID(t, c, o.AgentID.Value); ag.GetDeactivated() || ag.DrainInfo != nil {
		t.Fatalf("after REACTIVATE: %+v", ag)
	}
	s.mustCall(calls.Revive())
	s.awaitOffer("offer after reactivation", func(x mesos.Offer) bool { return x.AgentID == o.AgentID })
}

// With mark_gone a PARTITION_AWARE framework sees TASK_GONE_BY_OPERATOR
// (reason AGENT_DRAINING), then the agent is gone: FAILURE, no longer
// listed, never back.
func TestDrainAgentMarkGone(t *testing.T) {
	c, s, o := runningTask(t)
	operator(t, c, drainCall(o.AgentID.Value, nil, true))
	st := s.awaitUpdate("t", mesos.TASK_GONE_BY_OPERATOR)
	if st.GetReason() != mesos.REASON_AGENT_DRAINING {
		t.Fatalf("reason %v", st.GetReason())
	}
	s.await("FAILURE of the drained agent", func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_FAILURE && e.Failure.GetAgentID().GetValue() == o.AgentID.Value
	})
	if ag := agentByID(t, c, o.AgentID.Value); ag != nil {
		t.Fatalf("gone agent still listed: %+v", ag)
	}
	if code, _ := operatorStatus(t, c, drainCall(o.AgentID.Value, nil, false)); code != http.StatusBadRequest {
		t.Fatalf("DRAIN of a gone agent: %d", code)
	}
	// MARK_AGENT_GONE is idempotent, and 404 for an agent never known.
	gone := func(id string) int {
		code, _ := operatorStatus(t, c, &master.Call{Type: master.Call_MARK_AGENT_GONE, MarkAgentGone: &master.Call_MarkAgentGone{AgentID: mesos.AgentID{Value: id}}})
		return code
	}
	if code := gone(o.AgentID.Value); code != http.StatusOK {
		t.Fatalf("MARK_AGENT_GONE again: %d", code)
	}
	if code := gone("nope"); code != http.StatusNotFound {
		t.Fatalf("MARK_AGENT_GONE of an unknown agent: %d", code)
	}
}

// DEACTIVATE stops offers but leaves tasks running; REACTIVATE of an
// active agent is refused.
func TestDeactivateReactivateAgent(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("any", nil)
	launch(s, o, smallTask("t", o, "sleep 1000"))
	s.awaitUpdate("t", mesos.TASK_RUNNING)
	code, body := operatorStatus(t, c, &master.Call{Type: master.Call_REACTIVATE_AGENT, ReactivateAgent: &master.Call_ReactivateAgent{AgentID: o.AgentID}})
	if code != http.StatusBadRequest || !strings.Contains(body, "not deactivated") {
		t.Fatalf("REACTIVATE of an active agent: %d %s", code, body)
	}
	if code, _ := operatorStatus(t, c, &master.Call{Type: master.Call_DEACTIVATE_AGENT, DeactivateAgent: &master.Call_DeactivateAgent{AgentID: mesos.AgentID{Value: "nope"}}}); code != http.StatusBadRequest {
		t.Fatalf("DEACTIVATE of an unknown agent: %d", code)
	}
	operator(t, c, &master.Call{Type: master.Call_DEACTIVATE_AGENT, DeactivateAgent: &master.Call_DeactivateAgent{AgentID: o.AgentID}})
	s.mustCall(calls.Revive())
	noOfferFrom(t, c, s, o.AgentID.Value)
	if ts := operator(t, c, &master.Call{Type: master.Call_GET_TASKS}).GetTasks.Tasks; len(ts) != 1 || ts[0].GetState() != mesos.TASK_RUNNING {
		t.Fatalf("tasks of a deactivated agent: %v", ts)
	}
	operator(t, c, &master.Call{Type: master.Call_REACTIVATE_AGENT, ReactivateAgent: &master.Call_ReactivateAgent{AgentID: o.AgentID}})
	s.awaitOffer("offer after reactivation", nil)
}

// A scheduled machine's offers carry its unavailability; START_MAINTENANCE
// takes its agent down (TASK_LOST even for PARTITION_AWARE frameworks);
// STOP_MAINTENANCE brings it back without unavailability; the schedule
// survives a restart.
func TestMaintenanceScheduleUnavailabilityDownUp(t *testing.T) {
	cfg := testConfig(t)
	cfg.Agents = 2
	cfg.DistinctHosts = true
	c := startWith(t, cfg)
	s := subscribe(t, c, berthInfo())
	ids := c.AgentIDs()
	ag := agentByID(t, c, ids[1])
	host := ag.AgentInfo.Hostname
	if host != "127.0.0.2" {
		t.Fatalf("second agent's hostname %q, want 127.0.0.2", host)
	}
	machine := mesos.MachineID{Hostname: proto.String(host), IP: proto.String(host)}
	start := time.Now().Add(time.Hour)
	sch := maintenance.Schedule{Windows: []maintenance.Window{{MachineIDs: []mesos.MachineID{machine},
		Unavailability: mesos.Unavailability{Start: mesos.TimeInfo{Nanoseconds: start.UnixNano()}}}}}

	// Bad schedules are refused, naming what is wrong.
	bad := maintenance.Schedule{Windows: []maintenance.Window{{Unavailability: sch.Windows[0].Unavailability}}}
	if code, body := operatorStatus(t, c, &master.Call{Type: master.Call_UPDATE_MAINTENANCE_SCHEDULE, UpdateMaintenanceSchedule: &master.Call_UpdateMaintenanceSchedule{Schedule: bad}}); code != http.StatusBadRequest || !strings.Contains(body, "empty") {
		t.Fatalf("empty window: %d %s", code, body)
	}
	if code, _ := operatorStatus(t, c, &master.Call{Type: master.Call_START_MAINTENANCE, StartMaintenance: &master.Call_StartMaintenance{Machines: []mesos.MachineID{machine}}}); code != http.StatusBadRequest {
		t.Fatalf("START_MAINTENANCE of an unscheduled machine: %d", code)
	}

	o := s.awaitOffer("offer from the second agent", func(x mesos.Offer) bool { return x.AgentID.Value == ids[1] })
	launch(s, o, smallTask("t", o, "sleep 1000"))
	s.awaitUpdate("t", mesos.TASK_RUNNING)
	operator(t, c, &master.Call{Type: master.Call_UPDATE_MAINTENANCE_SCHEDULE, UpdateMaintenanceSchedule: &master.Call_UpdateMaintenanceSchedule{Schedule: sch}})
	got := operator(t, c, &master.Call{Type: master.Call_GET_MAINTENANCE_SCHEDULE}).GetMaintenanceSchedule.Schedule
	if len(got.Windows) != 1 || got.Windows[0].MachineIDs[0].GetHostname() != host {
		t.Fatalf("GET_MAINTENANCE_SCHEDULE: %+v", got)
	}
	s.mustCall(calls.Revive())
	u := s.awaitOffer("offer with unavailability", func(x mesos.Offer) bool { return x.AgentID.Value == ids[1] && x.Unavailability != nil })
	if u.Unavailability.Start.Nanoseconds != start.UnixNano() {
		t.Fatalf("unavailability %v", u.Unavailability)
	}
	if code, _ := operatorStatus(t, c, drainCall(ids[1], nil, false)); code != http.StatusBadRequest {
		t.Fatalf("DRAIN_AGENT of a scheduled agent: %d", code)
	}
	st := operator(t, c, &master.Call{Type: master.Call_GET_MAINTENANCE_STATUS}).GetMaintenanceStatus.Status
	if len(st.DrainingMachines) != 1 || len(st.DownMachines) != 0 {
		t.Fatalf("status while draining: %+v", st)
	}

	operator(t, c, &master.Call{Type: master.Call_START_MAINTENANCE, StartMaintenance: &master.Call_StartMaintenance{Machines: []mesos.MachineID{machine}}})
	lost := s.awaitUpdate("t", mesos.TASK_LOST)
	if lost.GetReason() != mesos.REASON_AGENT_REMOVED {
		t.Fatalf("reason %v", lost.GetReason())
	}
	if err := c.StartAgent(ids[1]); err == nil {
		t.Fatal("an agent of a DOWN machine started")
	}
	if code, _ := operatorStatus(t, c, &master.Call{Type: master.Call_UPDATE_MAINTENANCE_SCHEDULE, UpdateMaintenanceSchedule: &master.Call_UpdateMaintenanceSchedule{}}); code != http.StatusBadRequest {
		t.Fatalf("a schedule without the DOWN machine was accepted: %d", code)
	}
	st = operator(t, c, &master.Call{Type: master.Call_GET_MAINTENANCE_STATUS}).GetMaintenanceStatus.Status
	if len(st.DownMachines) != 1 || len(st.DrainingMachines) != 0 {
		t.Fatalf("status while down: %+v", st)
	}

	// The schedule and the DOWN machine survive a restart.
	c.Close()
	c = startWith(t, cfg)
	if err := c.StartAgent(ids[1]); err == nil {
		t.Fatal("an agent of a DOWN machine started after a restart")
	}
	operator(t, c, &master.Call{Type: master.Call_STOP_MAINTENANCE, StopMaintenance: &master.Call_StopMaintenance{Machines: []mesos.MachineID{machine}}})
	if got := operator(t, c, &master.Call{Type: master.Call_GET_MAINTENANCE_SCHEDULE}).GetMaintenanceSchedule.Schedule; len(got.Windows) != 0 {
		t.Fatalf("schedule after STOP_MAINTENANCE: %+v", got)
	}
	s = subscribe(t, c, berthInfo())
	back := s.awaitOffer("offer from the machine that is up again", func(x mesos.Offer) bool { return x.AgentID.Value == ids[1] })
	if back.Unavailability != nil {
		t.Fatalf("offer after STOP_MAINTENANCE carries %v", back.Unavailability)
	}
}

// Distinct hosts: each agent has its own loopback address, its tasks get
// it as $HOST... set by the framework; attributes are given in turn.
func TestDistinctHostsAndAttributes(t *testing.T) {
	cfg := testConfig(t)
	cfg.Agents = 3
	cfg.DistinctHosts = true
	cfg.AgentAttributes = "rack:r1;zone:a|rack:r2;zone:b"
	c := startWith(t, cfg)
	s := subscribe(t, c, frameworkInfo("*"))
	want := map[string][2]string{"127.0.0.1": {"r1", "a"}, "127.0.0.2": {"r2", "b"}, "127.0.0.3": {"r1", "a"}}
	seen := map[string]bool{}
	s.await("offers of every agent", func(e *scheduler.Event) bool {
		if e.Type != scheduler.Event_OFFERS {
			return false
		}
		for _, o := range e.Offers.Offers {
			w, ok := want[o.Hostname]
			if !ok {
				t.Fatalf("unexpected hostname %q", o.Hostname)
			}
			got := map[string]string{}
			for _, a := range o.Attributes {
				got[a.Name] = a.GetText().GetValue()
			}
			if got["rack"] != w[0] || got["zone"] != w[1] {
				t.Fatalf("agent %s attributes %v, want rack %s zone %s", o.Hostname, o.Attributes, w[0], w[1])
			}
			seen[o.Hostname] = true
		}
		return len(seen) == 3
	})
	if _, err := New(Config{Listen: "127.0.0.1:0", WorkDir: t.TempDir(), AgentAttributes: "rack"}); err == nil || !strings.Contains(err.Error(), "agent attributes") {
		t.Fatalf("bad attributes: %v", err)
	}
}

func TestParseAttributes(t *testing.T) {
	attrs, err := parseAttributes("rack:r1; cores:8; ports:[1-3]; tags:{x,y}")
	if err != nil {
		t.Fatal(err)
	}
	if len(attrs) != 4 || attrs[0].GetText().GetValue() != "r1" || attrs[1].GetScalar().GetValue() != 8 ||
		attrs[2].GetRanges().Range[0].End != 3 || len(attrs[3].GetSet().Item) != 2 {
		t.Fatalf("parsed %+v", attrs)
	}
	for _, bad := range []string{"x", ":v", "a:1;a:2", "s:{x", "r:[a-b]"} {
		if _, err := parseAttributes(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// With distinct hosts, an agent's MESOS_TCP/MESOS_HTTP checks connect to
// its own address (Mesos checks 127.0.0.1 of the task's machine): a task
// on the second agent listening on 127.0.0.2 is healthy.
func TestDistinctHostsHealthChecksUseAgentAddress(t *testing.T) {
	cfg := testConfig(t)
	cfg.Agents = 2
	cfg.DistinctHosts = true
	c := startWith(t, cfg)
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("offer of the second agent", func(x mesos.Offer) bool { return x.Hostname == "127.0.0.2" })
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	defer ln.Close()
	ti := smallTask("on-two", o, "sleep 1000")
	ti.HealthCheck = &mesos.HealthCheck{Type: mesos.HealthCheck_TCP, TCP: &mesos.HealthCheck_TCPCheckInfo{Port: uint32(ln.Addr().(*net.TCPAddr).Port)},
		DelaySeconds: proto.Float64(0), IntervalSeconds: proto.Float64(0.1), GracePeriodSeconds: proto.Float64(0),
		TimeoutSeconds: proto.Float64(5), ConsecutiveFailures: proto.Uint32(2)}
	launch(s, o, ti)
	ev := s.await("healthy", func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_UPDATE && e.Update.Status.TaskID.Value == "on-two" && e.Update.Status.Healthy != nil
	})
	if !ev.Update.Status.GetHealthy() {
		t.Fatalf("a check of 127.0.0.2 was not healthy: %v", ev.Update.Status)
	}
}

// Inverse offers: a framework with a task on a scheduled agent gets one
// (with the window's unavailability); its DECLINE is recorded in the
// maintenance status; the next one waits for the filter; taking the
// machine DOWN rescinds the outstanding one.
func TestInverseOffersForScheduledAgent(t *testing.T) {
	c, s, o := runningTask(t)
	ag := agentByID(t, c, o.AgentID.Value)
	machine := mesos.MachineID{Hostname: proto.String(ag.AgentInfo.Hostname), IP: proto.String("127.0.0.1")}
	start := time.Now().Add(time.Hour)
	operator(t, c, &master.Call{Type: master.Call_UPDATE_MAINTENANCE_SCHEDULE, UpdateMaintenanceSchedule: &master.Call_UpdateMaintenanceSchedule{
		Schedule: maintenance.Schedule{Windows: []maintenance.Window{{MachineIDs: []mesos.MachineID{machine},
			Unavailability: mesos.Unavailability{Start: mesos.TimeInfo{Nanoseconds: start.UnixNano()}}}}}}})
	inv := s.await("inverse offer", func(e *scheduler.Event) bool { return e.Type == scheduler.Event_INVERSE_OFFERS })
	io := inv.InverseOffers.InverseOffers[0]
	if len(inv.InverseOffers.InverseOffers) != 1 || io.GetAgentID().GetValue() != o.AgentID.Value || io.Unavailability.Start.Nanoseconds != start.UnixNano() {
		t.Fatalf("inverse offer %+v", inv.InverseOffers)
	}
	s.mustCall(calls.DeclineInverseOffers(io.OfferID).With(calls.RefuseSeconds(200 * time.Millisecond)))
	eventually(t, "DECLINE recorded", func() bool {
		st := operator(t, c, &master.Call{Type: master.Call_GET_MAINTENANCE_STATUS}).GetMaintenanceStatus.Status
		return len(st.DrainingMachines) == 1 && len(st.DrainingMachines[0].Statuses) == 1 &&
			st.DrainingMachines[0].Statuses[0].GetStatus().String() == "DECLINE"
	})
	again := s.await("a new inverse offer once the filter ends", func(e *scheduler.Event) bool { return e.Type == scheduler.Event_INVERSE_OFFERS })
	id := again.InverseOffers.InverseOffers[0].OfferID
	operator(t, c, &master.Call{Type: master.Call_START_MAINTENANCE, StartMaintenance: &master.Call_StartMaintenance{Machines: []mesos.MachineID{machine}}})
	s.await("rescind of the inverse offer", func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_RESCIND_INVERSE_OFFER && e.RescindInverseOffer.InverseOfferID == id
	})
}

// Draining an unreachable (stopped) agent is accepted; it stays DRAINING
// while away, and is DRAINED once it is back and the end of its task
// (which did not survive) is acknowledged.
func TestDrainUnreachableAgentWaitsForItsReturn(t *testing.T) {
	c, s, o := runningTask(t)
	if err := c.StopAgent(o.AgentID.Value); err != nil {
		t.Fatal(err)
	}
	s.awaitUpdate("t", mesos.TASK_UNREACHABLE)
	operator(t, c, drainCall(o.AgentID.Value, nil, false))
	time.Sleep(300 * time.Millisecond)
	if st := agentByID(t, c, o.AgentID.Value).GetDrainInfo().GetState(); st != mesos.DrainState_DRAINING {
		t.Fatalf("an unreachable agent is %v", st)
	}
	if err := c.StartAgent(o.AgentID.Value); err != nil {
		t.Fatal(err)
	}
	s.awaitUpdate("t", mesos.TASK_GONE)
	eventually(t, "DRAINED after the agent returned", func() bool {
		return agentByID(t, c, o.AgentID.Value).GetDrainInfo().GetState() == mesos.DrainState_DRAINED
	})
}
