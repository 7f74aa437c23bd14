package e2e

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape is one GET /metrics: every sample by series name.
type scrape map[string][]sample

type sample struct {
	labels string
	value  float64
}

// scrapeMetrics reads GET /metrics from a server's API.
func scrapeMetrics(t *testing.T, api string) scrape {
	t.Helper()
	resp, err := http.Get("http://" + api + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", api, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape %s: %s, %s", api, resp.Status, resp.Header.Get("Content-Type"))
	}
	out := scrape{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: bad sample %q", api, line)
		}
		series := line[:sp]
		name, labels := series, ""
		if i := strings.IndexByte(series, '{'); i >= 0 {
			name, labels = series[:i], series[i:]
		}
		out[name] = append(out[name], sample{labels, v})
	}
	return out
}

// sum adds the samples of name whose labels contain every one of want
// (`goal="running"`...).
func (s scrape) sum(name string, want ...string) float64 {
	total := 0.0
	for _, x := range s[name] {
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(x.labels, w)
		}
		if ok {
			total += x.value
		}
	}
	return total
}

func httpStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsHealthAndDebugBundle is issue 15's promise: on a three-server
// cluster running the PostgreSQL example on mesos-local, every server serves /metrics with
// each family, and they move as the cluster works (offers and placements
// up, one instance running, exactly one leader); /v1/health and /v1/ready
// answer; mesos-local serves Mesos' /metrics/snapshot; the deploy/ alerts
// and dashboard use only series a live scrape has; and `berth operator
// debug` bundles every server's data without the app's secret env value.
func TestMetricsHealthAndDebugBundle(t *testing.T) {
	requirePostgres(t)
	c := startCluster(t, 3, "--task-users", "postgres")
	lead := c.waitLeader(c.servers)
	eventually(t, 2*time.Minute, "every server ready", func() bool {
		for _, s := range c.servers {
			if code, _ := httpStatus(t, "http://"+s.api+"/v1/ready"); code != http.StatusOK {
				return false
			}
		}
		return true
	})
	before := map[string]scrape{}
	for _, s := range c.servers {
		before[s.name] = scrapeMetrics(t, s.api)
		if code, body := httpStatus(t, "http://"+s.api+"/v1/health"); code != http.StatusOK || !strings.Contains(body, `"alive":true`) {
			t.Fatalf("%s /v1/health: %d %s", s.name, code, body)
		}
	}

	// The PostgreSQL walkthrough's app, with a secret env value that must
	// stay out of the debug bundle.
	secret := fmt.Sprintf("pw-%d-never-in-a-bundle", time.Now().UnixNano())
	var def map[string]any
	if err := json.Unmarshal([]byte(readFile(t, "../deploy/examples/postgres.json")), &def); err != nil {
		t.Fatal(err)
	}
	def["id"] = "/obs"
	def["env"].(map[string]any)["DB_PASSWORD"] = secret
	js, err := json.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	app := writeFile(t, "obs.json", string(js))
	follower := c.others(lead)[0]
	mustCLI(t, follower.api, "app", "add", app) // forwarded to the leader
	waitHealthy(t, lead.api, "/obs", nil)
	if out := mustCLI(t, lead.api, "-o", "json", "app", "show", "/obs"); !strings.Contains(out, secret) {
		t.Fatalf("the app's env value is not in the state, so the bundle check below would prove nothing:\n%s", out)
	}

	// Each family exists on every server.
	families := []string{
		"berth_api_requests_total", "berth_api_request_duration_seconds_bucket",
		"berth_fsm_apply_duration_seconds_count", "berth_fsm_snapshot_size_bytes",
		"berth_state_apps", "berth_state_instances", "berth_state_deployments",
		"berth_scheduler_offers_total", "berth_scheduler_operations_total", "berth_scheduler_decisions_total",
		"berth_scheduler_placement_duration_seconds_count", "berth_scheduler_reconciliation_missing_tasks",
		"berth_scheduler_health_checks_total", "berth_scheduler_deployments_finished_total",
		"berth_scheduler_subscribed", "berth_scheduler_resubscriptions_total",
		"berth_cluster_leader", "berth_cluster_term", "berth_cluster_peers", "berth_cluster_gossip_members",
		"berth_raft_disk_free_bytes", "go_goroutines", "process_resident_memory_bytes",
		// go-metrics from hashicorp/raft, raft-boltdb and memberlist.
		"berth_raft_boltdb_storeLogs_count", "berth_memberlist_gossip_count",
	}
	var after map[string]scrape
	eventually(t, time.Minute, "the metrics to show the running instance on every server", func() bool {
		after = map[string]scrape{}
		for _, s := range c.servers {
			after[s.name] = scrapeMetrics(t, s.api)
			if after[s.name].sum("berth_state_instances", `goal="running"`, `state="TASK_RUNNING"`) != 1 {
				return false
			}
		}
		return true
	})
	leaders := 0
	for _, s := range c.servers {
		m := after[s.name]
		for _, f := range families {
			if _, ok := m[f]; !ok {
				t.Errorf("%s: no %s in /metrics", s.name, f)
			}
		}
		leaders += int(m.sum("berth_cluster_leader"))
		if got := m.sum("berth_cluster_leader"); (s == lead) != (got == 1) {
			t.Errorf("%s: berth_cluster_leader = %v (leader is %s)", s.name, got, lead.name)
		}
		if m.sum("berth_cluster_peers") != 3 || m.sum("berth_cluster_gossip_members", `status="alive"`) != 3 {
			t.Errorf("%s: peers %v, alive members %v; want 3 and 3", s.name, m.sum("berth_cluster_peers"), m.sum("berth_cluster_gossip_members", `status="alive"`))
		}
		if m.sum("berth_state_apps") != 1 {
			t.Errorf("%s: berth_state_apps = %v", s.name, m.sum("berth_state_apps"))
		}
		// Every server applied the app's creation.
		if m.sum("berth_fsm_apply_duration_seconds_count", `command="COMMAND_TYPE_APP_CREATE"`) < 1 {
			t.Errorf("%s: no APP_CREATE applied in berth_fsm_apply_duration_seconds_count", s.name)
		}
	}
	if leaders != 1 {
		t.Errorf("berth_cluster_leader sums to %d over the servers, want 1", leaders)
	}
	l, l0 := after[lead.name], before[lead.name]
	for _, f := range []string{"berth_raft_apply", "berth_raft_commitTime_count", "berth_raft_leader_dispatchLog_count"} {
		if _, ok := l[f]; !ok {
			t.Errorf("leader: no %s (from hashicorp/raft) in /metrics", f)
		}
	}
	for _, mv := range []struct {
		what          string
		name          string
		labels        []string
		before, after float64
	}{
		{"offers received", "berth_scheduler_offers_total", []string{`outcome="received"`}, 0, 0},
		{"offers accepted", "berth_scheduler_offers_total", []string{`outcome="accepted"`}, 0, 0},
		{"RESERVE sent", "berth_scheduler_operations_total", []string{`operation="RESERVE"`}, 0, 0},
		{"LAUNCH sent", "berth_scheduler_operations_total", []string{`operation="LAUNCH"`}, 0, 0},
		{"placements", "berth_scheduler_placement_duration_seconds_count", nil, 0, 0},
		{"plans committed", "berth_scheduler_plan_commit_duration_seconds_count", []string{`result="ok"`}, 0, 0},
		{"decisions on offers", "berth_scheduler_decisions_total", []string{`input="offers"`}, 0, 0},
	} {
		b, a := l0.sum(mv.name, mv.labels...), l.sum(mv.name, mv.labels...)
		if a <= b {
			t.Errorf("leader: %s did not move: %s%v %v -> %v", mv.what, mv.name, mv.labels, b, a)
		}
	}
	if l.sum("berth_scheduler_subscribed") != 1 {
		t.Errorf("leader: berth_scheduler_subscribed = %v", l.sum("berth_scheduler_subscribed"))
	}
	fm := after[follower.name]
	if fm.sum("berth_api_forwarded_writes_total", `method="/berth.v1.AppService/CreateApp"`) < 1 ||
		fm.sum("berth_api_requests_total", `method="/berth.v1.AppService/CreateApp"`, `code="ok"`) < 1 {
		t.Errorf("follower %s: CreateApp not counted as a forwarded request: %v", follower.name, fm["berth_api_forwarded_writes_total"])
	}

	// mesos-local speaks Mesos' metrics endpoint.
	code, body := httpStatus(t, "http://"+c.mesosAddr+"/metrics/snapshot")
	var snap map[string]float64
	if code != http.StatusOK || json.Unmarshal([]byte(body), &snap) != nil {
		t.Fatalf("mesos-local /metrics/snapshot: %d %s", code, body)
	}
	if snap["master/tasks_running"] != 1 || snap["master/elected"] != 1 || snap["master/slaves_active"] != 2 || snap["master/frameworks_active"] != 1 {
		t.Errorf("mesos-local snapshot: tasks_running %v elected %v slaves_active %v frameworks_active %v",
			snap["master/tasks_running"], snap["master/elected"], snap["master/slaves_active"], snap["master/frameworks_active"])
	}

	checkDeployReferences(t, after)

	// The debug bundle.
	bundle := filepath.Join(t.TempDir(), "bundle.tar.gz")
	mustCLI(t, follower.api, "operator", "debug", "--duration", "3s", "--interval", "1s", "--output", bundle)
	files := readBundle(t, bundle)
	for _, s := range c.servers {
		for _, f := range []string{"metrics/000.prom", "metrics/002.prom", "cpu.pprof", "heap.pprof", "goroutine.txt", "logs.txt", "ready.json"} {
			name := "berth-debug/servers/" + s.name + "/" + f
			if len(files[name]) == 0 {
				t.Errorf("bundle: %s missing or empty", name)
			}
		}
		if !strings.Contains(string(files["berth-debug/servers/"+s.name+"/metrics/000.prom"]), "berth_cluster_leader") {
			t.Errorf("bundle: %s's metrics scrape has no berth_cluster_leader", s.name)
		}
		// The window's log lines: at least the CPU profile's request.
		if !strings.Contains(string(files["berth-debug/servers/"+s.name+"/logs.txt"]), "serving a profile") {
			t.Errorf("bundle: %s's logs.txt lacks the lines of the window:\n%s", s.name, files["berth-debug/servers/"+s.name+"/logs.txt"])
		}
	}
	for _, f := range []string{"manifest.json", "cluster/members.json", "cluster/peers.json", "cluster/scheduler-summary.json"} {
		if len(files["berth-debug/"+f]) == 0 {
			t.Errorf("bundle: %s missing or empty", f)
		}
	}
	var summary struct {
		Leader    bool           `json:"leader"`
		Apps      int            `json:"apps"`
		Instances map[string]int `json:"instances"`
	}
	if err := json.Unmarshal(files["berth-debug/cluster/scheduler-summary.json"], &summary); err != nil ||
		!summary.Leader || summary.Apps != 1 || summary.Instances["running/TASK_RUNNING"] != 1 {
		t.Errorf("bundle: scheduler summary %s (err %v)", files["berth-debug/cluster/scheduler-summary.json"], err)
	}
	for name, data := range files {
		if strings.Contains(string(data), secret) || strings.Contains(string(gunzipOr(data)), secret) {
			t.Errorf("bundle: %s holds the app's secret env value", name)
		}
	}
}

