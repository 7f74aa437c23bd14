package marathon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/cluster"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/rpc"
	"github.com/berth-dev/berth/rpc/clusteradapter"
	"github.com/berth-dev/berth/rpc/marathon"
)

// server is one Berth server under test: an in-memory Raft node with the
// real FSM, and the API (Connect and /v2) on a loopback listener. No
// scheduler runs: deployments stay running (so apps stay locked) and
// instances are what a test commits.
type server struct {
	name   string
	node   *cluster.Node
	fsm    *fsm.FSM
	broker *rpc.EventBroker
	addr   string
	cancel context.CancelFunc
	done   chan error
	closed bool
	// live stands in for the scheduler's leader-local knowledge.
	live *fakeLive
}

// fakeLive is a scheduler.Live a test fills in.
type fakeLive struct {
	mu      sync.Mutex
	queue   []*v1.QueueEntry
	results []*v1.TaskCheckResults
}

func (f *fakeLive) set(queue []*v1.QueueEntry, results []*v1.TaskCheckResults) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue, f.results = queue, results
}

func (f *fakeLive) Queue(appID string) []*v1.QueueEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*v1.QueueEntry
	for _, e := range f.queue {
		if appID == "" || e.GetAppId() == appID {
			out = append(out, e)
		}
	}
	return out
}

func (f *fakeLive) CheckResults(appID string) []*v1.TaskCheckResults {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*v1.TaskCheckResults
	for _, r := range f.results {
		if appID == "" || r.GetAppId() == appID {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeLive) ReasonFunnel() []string {
	return []string{"UnfulfilledRole", "UnfulfilledConstraint", "NoCorrespondingReservationFound", "AgentMaintenance",
		"InsufficientCpus", "InsufficientMemory", "InsufficientDisk", "InsufficientGpus", "InsufficientPorts", "DeclinedScarceResources"}
}

func (s *server) url() string { return "http://" + s.addr }

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

func testLogger(t testing.TB) *slog.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	h := slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelInfo})
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

func startServer(t testing.TB, name string, network *cluster.InmemNetwork, expect int, join string) *server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger(t).With("node", name)
	f := fsm.New(log)
	cfg := cluster.Config{
		NodeName: name, InMemory: true, Network: network, APIAddr: lis.Addr().String(),
		BootstrapExpect: expect, FSM: f, Logger: log, Version: "test",
		GossipInterval: 50 * time.Millisecond, ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		SuspicionMult: 2, ReconcileInterval: 100 * time.Millisecond, RetryJoinInterval: 200 * time.Millisecond,
		ReconnectInterval: 500 * time.Millisecond,
	}
	if join != "" {
		cfg.Join = []string{join}
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
	live := &fakeLive{}
	api := rpc.NewServer(rpc.Config{
		Store: f.State, Cluster: clusteradapter.New(node), Events: broker, Publisher: broker, Logger: log, Live: live,
		REST: marathon.New(marathon.Config{Store: f.State, Version: "test", Logger: log}).Handler,
	})
	sctx, scancel := context.WithCancel(context.Background())
	s := &server{name: name, node: node, fsm: f, broker: broker, addr: lis.Addr().String(), cancel: scancel, done: make(chan error, 1), live: live}
	go func() { s.done <- api.Serve(sctx, lis) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// startCluster starts n servers and waits for an agreed leader.
func startCluster(t testing.TB, n int) []*server {
	t.Helper()
	network := cluster.NewInmemNetwork()
	expect := n
	if n == 1 {
		expect = 0
	}
	servers := []*server{startServer(t, "s0", network, expect, "")}
	for i := 1; i < n; i++ {
		servers = append(servers, startServer(t, fmt.Sprintf("s%d", i), network, expect, servers[0].node.GossipAddr()))
	}
	waitFor(t, 20*time.Second, "an agreed leader", func() error {
		var leader *server
		for _, s := range servers {
			if s.node.IsLeader() {
				leader = s
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, s := range servers {
			if _, _, api := s.node.Leader(); api != leader.addr {
				return fmt.Errorf("%s sees leader api %q", s.name, api)
			}
		}
		return nil
	})
	return servers
}

func leaderOf(servers []*server) *server {
	for _, s := range servers {
		if !s.closed && s.node.IsLeader() {
			return s
		}
	}
	return nil
}

func followerOf(servers []*server) *server {
	for _, s := range servers {
		if !s.closed && !s.node.IsLeader() {
			return s
		}
	}
	return nil
}

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

// applyDirect commits a command through the leader's Raft node, as the
// scheduler would.
func applyDirect(t testing.TB, leader *server, typ v1.CommandType, msg proto.Message) {
	t.Helper()
	cmd, err := fsm.Encode(typ, msg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, _, err := leader.node.Apply(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.(*fsm.ApplyResult); r.Err != nil {
		t.Fatalf("apply %s: %v", typ, r.Err)
	}
}

// response is one REST answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into v, failing the test if it is not JSON.
func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body is not the expected JSON (%v): %s", err, r.body)
	}
}

// obj decodes the body as an object.
func (r response) obj(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.json(t, &m)
	return m
}

// do sends one REST request (body: a string of JSON, or nil).
func do(t testing.TB, s *server, method, path string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.url()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// want fails unless the answer has the status.
func want(t testing.TB, r response, status int, what string) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.status, status, r.body)
	}
	return r
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
