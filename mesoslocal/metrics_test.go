package mesoslocal

import (
	"encoding/json"
	"net/http"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// snapshotOf reads /metrics/snapshot (or path) as a tool written for Mesos
// would: a flat object of numbers.
func snapshotOf(t *testing.T, c *Cluster, path string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(c.URL() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	var m map[string]float64
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("GET %s: not a flat object of numbers: %v", path, err)
	}
	return m
}

func TestMetricsSnapshotFollowsTasksAndOffers(t *testing.T) {
	c := startCluster(t, nil)
	m := snapshotOf(t, c, "/metrics/snapshot")
	for _, k := range []string{"master/elected", "master/slaves_active", "master/frameworks_active", "master/tasks_running",
		"master/tasks_finished", "master/outstanding_offers", "master/cpus_total", "slave/registered", "slave/tasks_running", "system/cpus_total"} {
		if _, ok := m[k]; !ok {
			t.Errorf("snapshot has no %s", k)
		}
	}
	if m["master/elected"] != 1 || m["master/slaves_active"] != 1 || m["master/frameworks_active"] != 0 || m["master/cpus_total"] <= 0 {
		t.Fatalf("idle snapshot: elected %v slaves_active %v frameworks_active %v cpus_total %v",
			m["master/elected"], m["master/slaves_active"], m["master/frameworks_active"], m["master/cpus_total"])
	}

	s := subscribe(t, c, berthInfo())
	o := s.awaitOffer("any", func(mesos.Offer) bool { return true })
	task := shellTask("t1", o, "sleep 60", []mesos.Resource{scalar("cpus", 0.1), scalar("mem", 32)})
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpLaunch(task)}.WithOffers(o.ID)))
	s.ack(s.awaitUpdate("t1", mesos.TASK_STARTING))
	s.ack(s.awaitUpdate("t1", mesos.TASK_RUNNING))

	m = snapshotOf(t, c, "/metrics/snapshot")
	fw := "master/frameworks/" + berthInfo().GetName() + "/" + s.fwID + "/"
	if m["master/tasks_running"] != 1 || m["slave/tasks_running"] != 1 || m["master/frameworks_active"] != 1 ||
		m[fw+"subscribed"] != 1 || m[fw+"offers/sent"] < 1 || m[fw+"offers/accepted"] != 1 ||
		m["master/messages_launch_tasks"] != 1 || m["master/cpus_used"] < 0.1 {
		t.Fatalf("with one running task: %v", m)
	}

	s.mustCall(calls.Kill("t1", o.AgentID.Value))
	s.ack(s.awaitUpdate("t1", mesos.TASK_KILLED))
	m = snapshotOf(t, c, "/slave(1)/metrics/snapshot")
	if m["master/tasks_running"] != 0 || m["master/tasks_killed"] != 1 || m["slave/tasks_killed"] != 1 || m["master/messages_kill_task"] != 1 {
		t.Fatalf("after the kill: running %v killed %v/%v kill messages %v",
			m["master/tasks_running"], m["master/tasks_killed"], m["slave/tasks_killed"], m["master/messages_kill_task"])
	}

	resp, err := http.Get(c.URL() + "/metrics/snapshot?timeout=soon")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad timeout: %s, want 400", resp.Status)
	}
}
