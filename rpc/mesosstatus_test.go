package rpc_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/rpc"
)

// fakeOperatorAPI answers GET_FRAMEWORKS and GET_AGENTS as a Mesos master
// does (JSON), checking the basic authentication the server sends.
func fakeOperatorAPI(t *testing.T, frameworkID string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "berth" || pass != "s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var call struct{ Type string }
		if r.URL.Path != "/api/v1" || json.Unmarshal(body, &call) != nil {
			http.Error(w, "bad call", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch call.Type {
		case "GET_FRAMEWORKS":
			io.WriteString(w, `{"type":"GET_FRAMEWORKS","get_frameworks":{"frameworks":[
				{"framework_info":{"id":{"value":"other"}},"active":false,"connected":false},
				{"framework_info":{"id":{"value":"`+frameworkID+`"}},"active":true,"connected":true}]}}`)
		case "GET_AGENTS":
			io.WriteString(w, `{"type":"GET_AGENTS","get_agents":{"agents":[{
				"agent_info":{"hostname":"a1","id":{"value":"S0"}},"active":true,
				"total_resources":[
					{"name":"cpus","type":"SCALAR","scalar":{"value":4}},
					{"name":"cpus","type":"SCALAR","scalar":{"value":1},"reservations":[{"type":"DYNAMIC","role":"berth"}]},
					{"name":"mem","type":"SCALAR","scalar":{"value":4096}},
					{"name":"mem","type":"SCALAR","scalar":{"value":512},"role":"berth","reservation":{"principal":"berth"}},
					{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31099},{"begin":32000,"end":32000}]}}],
				"allocated_resources":[
					{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}},
					{"name":"mem","type":"SCALAR","scalar":{"value":256}},
					{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31000}]}}]}]}}`)
		default:
			http.Error(w, "unknown call", http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestMesosStatus: the framework's subscription and every agent's total,
// allocated, free and reserved resources come from the master's operator
// API; a master that cannot be asked is Unavailable, naming it.
func TestMesosStatus(t *testing.T) {
	master := fakeOperatorAPI(t, "fw-1")
	s := startCluster(t, 1, clusterOpts{mesos: &rpc.MesosMaster{Master: master.URL, Principal: "berth", Secret: "s3cret"}})[0]
	applyDirect(t, s, v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: "fw-1"})
	ctx := ctxFor(t, time.Minute)
	res, err := clientsFor(s).cluster.MesosStatus(ctx, connect.NewRequest(&v1.MesosStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	got := res.Msg
	if got.GetMaster() != master.URL || got.GetFrameworkId() != "fw-1" || !got.GetFrameworkConnected() || !got.GetFrameworkActive() {
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

	wrong := startCluster(t, 1, clusterOpts{mesos: &rpc.MesosMaster{Master: master.URL, Principal: "berth", Secret: "wrong"}})[0]
	_, err = clientsFor(wrong).cluster.MesosStatus(ctx, connect.NewRequest(&v1.MesosStatusRequest{}))
	if ce := wantCode(t, err, connect.CodeUnavailable); !strings.Contains(ce.Message(), master.URL) {
		t.Errorf("error %q does not name the master", ce.Message())
	}
	none := startCluster(t, 1, clusterOpts{})[0]
	_, err = clientsFor(none).cluster.MesosStatus(ctx, connect.NewRequest(&v1.MesosStatusRequest{}))
	wantCode(t, err, connect.CodeFailedPrecondition)
}
