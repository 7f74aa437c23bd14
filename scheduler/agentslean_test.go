package scheduler

import (
	"fmt"
	"testing"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
)

// agentsResponse is a GET_AGENTS answer of agents agents with berths
// labelled reservations and volumes each, as a master with Berth's
// berths reports them: one draining, one deactivated, one recovered.
func agentsResponse(agents, berths int) *master.Response {
	ga := &master.Response_GetAgents{}
	for a := range agents {
		id := fmt.Sprintf("agent-%04d", a)
		ag := master.Response_GetAgents_Agent{
			AgentInfo: mesos.AgentInfo{ID: &mesos.AgentID{Value: id}, Hostname: "host-" + id},
			Active:    true, Version: "1.11.0", PID: proto.String(fmt.Sprintf("slave(1)@10.0.%d.%d:5051", a/250, a%250)),
		}
		for b := range berths {
			label := mesos.Labels{Labels: []mesos.Label{{Key: "berth_instance", Value: proto.String(fmt.Sprintf("db.instance-%04d-%04d", a, b))}}}
			r := mesos.Resource{Name: "disk", Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: 100},
				Reservations: []mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String("berth"), Labels: &label}},
				Disk: &mesos.Resource_DiskInfo{Persistence: &mesos.Resource_DiskInfo_Persistence{ID: fmt.Sprintf("db#data#%04d-%04d", a, b)},
					Volume: &mesos.Volume{ContainerPath: "data", Mode: mesos.RW.Enum()}}}
			ag.TotalResources = append(ag.TotalResources, r)
			ag.AllocatedResources = append(ag.AllocatedResources, r)
		}
		ag.OfferedResources = ag.TotalResources[:1]
		switch a {
		case 1:
			ag.DrainInfo = &mesos.DrainInfo{State: mesos.DrainState_DRAINING, Config: mesos.DrainConfig{MarkGone: proto.Bool(true)}}
		case 2:
			ag.Deactivated = proto.Bool(true)
		}
		ga.Agents = append(ga.Agents, ag)
	}
	ga.RecoveredAgents = []mesos.AgentInfo{{ID: &mesos.AgentID{Value: "recovered"}, Hostname: "gone-host"}}
	return &master.Response{Type: master.Response_GET_AGENTS, GetAgents: ga}
}

// The lean decoding of GET_AGENTS keeps everything but the agents'
// resources: it is the full answer with those four fields empty.
func TestGetAgentsLeanDropsOnlyResources(t *testing.T) {
	full := agentsResponse(3, 4)
	b, err := proto.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	lean, err := withoutAgentResources(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(lean) >= len(b)/2 {
		t.Fatalf("lean answer %d bytes of %d: resources kept?", len(lean), len(b))
	}
	var got master.Response
	if err := proto.Unmarshal(lean, &got); err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(full).(*master.Response)
	for i := range want.GetAgents.Agents {
		a := &want.GetAgents.Agents[i]
		a.TotalResources, a.AllocatedResources, a.OfferedResources, a.ResourceProviders = nil, nil, nil, nil
	}
	if !proto.Equal(&got, want) {
		t.Fatalf("lean answer differs beyond the resources:\n got %v\nwant %v", &got, want)
	}
	if got.GetAgents.Agents[1].DrainInfo.GetState() != mesos.DrainState_DRAINING || !got.GetAgents.Agents[2].GetDeactivated() {
		t.Fatal("drain or deactivation lost")
	}
	// A truncated answer is an error, not a partial one.
	if _, err := withoutAgentResources(b[:len(b)-3]); err == nil {
		t.Fatal("a truncated answer decoded")
	}
}

// BenchmarkGetAgentsDecode: decoding a GET_AGENTS answer of 1,000 agents
// with 100 berths each (100,000), whole as before and without the
// resources as the agent poll now does.
//
//	go test -run '^$' -bench GetAgentsDecode -benchmem ./scheduler/
func BenchmarkGetAgentsDecode(b *testing.B) {
	data, err := proto.Marshal(agentsResponse(1000, 100))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var r master.Response
			if err := proto.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lean", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			lean, err := withoutAgentResources(data)
			if err != nil {
				b.Fatal(err)
			}
			var r master.Response
			if err := proto.Unmarshal(lean, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
