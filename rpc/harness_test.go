package rpc_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/cluster"
	"github.com/berth-dev/berth/fsm"
	"github.com/berth-dev/berth/metrics"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
	"github.com/berth-dev/berth/rpc"
	"github.com/berth-dev/berth/rpc/clusteradapter"
)

// testLogger buffers logs and prints them only when the test fails (or
// with BERTH_TEST_LOG set), so that goroutines logging after the test do
// not call t.Log late.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	var mu sync.Mutex
	var buf bytes.Buffer
	level := slog.LevelInfo
	if os.Getenv("BERTH_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	h := slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: level})
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("BERTH_TEST_LOG") != "" {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("logs:\n%s", buf.String())
		}
	})
	return slog.New(h)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// server is one Berth server under test: an in-memory Raft node with the
// real FSM, and the API on a real loopback listener.
type server struct {
	name   string
	node   *cluster.Node
	fsm    *fsm.FSM
	broker *rpc.EventBroker
	api    *rpc.Server
	addr   string
	cancel context.CancelFunc
	done   chan error
	closed bool
	// metrics is the server's registry (nil unless clusterOpts.metrics).
	metrics *metrics.Registry
}

// url is the server's API base URL.
func (s *server) url() string { return "http://" + s.addr }

// stop shuts the API and the Raft node down (idempotent).
func (s *server) stop(t testing.TB) {
	t.Helper()
	if s.closed {
		return
	}
	s.closed = true
	s.cancel()
	if err := <-s.done; err != nil {
		t.Errorf("serve %s: %v", s.name, err)
	}
	s.broker.Close()
	if err := s.node.Close(); err != nil {
		t.Errorf("close node %s: %v", s.name, err)
	}
}

type clusterOpts struct {
	leaderWait      time.Duration
	maxRequestBytes int
	// onLeft is rpc.Config.OnLeft.
	onLeft func()
	// maxApps and maxInstances set rpc.Config's caps (0: defaults).
	maxApps, maxInstances int
	// onDisk uses the production Raft setup (boltdb log, file snapshots,
	// TCP transport, real gossip) instead of in-memory stores.
	onDisk bool
	// aclEnabled, taskUsers and defaultTaskUser set the same rpc.Config
	// fields.
	aclEnabled      bool
	taskUsers       []string
	defaultTaskUser string
	// logs, when set, receives every server's logs too.
	logs io.Writer
	// metrics turns the server's metrics on (API, FSM, gauges).
	metrics bool
	// schedulerSubscribed is Config.SchedulerSubscribed.
	schedulerSubscribed func() bool
	// mesosOperator is Config.MesosOperator.
	mesosOperator rpc.MesosOperator
	// mesosMasterURL is Config.MesosMasterURL.
	mesosMasterURL string
	// ui is Config.UI.
	ui http.Handler
	// forwardTimeout is Config.ForwardTimeout (0: the default).
	forwardTimeout time.Duration
	// maxSnapshotBytes is Config.MaxSnapshotBytes (0: the default).
	maxSnapshotBytes int
	// patientRaft sets Raft's heartbeat, election and lease timeouts to
	// 2 s: the in-memory transport has no heartbeat fast path, so a
	// follower installing a snapshot of a few MiB (slow under the race
	// detector) answers no heartbeat meanwhile, and with the 250 ms
	// default lease the leader steps down after every restore.
	patientRaft bool
}

