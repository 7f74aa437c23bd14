package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// Benchmarks of app creation through the API (Connect protocol over a
// loopback HTTP/1.1 connection; validation, normalization, Raft commit of
// the app and its deployment, response). Raft runs on disk (boltdb log,
// TCP transport) as in production. Each iteration creates one new app.
//
//	go test -run '^$' -bench 'CreateApp' -benchtime 1000x ./rpc/

// reportLatencies adds p50/p99 (milliseconds) to the benchmark output.
func reportLatencies(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(p * float64(len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

func benchCreate(b *testing.B, target *server) {
	c := clientsFor(target)
	ctx := ctxFor(b, 10*time.Minute)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		app := mustApp(b, fmt.Sprintf(`{"id": "/bench/app-%d", "cmd": "sleep 1000", "mem": 64, "instances": 2,
			"healthChecks": [{"protocol": "TCP"}]}`, i))
		start := time.Now()
		if _, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app})); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatencies(b, lat)
}

// BenchmarkCreateAppSingle: one server, one client, sequential requests.
func BenchmarkCreateAppSingle(b *testing.B) {
	s := startCluster(b, 1, clusterOpts{onDisk: true})[0]
	benchCreate(b, s)
}

// BenchmarkCreateAppSingleMetrics is BenchmarkCreateAppSingle with the
// server's metrics on, to measure their overhead.
func BenchmarkCreateAppSingleMetrics(b *testing.B) {
	s := startCluster(b, 1, clusterOpts{onDisk: true, metrics: true})[0]
	benchCreate(b, s)
}

// BenchmarkCreateAppSingleParallel: one server, 16 concurrent clients;
// ns/op is the inverse of throughput.
func BenchmarkCreateAppSingleParallel(b *testing.B) {
	s := startCluster(b, 1, clusterOpts{onDisk: true})[0]
	c := clientsFor(s)
	ctx := ctxFor(b, 10*time.Minute)
	var n atomic.Int64
	b.SetParallelism(8) // 8 × GOMAXPROCS(2) = 16 writers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			app := mustApp(b, fmt.Sprintf(`{"id": "/bench/par-%d", "cmd": "sleep 1000"}`, i))
			if _, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app})); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// BenchmarkCreateAppThreeLeader: a 3-server cluster, requests to the
// leader.
func BenchmarkCreateAppThreeLeader(b *testing.B) {
	servers := startCluster(b, 3, clusterOpts{onDisk: true})
	benchCreate(b, waitLeader(b, servers))
}

// BenchmarkCreateAppThreeFollower: a 3-server cluster, requests to a
// follower, which forwards them to the leader.
func BenchmarkCreateAppThreeFollower(b *testing.B) {
	servers := startCluster(b, 3, clusterOpts{onDisk: true})
	waitLeader(b, servers)
	benchCreate(b, followerOf(servers))
}

// BenchmarkListApps10k lists 10,000 apps (each with a finished deployment)
// with their summaries, as `berth app list` and /v2/apps do.
func BenchmarkListApps10k(b *testing.B) {
	s := startCluster(b, 1, clusterOpts{})[0]
	for i := range 10_000 {
		id := fmt.Sprintf("/bench/app-%05d", i)
		app := &v1.App{Id: id, Cmd: proto.String("sleep 1000"), Instances: proto.Int32(0), Version: proto.String("2025-01-01T00:00:00Z")}
		applyDirect(b, s, v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: app,
			Deployment: &v1.Deployment{Id: fmt.Sprintf("d-%d", i), AffectedApps: []string{id}, Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED}})
	}
	c := clientsFor(s)
	ctx := ctxFor(b, 10*time.Minute)
	b.ResetTimer()
	for range b.N {
		res, err := c.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
		if err != nil || len(res.Msg.Apps) != 10_000 {
			b.Fatalf("list: %v", err)
		}
	}
}

// BenchmarkCreateAppThreeFollowerMetrics is BenchmarkCreateAppThreeFollower
// with every server's metrics on.
func BenchmarkCreateAppThreeFollowerMetrics(b *testing.B) {
	servers := startCluster(b, 3, clusterOpts{onDisk: true, metrics: true})
	waitLeader(b, servers)
	benchCreate(b, followerOf(servers))
}

// BenchmarkCreateAppUnderListLoad: one server holding 2,000 apps while 100
// clients list them all in a loop; sequential creates measure what that
// load costs a write (issue 11: 100 listing clients once kept any call from
// finishing). Listings beyond the server's slots are shed (429), and the
// listing clients back off as a client is told to. The listing clients run
// in the benchmark's process and decode every answer.
func BenchmarkCreateAppUnderListLoad(b *testing.B) {
	benchCreateUnderListLoad(b, func(s *server) func(context.Context) error {
		c := clientsFor(s)
		return func(ctx context.Context) error {
			_, err := c.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
			return err
		}
	})
}

// BenchmarkCreateAppUnderRawListLoad is BenchmarkCreateAppUnderListLoad
// with listing clients that read each answer (gzip, as connect clients ask
// for it) and drop it undecoded, as clients on other machines cost this one
// nothing to decode: the server's own cost of the listings.
func BenchmarkCreateAppUnderRawListLoad(b *testing.B) {
	benchCreateUnderListLoad(b, func(s *server) func(context.Context) error {
		url := s.url() + berthv1connect.AppServiceListAppsProcedure
		return func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, http.NoBody)
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/proto")
			req.Header.Set("Connect-Protocol-Version", "1")
			req.Header.Set("Accept-Encoding", "gzip")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer res.Body.Close()
			if _, err := io.Copy(io.Discard, res.Body); err != nil {
				return err
			}
			if res.StatusCode == http.StatusTooManyRequests {
				return connect.NewError(connect.CodeResourceExhausted, errors.New(res.Status))
			}
			if res.StatusCode != http.StatusOK {
				return errors.New(res.Status)
			}
			return nil
		}
	})
}

// benchCreateUnderListLoad runs sequential creates on a server holding
// 2,000 apps while 100 clients list (newLister gives each its call).
func benchCreateUnderListLoad(b *testing.B, newLister func(*server) func(context.Context) error) {
	s := startCluster(b, 1, clusterOpts{onDisk: true})[0]
	for i := range 2_000 {
		id := fmt.Sprintf("/load/app-%05d", i)
		applyDirect(b, s, v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{
			App: &v1.App{Id: id, Cmd: proto.String("sleep 1000"), Instances: proto.Int32(0), Version: proto.String("2025-01-01T00:00:00Z")}})
	}
	ctx, stop := context.WithCancel(context.Background())
	var listed, shed atomic.Int64
	var wg sync.WaitGroup
	for range 100 {
		list := newLister(s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := list(ctx)
				switch connect.CodeOf(err) {
				case connect.CodeResourceExhausted:
					shed.Add(1)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				default:
					listed.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second) // let the listing load build up
	benchCreate(b, s)
	stop()
	wg.Wait()
	// Connections the listing clients dialled but never used sit on the
	// server as new for 5 s, the server's whole shutdown budget: close them.
	http.DefaultClient.CloseIdleConnections()
	b.ReportMetric(float64(listed.Load()), "listings")
	b.ReportMetric(float64(shed.Load()), "shed")
}
