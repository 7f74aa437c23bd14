package rpc_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/mesoslocal"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
	"github.com/berth-dev/berth/scheduler"
)

// AgentService against mesos-local: agents listed with hostnames,
// attributes and state; a maintenance window shows; a drain turns the
// agent DRAINED; gone removes it; bad requests name the field; the
// master's refusals come back with its message.
func TestAgentServiceAgainstMesosLocal(t *testing.T) {
	ml, err := mesoslocal.New(mesoslocal.Config{
		Listen: "127.0.0.1:0", WorkDir: t.TempDir(), Agents: 2, DistinctHosts: true,
		AgentResources:  "cpus:2;mem:1024;disk:1000;ports:[31000-31010]",
		AgentAttributes: "rack:r1|rack:r2", AllocationInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ml.Start(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Close() })
	op, err := scheduler.NewOperatorClient(scheduler.Config{MesosMaster: ml.URL(), Role: "berth", Principal: "berth"})
	if err != nil {
		t.Fatal(err)
	}
	servers := startCluster(t, 1, clusterOpts{mesosOperator: op})
	s := waitLeader(t, servers)
	ag := berthv1connect.NewAgentServiceClient(http.DefaultClient, s.url())
	ctx := ctxFor(t, time.Minute)

	list := func() map[string]*v1.AgentView {
		t.Helper()
		res, err := ag.ListAgents(ctx, connect.NewRequest(&v1.ListAgentsRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*v1.AgentView{}
		for _, a := range res.Msg.GetAgents() {
			out[a.GetHostname()] = a
		}
		return out
	}
	agents := list()
	a1, a2 := agents["127.0.0.1"], agents["127.0.0.2"]
	if len(agents) != 2 || a1 == nil || a2 == nil || a1.GetState() != "ACTIVE" || a2.GetAttributes()["rack"] != "r2" ||
		a2.GetIp() != "127.0.0.2" || a1.GetTotal().GetCpus() != 2 {
		t.Fatalf("agents %v", agents)
	}

	if _, err := ag.ScheduleMaintenance(ctx, connect.NewRequest(&v1.ScheduleMaintenanceRequest{AgentIds: []string{a2.GetId()}, Start: "2030-01-02T03:04:05Z", DurationSeconds: 3600})); err != nil {
		t.Fatal(err)
	}
	if got := list()["127.0.0.2"]; got.GetMaintenanceStart() != "2030-01-02T03:04:05Z" || got.GetMaintenanceDuration() != "1h0m0s" {
		t.Fatalf("maintenance not shown: %v", got)
	}
	// Mesos refuses to drain a scheduled agent; the message comes through.
	_, err = ag.DrainAgent(ctx, connect.NewRequest(&v1.DrainAgentRequest{AgentId: a2.GetId()}))
	if ce := wantCode(t, err, connect.CodeInvalidArgument); !strings.Contains(ce.Message(), "maintenance schedule") {
		t.Fatalf("drain of a scheduled agent: %v", ce)
	}

	g := 1.0
	if _, err := ag.DrainAgent(ctx, connect.NewRequest(&v1.DrainAgentRequest{AgentId: a1.GetId(), MaxGraceSeconds: &g})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "agent drained", func() error {
		if st := list()["127.0.0.1"].GetState(); st != "DRAINED" {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})
	if _, err := ag.ReactivateAgent(ctx, connect.NewRequest(&v1.ReactivateAgentRequest{AgentId: a1.GetId()})); err != nil {
		t.Fatal(err)
	}
	if st := list()["127.0.0.1"].GetState(); st != "ACTIVE" {
		t.Fatalf("after reactivate: %s", st)
	}
	if _, err := ag.MarkAgentGone(ctx, connect.NewRequest(&v1.MarkAgentGoneRequest{AgentId: a1.GetId()})); err != nil {
		t.Fatal(err)
	}
	if _, ok := list()["127.0.0.1"]; ok {
		t.Fatal("a gone agent is still listed")
	}

	// Bad requests name the field.
	_, err = ag.DrainAgent(ctx, connect.NewRequest(&v1.DrainAgentRequest{}))
	if ce := wantCode(t, err, connect.CodeInvalidArgument); !strings.Contains(ce.Message(), "agent_id") {
		t.Fatalf("empty agent id: %v", ce)
	}
	neg := -1.0
	_, err = ag.DrainAgent(ctx, connect.NewRequest(&v1.DrainAgentRequest{AgentId: a2.GetId(), MaxGraceSeconds: &neg}))
	if ce := wantCode(t, err, connect.CodeInvalidArgument); !strings.Contains(ce.Message(), "max_grace_seconds") {
		t.Fatalf("negative grace: %v", ce)
	}
	_, err = ag.StartMaintenance(ctx, connect.NewRequest(&v1.MaintenanceMachinesRequest{Agents: []string{"nope"}}))
	if ce := wantCode(t, err, connect.CodeInvalidArgument); !strings.Contains(ce.Message(), "agents[0]") {
		t.Fatalf("unknown agent: %v", ce)
	}
	// Start and stop the maintenance of the scheduled machine: DOWN (its
	// agent leaves the list), then UP (back, out of the schedule).
	if _, err := ag.StartMaintenance(ctx, connect.NewRequest(&v1.MaintenanceMachinesRequest{Agents: []string{a2.GetId()}})); err != nil {
		t.Fatal(err)
	}
	if got := list()["127.0.0.2"]; got.GetState() != "DISCONNECTED" {
		t.Fatalf("agent of a DOWN machine: %v", got)
	}
	if _, err := ag.StopMaintenance(ctx, connect.NewRequest(&v1.MaintenanceMachinesRequest{Agents: []string{"127.0.0.2"}})); err != nil {
		t.Fatal(err)
	}
	if got := list()["127.0.0.2"]; got.GetState() != "ACTIVE" || got.GetMaintenanceStart() != "" {
		t.Fatalf("after STOP_MAINTENANCE: %v", got)
	}
}

// Without a Mesos master configured, AgentService says so.
func TestAgentServiceWithoutMaster(t *testing.T) {
	s := waitLeader(t, startCluster(t, 1, clusterOpts{}))
	ag := berthv1connect.NewAgentServiceClient(http.DefaultClient, s.url())
	_, err := ag.ListAgents(ctxFor(t, 30*time.Second), connect.NewRequest(&v1.ListAgentsRequest{}))
	wantCode(t, err, connect.CodeFailedPrecondition)
}
