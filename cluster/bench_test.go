package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// Benchmarks for BENCHMARKS.md. Run with:
//
//	go test -run '^$' -bench . -benchtime 2000x ./cluster/
//	go test -run '^$' -bench Failover -benchtime 10x ./cluster/
//
// The cluster benchmarks use loopback TCP and on-disk (fsync'ed) Raft logs
// in t.TempDir, like a real deployment on one machine.

func benchApply(b *testing.B, nodes []*tnode) {
	leader := waitLeader(b, nodes, 30*time.Second)
	ctx := context.Background()
	cmd := []byte("set key " + string(make([]byte, 100))) // ~100-byte entry
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, _, err := leader.node.Apply(ctx, cmd); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p := func(q float64) float64 {
		return float64(lat[int(q*float64(len(lat)-1))].Microseconds())
	}
	b.ReportMetric(p(0.50), "p50-µs")
	b.ReportMetric(p(0.99), "p99-µs")
}

// benchConfig silences logging: a benchmark's output is its numbers.
func benchConfig(_ *testing.B, c *Config) {
	c.Logger = slog.New(slog.DiscardHandler)
}

// BenchmarkApplySingleDisk: sequential Apply on one on-disk server.
func BenchmarkApplySingleDisk(b *testing.B) {
	cfg := tcpConfig(b, "solo", 0)
	benchConfig(b, &cfg)
	benchApply(b, []*tnode{start(b, cfg)})
}

// BenchmarkApplyThreeNodeLoopback: sequential Apply on the leader of a
// 3-server loopback cluster (each entry fsync'ed on a quorum).
func BenchmarkApplyThreeNodeLoopback(b *testing.B) {
	var nodes []*tnode
	for i := range 3 {
		cfg := tcpConfig(b, fmt.Sprintf("s%d", i), 3)
		if i > 0 {
			cfg.Join = []string{nodes[0].node.GossipAddr()}
		}
		benchConfig(b, &cfg)
		nodes = append(nodes, start(b, cfg))
	}
	benchApply(b, nodes)
}

// BenchmarkApplyThreeNodeParallel: 16 concurrent writers on a 3-server
// cluster; raft batches entries, so throughput (ns/op) is what matters.
func BenchmarkApplyThreeNodeParallel(b *testing.B) {
	var nodes []*tnode
	for i := range 3 {
		cfg := tcpConfig(b, fmt.Sprintf("s%d", i), 3)
		if i > 0 {
			cfg.Join = []string{nodes[0].node.GossipAddr()}
		}
		benchConfig(b, &cfg)
		nodes = append(nodes, start(b, cfg))
	}
	leader := waitLeader(b, nodes, 30*time.Second)
	cmd := []byte("set key " + string(make([]byte, 100)))
	b.SetParallelism(8) // 8 × GOMAXPROCS writers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := leader.node.Apply(context.Background(), cmd); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkFailover measures, per iteration, the time from stopping the
// leader of a 3-server loopback cluster (default timeouts) until the two
// others agree on a new leader that has committed an entry.
func BenchmarkFailover(b *testing.B) {
	var total time.Duration
	var lat []time.Duration
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		var nodes []*tnode
		for j := range 3 {
			cfg := tcpConfig(b, fmt.Sprintf("s%d", j), 3)
			if j > 0 {
				cfg.Join = []string{nodes[0].node.GossipAddr()}
			}
			benchConfig(b, &cfg)
			nodes = append(nodes, start(b, cfg))
		}
		leader := waitLeader(b, nodes, 30*time.Second)
		set(b, nodes, "warm", "up")
		survivors := without(nodes, leader)
		b.StartTimer()
		t0 := time.Now()
		leader.stop(b)
		var newLeader *tnode
		for newLeader == nil {
			if l, err := leaderOf(survivors); err == nil {
				newLeader = l
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if _, _, err := newLeader.node.Apply(context.Background(), []byte("set after failover")); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		b.StopTimer()
		total += d
		lat = append(lat, d)
		for _, tn := range survivors {
			tn.stop(b)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/failover")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
	b.ReportMetric(0, "ns/op")
}
