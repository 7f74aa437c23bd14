package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// benchDev starts `berth dev` for a benchmark and returns API clients.
func benchDev(b *testing.B) (berthv1connect.AppServiceClient, berthv1connect.TaskServiceClient) {
	b.Helper()
	dir, err := os.MkdirTemp("", "berth-bench")
	if err != nil {
		b.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	b.Cleanup(func() { os.RemoveAll(dir) })
	api, mesosAddr := freePort(b), freePort(b)
	p := startProc(b, "dev", "dev", "--data-dir", dir, "--api-addr", api, "--mesos-listen", mesosAddr)
	apps := berthv1connect.NewAppServiceClient(http.DefaultClient, "http://"+api)
	tasks := berthv1connect.NewTaskServiceClient(http.DefaultClient, "http://"+api)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := apps.ListApps(context.Background(), connect.NewRequest(&v1.ListAppsRequest{})); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("berth dev did not answer:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return apps, tasks
}

// measureAddToRunning adds app and returns the time until its one task is
// running and until it is healthy (0 if the app has no health check).
func measureAddToRunning(b *testing.B, apps berthv1connect.AppServiceClient, tasks berthv1connect.TaskServiceClient, app *v1.App) (running, healthy time.Duration) {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	if _, err := apps.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app})); err != nil {
		b.Fatal(err)
	}
	wantHealth := len(app.GetHealthChecks()) > 0
	deadline := start.Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		res, err := tasks.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{AppId: app.GetId()}))
		if err == nil && len(res.Msg.GetTasks()) == 1 {
			tk := res.Msg.GetTasks()[0]
			if running == 0 && tk.GetState() == "TASK_RUNNING" {
				running = time.Since(start)
			}
			if running > 0 && (!wantHealth || tk.GetHealthy()) {
				healthy = time.Since(start)
				return running, healthy
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("app %s not running/healthy within 3 minutes", app.GetId())
	return 0, 0
}

func reportPercentiles(b *testing.B, name string, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	pct := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	b.ReportMetric(float64(pct(0.5).Milliseconds()), name+"-p50-ms")
	b.ReportMetric(float64(pct(0.99).Milliseconds()), name+"-p99-ms")
}

// BenchmarkDevAddToRunning measures, on `berth dev`, the time from `app add`
// of a resident app (persistent volume, TCP health check every second) to
// its task RUNNING and to healthy. Each iteration adds a new app.
func BenchmarkDevAddToRunning(b *testing.B) {
	apps, tasks := benchDev(b)
	var run, health []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		app, err := appmodel.Parse([]byte(fmt.Sprintf(`{
  "id": "/bench-%d", "cpus": 0.01, "mem": 16,
  "cmd": "exec python3 -m http.server $PORT0 --bind 127.0.0.1",
  "container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 1}}]},
  "healthChecks": [{"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 1}],
  "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0}
}`, i)))
		if err != nil {
			b.Fatal(err)
		}
		r, h := measureAddToRunning(b, apps, tasks, app)
		run, health = append(run, r), append(health, h)
	}
	b.StopTimer()
	reportPercentiles(b, "running", run)
	reportPercentiles(b, "healthy", health)
}

// BenchmarkDevPostgresAddToHealthy measures the seed example: add
// deploy/examples/postgres.json (initdb on first start) until healthy.
func BenchmarkDevPostgresAddToHealthy(b *testing.B) {
	data, err := os.ReadFile("../deploy/examples/postgres.json")
	if err != nil {
		b.Fatal(err)
	}
	apps, tasks := benchDev(b)
	var run, health []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		app, err := appmodel.Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		app.Id = fmt.Sprintf("/postgres-%d", i)
		r, h := measureAddToRunning(b, apps, tasks, app)
		run, health = append(run, r), append(health, h)
	}
	b.StopTimer()
	reportPercentiles(b, "running", run)
	reportPercentiles(b, "healthy", health)
}
