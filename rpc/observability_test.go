package rpc_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	dto "github.com/prometheus/client_model/go"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// family returns the gathered samples of one metric family, by their
// label pairs rendered as "k=v,k=v".
func family(t *testing.T, s *server, name string) map[string]*dto.Metric {
	t.Helper()
	mfs, err := s.metrics.Gatherer().Gather()
	if err != nil {
		t.Fatalf("%s: gather: %v", s.name, err)
	}
	out := map[string]*dto.Metric{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var kv []string
			for _, l := range m.GetLabel() {
				kv = append(kv, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(kv, ",")] = m
		}
	}
	return out
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAPIMetricsCountRequestsByMethodProtocolAndCode(t *testing.T) {
	servers := startCluster(t, 3, clusterOpts{metrics: true})
	leader := waitLeader(t, servers)
	follower := followerOf(servers)
	ctx := ctxFor(t, 30e9)

	// A write through a follower (Connect protocol) is forwarded.
	app := mustApp(t, `{"id": "/m", "cmd": "sleep 1000", "env": {"PASSWORD": "hunter2-not-for-metrics"}}`)
	if _, err := clientsFor(follower).app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app})); err != nil {
		t.Fatal(err)
	}
	// A refused write over gRPC, and a read over gRPC-Web, on the leader.
	_, err := clientsWith(leader, h2cClient(), connect.WithGRPC()).app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: &v1.App{}}))
	wantCode(t, err, connect.CodeInvalidArgument)
	if _, err := clientsFor(leader, connect.WithGRPCWeb()).app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{})); err != nil {
		t.Fatal(err)
	}

	const create = "/berth.v1.AppService/CreateApp"
	reqs := family(t, follower, "berth_api_requests_total")
	if m := reqs["code=ok,method="+create+",protocol=connect"]; m.GetCounter().GetValue() != 1 {
		t.Errorf("follower requests: %v", reqs)
	}
	if m := family(t, follower, "berth_api_forwarded_writes_total")["method="+create]; m.GetCounter().GetValue() != 1 {
		t.Errorf("follower forwarded writes: %v", m)
	}
	reqs = family(t, leader, "berth_api_requests_total")
	for _, k := range []string{
		"code=ok,method=" + create + ",protocol=connect", // the forwarded request
		"code=invalid_argument,method=" + create + ",protocol=grpc",
		"code=ok,method=/berth.v1.AppService/ListApps,protocol=grpcweb",
	} {
		if reqs[k].GetCounter().GetValue() != 1 {
			t.Errorf("leader: no request counted as %s; have %v", k, reqs)
		}
	}
	if len(family(t, leader, "berth_api_forwarded_writes_total")) != 0 {
		t.Errorf("leader counted forwarded writes")
	}
	lat := family(t, leader, "berth_api_request_duration_seconds")["method="+create+",protocol=grpc"]
	if lat.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("leader latency histogram for gRPC CreateApp: %v", lat)
	}

	// Every server applied the create and counts one app; the leader
	// gauge is 1 on exactly one server.
	waitFor(t, 10e9, "the app on every server", func() error {
		for _, s := range servers {
			if s.fsm.State().LastIndex() < leader.fsm.State().LastIndex() {
				return io.ErrUnexpectedEOF
			}
		}
		return nil
	})
	leaders := 0.0
	for _, s := range servers {
		if g := family(t, s, "berth_state_apps")[""].GetGauge().GetValue(); g != 1 {
			t.Errorf("%s: berth_state_apps = %v", s.name, g)
		}
		if h := family(t, s, "berth_fsm_apply_duration_seconds")["command=COMMAND_TYPE_APP_CREATE"]; h.GetHistogram().GetSampleCount() != 1 {
			t.Errorf("%s: APP_CREATE applies: %v", s.name, h)
		}
		leaders += family(t, s, "berth_cluster_leader")[""].GetGauge().GetValue()
		if p := family(t, s, "berth_cluster_peers")[""].GetGauge().GetValue(); p != 3 {
			t.Errorf("%s: berth_cluster_peers = %v", s.name, p)
		}
	}
	if leaders != 1 {
		t.Errorf("berth_cluster_leader sums to %v", leaders)
	}

	// The text exposition on the API address, with no env value in it.
	code, body := get(t, leader.url()+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "berth_api_requests_total{") || strings.Contains(body, "hunter2") {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	// The summary holds counts, never env values.
	code, body = get(t, leader.url()+"/v1/debug/scheduler")
	if code != http.StatusOK || strings.Contains(body, "hunter2") || !strings.Contains(body, `"apps":1`) {
		t.Fatalf("GET /v1/debug/scheduler: %d %s", code, body)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var subscribed atomic.Bool
	servers := startCluster(t, 3, clusterOpts{schedulerSubscribed: subscribed.Load})
	leader := waitLeader(t, servers)
	for _, s := range servers {
		if code, body := get(t, s.url()+"/v1/health"); code != http.StatusOK || !strings.Contains(body, `"alive":true`) {
			t.Fatalf("%s /v1/health: %d %s", s.name, code, body)
		}
	}
	// The leader's scheduler is not subscribed: the leader is not ready,
	// and says why; followers are.
	code, body := get(t, leader.url()+"/v1/ready")
	var why struct {
		Ready  bool
		Reason string
	}
	if code != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &why) != nil || why.Ready || !strings.Contains(why.Reason, "scheduler") {
		t.Fatalf("leader /v1/ready without a subscription: %d %s", code, body)
	}
	if code, body := get(t, followerOf(servers).url()+"/v1/ready"); code != http.StatusOK {
		t.Fatalf("follower /v1/ready: %d %s", code, body)
	}
	subscribed.Store(true)
	if code, body := get(t, leader.url()+"/v1/ready"); code != http.StatusOK {
		t.Fatalf("leader /v1/ready once subscribed: %d %s", code, body)
	}
	// Without a leader (the two others stopped), no server is ready.
	for _, s := range servers {
		if s != leader {
			s.stop(t)
		}
	}
	waitFor(t, 20e9, "the lone server to lose its leader", func() error {
		if code, _ := get(t, leader.url()+"/v1/ready"); code != http.StatusServiceUnavailable {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	// Without metrics, neither /metrics nor /v1/debug/ is served.
	if code, _ := get(t, leader.url()+"/metrics"); code != http.StatusNotFound {
		t.Fatalf("GET /metrics without metrics: %d", code)
	}
}

func TestDebugEndpoints(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{metrics: true})[0]
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/v1/debug/pprof/goroutine?debug=1", http.StatusOK, "goroutine profile"},
		{"/v1/debug/pprof/heap", http.StatusOK, ""},
		{"/v1/debug/pprof/profile?seconds=0", http.StatusBadRequest, "seconds"},
		{"/v1/debug/pprof/profile?seconds=many", http.StatusBadRequest, "seconds"},
		{"/v1/debug/pprof/nothing", http.StatusNotFound, `unknown profile "nothing"`},
		{"/v1/debug/logs", http.StatusNotFound, "no recent logs"},
	} {
		code, body := get(t, s.url()+tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %.200q, want %d with %q", tc.path, code, body, tc.code, tc.want)
		}
	}
	// Plain routes are measured by route pattern, never by raw path.
	reqs := family(t, s, "berth_api_requests_total")
	if reqs["code=404,method=GET /v1/debug/pprof/{profile},protocol=http"].GetCounter().GetValue() != 1 {
		t.Errorf("pprof 404 not counted by pattern: %v", reqs)
	}
	for k := range reqs {
		if strings.Contains(k, "nothing") {
			t.Errorf("a raw path became a label value: %s", k)
		}
	}
}