// checkDeployReferences checks that every series the Prometheus alert
// rules and the Grafana dashboard in deploy/ query exists in a live scrape
// of some server.
func checkDeployReferences(t *testing.T, scrapes map[string]scrape) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range scrapes {
		for name := range s {
			seen[name] = true
		}
	}
	series := regexp.MustCompile(`\b(?:berth|go|process)_[A-Za-z0-9_]+\b`)
	var exprs []string
	rules, err := os.ReadFile("../deploy/prometheus/berth-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(line), "expr:"); ok {
			exprs = append(exprs, e)
		}
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	raw, err := os.ReadFile("../deploy/grafana/berth-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana/berth-dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("found only %d expressions in deploy/", len(exprs))
	}
	for _, e := range exprs {
		for _, name := range series.FindAllString(e, -1) {
			if !seen[name] {
				t.Errorf("deploy/ queries %s (in %q), which no server's /metrics has", name, e)
			}
		}
	}
}

// readBundle reads every file of a .tar.gz.
func readBundle(t *testing.T, file string) map[string][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("bundle is not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("bundle: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("bundle %s: %v", h.Name, err)
		}
		out[h.Name] = b
	}
}

// gunzipOr returns data decompressed when it is gzip, else data.
func gunzipOr(data []byte) []byte {
	zr, err := gzip.NewReader(strings.NewReader(string(data)))
	if err != nil {
		return data
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return data
	}
	return b
}
