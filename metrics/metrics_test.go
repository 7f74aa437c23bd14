package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
)

// What hashicorp/raft, raft-boltdb and memberlist report through
// go-metrics' compat package reaches every registry's /metrics.
func TestGoMetricsBridge(t *testing.T) {
	if err := InstallGoMetrics(); err != nil {
		t.Fatal(err)
	}
	if err := InstallGoMetrics(); err != nil { // once per process; later calls do nothing
		t.Fatal(err)
	}
	gometrics.IncrCounter([]string{"raft", "bridgeTest"}, 3)
	gometrics.SetGaugeWithLabels([]string{"raft", "replication", "lagTest"}, 7, []gometrics.Label{{Name: "peer_id", Value: "s2"}})
	body := scrapeText(t, New())
	for _, want := range []string{"berth_raft_bridgeTest 3", `berth_raft_replication_lagTest{peer_id="s2"} 7`, "go_goroutines", "berth_scheduler_offers_total{outcome=\"received\"} 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

func scrapeText(t *testing.T, r *Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// A nil family measures nothing and does not panic: "metrics off".
func TestNilMeasuresNothing(t *testing.T) {
	var r *Registry
	var a *API
	var f *FSM
	var s *Scheduler
	a.Observe("m", ProtocolConnect, "ok", time.Millisecond)
	a.Forwarded("m")
	f.CommandApplied("c", time.Millisecond)
	f.SnapshotPersisted(1, time.Millisecond)
	if s.IsSubscribed() || r.APIMetrics() != nil {
		t.Fatal("nil registry reports something")
	}
	h := http.NotFoundHandler()
	if a.Middleware(ProtocolREST, h) == nil {
		t.Fatal("nil API wrapped a handler into nil")
	}
}

func TestMiddlewareLabelsByRoutePattern(t *testing.T) {
	r := New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/apps/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusConflict) })
	srv := httptest.NewServer(r.API.Middleware(ProtocolREST, mux))
	defer srv.Close()
	for _, p := range []string{"/v2/apps/a", "/v2/apps/b", "/nowhere"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	body := scrapeText(t, r)
	for _, want := range []string{
		`berth_api_requests_total{code="409",method="GET /v2/apps/{id}",protocol="rest"} 2`,
		`berth_api_requests_total{code="404",method="unmatched",protocol="rest"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(body, "/v2/apps/a") {
		t.Error("a raw path became a label value")
	}
}

func TestStateAndClusterCollectors(t *testing.T) {
	r := New()
	r.MustRegister(
		ClusterCollector(func() ClusterStatus {
			return ClusterStatus{Leader: true, Term: 4, Peers: 3, Members: map[string]int{"alive": 2, "failed": 1}, AppliedIndex: 9}
		}),
		StateCollector(func() (StateCounts, error) {
			return StateCounts{Apps: 2, Instances: map[[2]string]int{{"running", "TASK_RUNNING"}: 3}, Deployments: map[string]int{}}, nil
		}),
		DiskCollector(t.TempDir()),
	)
	body := scrapeText(t, r)
	for _, want := range []string{
		"berth_cluster_leader 1", "berth_cluster_term 4", "berth_cluster_peers 3",
		`berth_cluster_gossip_members{status="failed"} 1`, `berth_cluster_gossip_members{status="left"} 0`,
		"berth_state_apps 2", `berth_state_instances{goal="running",state="TASK_RUNNING"} 3`,
		`berth_state_deployments{status="running"} 0`, "berth_raft_disk_total_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}
