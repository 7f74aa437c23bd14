package rpc_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/scheduler"
)

// fakeOperator answers GET_FRAMEWORKS and GET_AGENTS as a Mesos master
// does; err, when set, is every call's answer.
type fakeOperator struct {
	frameworkID string
	err         error
}

func (f *fakeOperator) Call(_ context.Context, c *master.Call) (*master.Response, error) {
	if f.err != nil {
		return nil, f.err
	}
	scalar := func(name string, v float64) mesos.Resource {
		return mesos.Resource{Name: name, Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: v}}
	}
	reserved := func(r mesos.Resource) mesos.Resource {
		r.Reservations = []mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String("berth")}}
		return r
	}
	ports := func(rs ...mesos.Value_Range) mesos.Resource {
		return mesos.Resource{Name: "ports", Type: mesos.RANGES.Enum(), Ranges: &mesos.Value_Ranges{Range: rs}}
	}
	switch c.Type {
	case master.Call_GET_FRAMEWORKS:
		return &master.Response{Type: master.Response_GET_FRAMEWORKS, GetFrameworks: &master.Response_GetFrameworks{Frameworks: []master.Response_GetFrameworks_Framework{
			{FrameworkInfo: mesos.FrameworkInfo{ID: &mesos.FrameworkID{Value: "other"}}},
			{FrameworkInfo: mesos.FrameworkInfo{ID: &mesos.FrameworkID{Value: f.frameworkID}}, Active: true, Connected: true},
		}}}, nil
	case master.Call_GET_AGENTS:
		return &master.Response{Type: master.Response_GET_AGENTS, GetAgents: &master.Response_GetAgents{Agents: []master.Response_GetAgents_Agent{{
			AgentInfo: mesos.AgentInfo{Hostname: "a1", ID: &mesos.AgentID{Value: "S0"}},
			Active:    true,
			TotalResources: []mesos.Resource{
				scalar("cpus", 4), reserved(scalar("cpus", 1)), scalar("mem", 4096), reserved(scalar("mem", 512)),
				ports(mesos.Value_Range{Begin: 31000, End: 31099}, mesos.Value_Range{Begin: 32000, End: 32000}),
			},
			AllocatedResources: []mesos.Resource{scalar("cpus", 0.5), scalar("mem", 256), ports(mesos.Value_Range{Begin: 31000, End: 31000})},
		}}}}, nil
	}
	return nil, &scheduler.OperatorError{Call: c.Type, Status: http.StatusBadRequest, Message: "unknown call"}
}

// TestMesosStatus: the framework's subscription and every agent's total,
// allocated, free and reserved resources come from the master's operator
// API (the operator client AgentService uses); a master that cannot be
// reached is Unavailable, one that refuses Berth's credentials is
// PermissionDenied, both naming the master; no master is
// FailedPrecondition.
func TestMesosStatus(t *testing.T) {
	const url = "http://master.example:5050"
	s := startCluster(t, 1, clusterOpts{mesosOperator: &fakeOperator{frameworkID: "fw-1"}, mesosMasterURL: url})[0]
	applyDirect(t, s, v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: "fw-1"})
	ctx := ctxFor(t, time.Minute)
	res, err := clientsFor(s).cluster.MesosStatus(ctx, connect.NewRequest(&v1.MesosStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	got := res.Msg
	if got.GetMaster() != url || got.GetFrameworkId() != "fw-1" || !got.GetFrameworkConnected() || !got.GetFrameworkActive() {
		t.Errorf("framework: %v", got)
	}
	want := &v1.MesosAgent{
		Id: "S0", Hostname: "a1", Active: true,
		Total:     &v1.MesosResources{Cpus: 5, Mem: 4608, Ports: 101},
		Allocated: &v1.MesosResources{Cpus: 0.5, Mem: 256, Ports: 1},
		Free:      &v1.MesosResources{Cpus: 4.5, Mem: 4352, Ports: 100},
		Reserved:  &v1.MesosResources{Cpus: 1, Mem: 512},
	}
	if len(got.GetAgents()) != 1 || !proto.Equal(got.GetAgents()[0], want) {
		t.Errorf("agents: %v\nwant %v", got.GetAgents(), want)
	}

	for _, tc := range []struct {
		err  error
		code connect.Code
	}{
		{errors.New("dial tcp: connection refused"), connect.CodeUnavailable},
		{&scheduler.OperatorError{Call: master.Call_GET_FRAMEWORKS, Status: http.StatusUnauthorized, Message: "bad credentials"}, connect.CodePermissionDenied},
	} {
		bad := startCluster(t, 1, clusterOpts{mesosOperator: &fakeOperator{err: tc.err}, mesosMasterURL: url})[0]
		_, err = clientsFor(bad).cluster.MesosStatus(ctx, connect.NewRequest(&v1.MesosStatusRequest{}))
		if ce := wantCode(t, err, tc.code); !strings.Contains(ce.Message(), url) || !strings.Contains(ce.Message(), tc.err.Error()) {
			t.Errorf("error %q does not name the master and the cause %q", ce.Message(), tc.err)
		}
	}
	none := startCluster(t, 1, clusterOpts{})[0]
	_, err = clientsFor(none).cluster.MesosStatus(ctx, connect.NewRequest(&v1.MesosStatusRequest{}))
	wantCode(t, err, connect.CodeFailedPrecondition)
}
