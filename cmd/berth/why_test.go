package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

func TestWaitingText(t *testing.T) {
	funnel := []string{"UnfulfilledRole", "UnfulfilledConstraint", "NoCorrespondingReservationFound", "AgentMaintenance",
		"InsufficientCpus", "InsufficientMemory", "InsufficientDisk", "InsufficientGpus", "InsufficientPorts", "DeclinedScarceResources"}
	summary := func(processed, unused int32, declined map[string]int32) *v1.QueueEntry {
		s := &v1.ProcessedOffersSummary{ProcessedOffersCount: processed, UnusedOffersCount: unused}
		for _, r := range funnel {
			s.RejectSummaryLaunchAttempt = append(s.RejectSummaryLaunchAttempt, &v1.OfferRejections{Reason: r, Declined: declined[r]})
		}
		return &v1.QueueEntry{AppId: "/db", InstanceIds: []string{"i1"}, ProcessedOffersSummary: s}
	}
	cases := []struct {
		e    *v1.QueueEntry
		want string
	}{
		{&v1.QueueEntry{AppId: "/db"}, "no offer processed yet"},
		// The words of issue 13: most frequent reason first.
		{summary(12, 12, map[string]int32{"UnfulfilledConstraint": 3, "InsufficientMemory": 9}), "12 offers declined: InsufficientMemory 9, UnfulfilledConstraint 3"},
		{summary(5, 4, map[string]int32{"NoCorrespondingReservationFound": 4}), "4 offers declined: NoCorrespondingReservationFound 4 (1 used)"},
	}
	for _, c := range cases {
		if got := waitingText(c.e); got != c.want {
			t.Errorf("waitingText = %q, want %q", got, c.want)
		}
	}
	if rows := waitingRows(nil); rows != nil {
		t.Errorf("no queue entry, rows %v", rows)
	}
}

// berth app list shows the columns of `dcos marathon app list`.
func TestAppListRow(t *testing.T) {
	app := &v1.App{Id: "/db/pg", Cmd: proto.String("postgres -D data"), Mem: proto.Float64(512), Cpus: proto.Float64(0.5), Instances: proto.Int32(3),
		HealthChecks: []*v1.HealthCheck{{Protocol: proto.String("TCP")}}, Container: &v1.Container{Type: proto.String("DOCKER")}}
	sum := &v1.AppSummary{TasksRunning: 2, TasksHealthy: 1, InstancesWaiting: 1, Deployments: []string{"d1"}}
	deps := map[string]*v1.Deployment{"d1": {Id: "d1", Steps: []*v1.DeploymentStep{{Actions: []*v1.DeploymentAction{{Action: "ScaleApplication", App: "/db/pg"}}}}}}
	got := appListRow(app, sum, deps)
	want := []string{"/db/pg", "512", "0.5", "2/3", "1/2", "scale", "true", "docker", "postgres -D data"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("row = %q, want %q", got, want)
	}
	if len(appListHeader) != len(want) {
		t.Errorf("header %v", appListHeader)
	}
	plain := &v1.App{Id: "/web", Args: []string{"nginx", "-g"}, Instances: proto.Int32(1)}
	got = appListRow(plain, &v1.AppSummary{TasksRunning: 1}, nil)
	want = []string{"/web", "0", "0", "1/1", "---", "---", "false", "mesos", "nginx -g"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("row = %q, want %q", got, want)
	}
}

func TestHealthAndReadinessText(t *testing.T) {
	tv := &v1.TaskView{HealthCheckResults: []*v1.HealthCheckResult{
		{Index: 0, Alive: true},
		{Index: 1, Alive: false, ConsecutiveFailures: 2, LastFailureCause: "GET http://h:1/health: status 503"},
	}, ReadinessCheckResults: []*v1.ReadinessCheckResult{{Name: "ready", LastResponse: &v1.ReadinessResponse{Status: 503, ContentType: "text/plain", Body: "starting"}}}}
	if got := healthText(tv); got != "check 1 failing (2 in a row): GET http://h:1/health: status 503" {
		t.Errorf("healthText = %q", got)
	}
	rows := checkRows(tv)
	if len(rows) != 3 || rows[2][0] != "READINESS ready" || rows[2][1] != `ready=false last answer 503 text/plain "starting"` {
		t.Errorf("check rows = %q", rows)
	}
	if got := readinessSummary(&v1.CurrentActions{Actions: []*v1.CurrentAction{{ReadinessCheckResults: tv.GetReadinessCheckResults()}}}); got != "0/1 ready" {
		t.Errorf("readinessSummary = %q", got)
	}
}

// groupAPI records the apps the CLI creates.
type groupAPI struct {
	berthv1connect.UnimplementedAppServiceHandler
	mu      sync.Mutex
	created []*v1.App
}

func (a *groupAPI) CreateApp(_ context.Context, req *connect.Request[v1.CreateAppRequest]) (*connect.Response[v1.CreateAppResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.created = append(a.created, req.Msg.App)
	app := proto.Clone(req.Msg.App).(*v1.App)
	app.Version = proto.String("2026-01-01T00:00:00Z")
	return connect.NewResponse(&v1.CreateAppResponse{App: app, DeploymentId: "d-" + app.GetId()}), nil
}

// berth app add of a Marathon group file creates each app of it, ids
// resolved against their groups, dependencies first.
func TestAppAddGroup(t *testing.T) {
	api := &groupAPI{}
	mux := http.NewServeMux()
	mux.Handle(berthv1connect.NewAppServiceHandler(api))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "shop.json")
	if err := os.WriteFile(file, []byte(`{"id": "/shop", "apps": [
		{"id": "web", "cmd": "sleep 1000", "dependencies": ["db", "/shop/cache"]},
		{"id": "db", "cmd": "sleep 1000"}],
		"groups": [{"id": "cache", "apps": [{"id": "redis", "cmd": "sleep 1000"}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, "app", "add", file, "--addr", srv.Listener.Addr().String())
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	var ids []string
	for _, a := range api.created {
		ids = append(ids, a.GetId())
	}
	if !reflect.DeepEqual(ids, []string{"/shop/db", "/shop/cache/redis", "/shop/web"}) {
		t.Fatalf("created %v (stdout %s)", ids, stdout)
	}
	if deps := api.created[2].GetDependencies(); !reflect.DeepEqual(deps, []string{"/shop/db", "/shop/cache"}) {
		t.Errorf("web dependencies %v", deps)
	}
	if !strings.Contains(stdout, "Created app /shop/web version 2026-01-01T00:00:00Z (deployment d-/shop/web)") {
		t.Errorf("stdout %q", stdout)
	}
	bad := filepath.Join(t.TempDir(), "loop.json")
	if err := os.WriteFile(bad, []byte(`{"id": "/loop", "apps": [{"id": "a", "cmd": "c", "dependencies": ["b"]}, {"id": "b", "cmd": "c", "dependencies": ["a"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCLI(t, "app", "add", bad, "--addr", srv.Listener.Addr().String()); code == 0 || !strings.Contains(stderr, "cycle") {
		t.Errorf("cycle: exit %d, %q", code, stderr)
	}
}