// startServer starts one server; join is the gossip address of a running
// server ("" for the first), expect the cluster size.
func startServer(t testing.TB, name string, network *cluster.InmemNetwork, expect int, join string, o clusterOpts) *server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger(t).With("node", name)
	if o.logs != nil {
		log = slog.New(slog.NewTextHandler(o.logs, nil)).With("node", name)
	}
	f := fsm.New(log)
	var reg *metrics.Registry
	if o.metrics {
		reg = metrics.New()
		f.SetObserver(reg.FSM)
	}
	cfg := cluster.Config{
		NodeName:          name,
		InMemory:          true,
		Network:           network,
		APIAddr:           lis.Addr().String(),
		BootstrapExpect:   expect,
		FSM:               f,
		Logger:            log,
		Version:           "test",
		GossipInterval:    50 * time.Millisecond,
		ProbeInterval:     200 * time.Millisecond,
		ProbeTimeout:      100 * time.Millisecond,
		SuspicionMult:     2,
		ReconcileInterval: 100 * time.Millisecond,
		RetryJoinInterval: 200 * time.Millisecond,
		ReconnectInterval: 500 * time.Millisecond,
		// As berth server does: a snapshot is checked before raft sees it.
		VerifySnapshot:  f.PrepareRestore,
		DiscardVerified: f.DiscardPrepared,
	}
	if join != "" {
		cfg.Join = []string{join}
	}
	if o.patientRaft {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	}
	if o.onDisk {
		cfg.InMemory, cfg.Network = false, nil
		cfg.DataDir = t.TempDir()
		cfg.RaftBind = "127.0.0.1:0"
		cfg.GossipBind = "127.0.0.1:0"
	}
	node, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	broker := rpc.NewEventBroker(0, log)
	api := rpc.NewServer(rpc.Config{
		Store:            f.State,
		Cluster:          clusteradapter.New(node),
		Events:           broker,
		Publisher:        broker,
		Logger:           log,
		LeaderWait:       o.leaderWait,
		ForwardTimeout:   o.forwardTimeout,
		MaxRequestBytes:  o.maxRequestBytes,
		MaxSnapshotBytes: o.maxSnapshotBytes,
		SpoolDir:         t.TempDir(),
		OnLeft:           o.onLeft,
		MaxApps:          o.maxApps,
		MaxInstances:     o.maxInstances,
		ACLEnabled:       o.aclEnabled,
		TaskUsers:        o.taskUsers,
		DefaultTaskUser:  o.defaultTaskUser,
		Metrics:          reg,

		SchedulerSubscribed: o.schedulerSubscribed,
		MesosOperator:       o.mesosOperator,
		MesosMasterURL:      o.mesosMasterURL,
		UI:                  o.ui,
	})
	sctx, scancel := context.WithCancel(context.Background())
	s := &server{name: name, node: node, fsm: f, broker: broker, api: api, addr: lis.Addr().String(), cancel: scancel, done: make(chan error, 1), metrics: reg}
	go func() { s.done <- api.Serve(sctx, lis) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// startCluster starts n servers forming one Raft cluster and waits until
// they agree on a leader whose API address every server knows.
func startCluster(t testing.TB, n int, o clusterOpts) []*server {
	t.Helper()
	network := cluster.NewInmemNetwork()
	expect := n
	if n == 1 {
		expect = 0
	}
	servers := []*server{startServer(t, "s0", network, expect, "", o)}
	for i := 1; i < n; i++ {
		servers = append(servers, startServer(t, fmt.Sprintf("s%d", i), network, expect, servers[0].node.GossipAddr(), o))
	}
	waitLeader(t, servers)
	return servers
}

// waitLeader waits until the running servers agree on one leader and all
// know its API address; it returns the leader.
func waitLeader(t testing.TB, servers []*server) *server {
	t.Helper()
	var leader *server
	waitFor(t, 20*time.Second, "an agreed leader", func() error {
		leader = nil
		for _, s := range servers {
			if !s.closed && s.node.IsLeader() {
				leader = s
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, s := range servers {
			if s.closed {
				continue
			}
			if _, _, api := s.node.Leader(); api != leader.addr {
				return fmt.Errorf("%s sees leader api %q, want %s", s.name, api, leader.addr)
			}
		}
		return nil
	})
	return leader
}

func followerOf(servers []*server) *server {
	for _, s := range servers {
		if !s.closed && !s.node.IsLeader() {
			return s
		}
	}
	return nil
}

// waitFor polls cond until it returns nil or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// h2cClient speaks HTTP/2 without TLS (for gRPC).
func h2cClient() *http.Client {
	tr := &http.Transport{}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	tr.TLSClientConfig = &tls.Config{}
	return &http.Client{Transport: tr}
}

// clients bundles Connect clients for one server.
type clients struct {
	app        berthv1connect.AppServiceClient
	task       berthv1connect.TaskServiceClient
	deployment berthv1connect.DeploymentServiceClient
	event      berthv1connect.EventServiceClient
	cluster    berthv1connect.ClusterServiceClient
}

// clientsFor returns Connect-protocol clients over HTTP/1.1 (with opts,
// e.g. connect.WithGRPCWeb()).
func clientsFor(s *server, opts ...connect.ClientOption) clients {
	return clientsWith(s, http.DefaultClient, opts...)
}

// clientsWith returns clients using hc (h2cClient() for gRPC).
func clientsWith(s *server, hc *http.Client, opts ...connect.ClientOption) clients {
	u := s.url()
	return clients{
		app:        berthv1connect.NewAppServiceClient(hc, u, opts...),
		task:       berthv1connect.NewTaskServiceClient(hc, u, opts...),
		deployment: berthv1connect.NewDeploymentServiceClient(hc, u, opts...),
		event:      berthv1connect.NewEventServiceClient(hc, u, opts...),
		cluster:    berthv1connect.NewClusterServiceClient(hc, u, opts...),
	}
}

// appFromFile parses a testdata app file.
func appFromFile(t testing.TB, path string) *v1.App {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	app, err := appmodel.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

func mustApp(t testing.TB, js string) *v1.App {
	t.Helper()
	app, err := appmodel.Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// wantCode fails unless err is a Connect error with the given code.
func wantCode(t testing.TB, err error, code connect.Code) *connect.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v, got success", code)
	}
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != code {
		t.Fatalf("want %v, got %v", code, err)
	}
	return cerr
}

// applyDirect commits a command through the leader's Raft node, as the
// scheduler would.
func applyDirect(t testing.TB, leader *server, typ v1.CommandType, msg proto.Message) {
	t.Helper()
	cmd, err := fsm.Encode(typ, msg)
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err := leader.node.Apply(ctxFor(t, 10*time.Second), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.(*fsm.ApplyResult); r.Err != nil {
		t.Fatalf("apply %s: %v", typ, r.Err)
	}
}
