package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
	"github.com/berth-dev/berth/rpc"
	"github.com/berth-dev/berth/rpc/clusteradapter"
)

// TestForwardingThreeServers: writes sent to followers are applied by the
// leader, exactly once per request id, reads come from the local replica
// (or the leader with CONSISTENT), events are relayed from the leader, and
// when the leader dies a write waits for the new leader.
func TestForwardingThreeServers(t *testing.T) {
	servers := startCluster(t, 3, clusterOpts{})
	leader := waitLeader(t, servers)
	follower := followerOf(servers)
	fc := clientsFor(follower)
	ctx := ctxFor(t, 60*time.Second)

	created, err := fc.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: appFromFile(t, seedFile), RequestId: "req-1"}))
	if err != nil {
		t.Fatal(err)
	}
	if fsm.NewTestReader(t, leader.fsm.State).App("/postgres") == nil {
		t.Fatal("app created through a follower is not on the leader")
	}
	// The same request again (a client retry): applied once, same answer.
	again, err := fc.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: appFromFile(t, seedFile), RequestId: "req-1"}))
	if err != nil {
		t.Fatalf("retried create: %v", err)
	}
	if again.Msg.DeploymentId != created.Msg.DeploymentId || again.Msg.App.GetVersion() != created.Msg.App.GetVersion() {
		t.Fatalf("retry answered differently: %v vs %v", again.Msg, created.Msg)
	}
	if n := len(fsm.NewTestReader(t, leader.fsm.State).Deployments()); n != 1 {
		t.Fatalf("%d deployments after a retried create, want 1", n)
	}
	// A different request for the same id is AlreadyExists, through the
	// follower too.
	_, err = fc.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: appFromFile(t, seedFile)}))
	wantCode(t, err, connect.CodeAlreadyExists)

	// Retried update and delete: applied once.
	upd := &v1.UpdateAppRequest{Id: "/postgres", App: &v1.App{Instances: proto.Int32(0)}, Partial: true, Force: true, RequestId: "req-2"}
	u1, err := fc.app.UpdateApp(ctx, connect.NewRequest(upd))
	if err != nil {
		t.Fatal(err)
	}
	u2, err := fc.app.UpdateApp(ctx, connect.NewRequest(upd))
	if err != nil || u2.Msg.DeploymentId != u1.Msg.DeploymentId {
		t.Fatalf("retried update = %v, %v (first %v)", u2, err, u1.Msg.DeploymentId)
	}
	if v := fsm.NewTestReader(t, leader.fsm.State).AppVersions("/postgres"); len(v) != 2 {
		t.Fatalf("versions after a retried update: %v", v)
	}

	// Validation errors come back through the forward with their details.
	_, err = fc.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t,
		`{"id": "/bad", "cmd": "x", "container": {"volumes": [{"containerPath": "d", "persistent": {"size": 0}}]}}`)}))
	cerr := wantCode(t, err, connect.CodeInvalidArgument)
	if vs := rpc.ViolationsFromError(cerr); len(vs) != 1 || vs[0].Field != "container.volumes[0].persistent.size" {
		t.Fatalf("violations through a follower = %v", vs)
	}
	// So do FSM refusals and lock errors.
	_, err = fc.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/postgres", App: &v1.App{Instances: proto.Int32(1)}, Partial: true}))
	wantCode(t, err, connect.CodeFailedPrecondition)

	// Reads: the follower's replica catches up; CONSISTENT reads are
	// answered by the leader.
	waitFor(t, 10*time.Second, "the follower's replica", func() error {
		if fsm.NewTestReader(t, follower.fsm.State).App("/postgres").GetInstances() != 0 {
			return errors.New("follower has not applied the update yet")
		}
		return nil
	})
	got, err := fc.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/postgres", Consistency: v1.ReadConsistency_READ_CONSISTENCY_CONSISTENT}))
	if err != nil || got.Msg.App.GetVersion() != u1.Msg.App.GetVersion() {
		t.Fatalf("consistent read = %v, %v", got, err)
	}
	tasks, err := fc.task.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{Consistency: v1.ReadConsistency_READ_CONSISTENCY_CONSISTENT}))
	if err != nil || len(tasks.Msg.Tasks) != 0 {
		t.Fatalf("consistent ListTasks = %v, %v", tasks, err)
	}

	// Cluster operations answer from any server.
	lr, err := fc.cluster.Leader(ctx, connect.NewRequest(&v1.LeaderRequest{}))
	if err != nil || lr.Msg.Id != leader.name || lr.Msg.ApiAddr != leader.addr {
		t.Fatalf("Leader via follower = %v, %v", lr, err)
	}
	peers, err := fc.cluster.ListPeers(ctx, connect.NewRequest(&v1.ListPeersRequest{}))
	if err != nil || len(peers.Msg.Peers) != 3 {
		t.Fatalf("ListPeers via follower = %v, %v", peers, err)
	}
	// Events published on the leader reach a client of the follower.
	sctx, scancel := context.WithCancel(ctx)
	stream, err := fc.event.StreamEvents(sctx, connect.NewRequest(&v1.StreamEventsRequest{AppId: "/postgres"}))
	if err != nil {
		t.Fatal(err)
	}
	if ev := receive(t, stream); ev.Type != rpc.EventStreamAttached {
		t.Fatalf("first relayed event = %v", ev)
	}
	leader.broker.Publish(&v1.Event{Type: "status_update_event", AppId: "/other"})
	leader.broker.Publish(&v1.Event{Type: "status_update_event", AppId: "/postgres", TaskState: "TASK_RUNNING"})
	if ev := receive(t, stream); ev.AppId != "/postgres" || ev.TaskState != "TASK_RUNNING" {
		t.Fatalf("relayed event = %v", ev)
	}
	stream.Close()
	scancel()

	// Leadership transfer through a follower.
	tr, err := fc.cluster.TransferLeadership(ctx, connect.NewRequest(&v1.TransferLeadershipRequest{}))
	if err != nil || tr.Msg.Leader == "" || tr.Msg.Leader == leader.name {
		t.Fatalf("TransferLeadership = %v, %v", tr, err)
	}
	leader = waitLeader(t, servers)
	if leader.name != tr.Msg.Leader {
		t.Fatalf("leader is %s, transfer said %s", leader.name, tr.Msg.Leader)
	}

	// The leader dies: a write through a survivor waits for the new
	// leader and succeeds.
	leader.stop(t)
	var survivor *server
	for _, s := range servers {
		if !s.closed {
			survivor = s
			break
		}
	}
	sc := clientsFor(survivor)
	res, err := sc.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/after-failover", "cmd": "x"}`)}))
	if err != nil {
		t.Fatalf("write during failover: %v", err)
	}
	newLeader := waitLeader(t, servers)
	if newLeader == leader || fsm.NewTestReader(t, newLeader.fsm.State).App("/after-failover") == nil || res.Msg.DeploymentId == "" {
		t.Fatalf("write after failover not applied by the new leader %s", newLeader.name)
	}
}

// TestNoLeaderUnavailable: with no quorum, writes fail with Unavailable
// after the bounded wait, while local reads still work.
func TestNoLeaderUnavailable(t *testing.T) {
	servers := startCluster(t, 3, clusterOpts{leaderWait: 1500 * time.Millisecond})
	leader := waitLeader(t, servers)
	c := clientsFor(leader)
	ctx := ctxFor(t, 60*time.Second)
	if _, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/a", "cmd": "x"}`)})); err != nil {
		t.Fatal(err)
	}
	var last *server
	for _, s := range servers {
		waitFor(t, 10*time.Second, "replication of /a to "+s.name, func() error {
			if fsm.NewTestReader(t, s.fsm.State).App("/a") == nil {
				return fmt.Errorf("%s lacks /a", s.name)
			}
			return nil
		})
	}
	for _, s := range servers {
		if s != leader && last == nil {
			last = s
			continue
		}
		s.stop(t)
	}
	lc := clientsFor(last)
	start := time.Now()
	_, err := lc.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/b", "cmd": "x"}`)}))
	cerr := wantCode(t, err, connect.CodeUnavailable)
	if !strings.Contains(cerr.Message(), "no leader") {
		t.Fatalf("unavailable message = %q", cerr.Message())
	}
	if time.Since(start) < 1500*time.Millisecond {
		t.Fatalf("gave up before the leader wait: %s", time.Since(start))
	}
	got, err := lc.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/a"}))
	if err != nil || got.Msg.App.GetId() != "/a" {
		t.Fatalf("stale read without a leader = %v, %v", got, err)
	}
	_, err = lc.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/a", Consistency: v1.ReadConsistency_READ_CONSISTENCY_CONSISTENT}))
	wantCode(t, err, connect.CodeUnavailable)
	waitFor(t, 10*time.Second, "the survivor to forget the leader", func() error {
		_, err = lc.cluster.Leader(ctx, connect.NewRequest(&v1.LeaderRequest{}))
		if connect.CodeOf(err) != connect.CodeUnavailable {
			return fmt.Errorf("Leader() = %v", err)
		}
		return nil
	})
}

// pausedCluster is a follower's view of a cluster whose leader first points
// at a paused server (it accepts connections but never answers), then at
// the real leader, as after a failover.
type pausedCluster struct {
	rpc.Cluster
	mu     sync.Mutex
	calls  int
	paused string
	real   string
}

func (p *pausedCluster) IsLeader() bool { return false }

func (p *pausedCluster) Leader() (string, string, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.calls == 1 {
		return "paused", "", p.paused
	}
	return "real", "", p.real
}

func TestForwardRetriesPausedLeader(t *testing.T) {
	leader := startCluster(t, 1, clusterOpts{})[0]
	// A "paused" leader: the kernel accepts connections, nobody answers.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()

	pc := &pausedCluster{Cluster: clusteradapter.New(leader.node), paused: hung.Addr().String(), real: leader.addr}
	api := rpc.NewServer(rpc.Config{
		Store:          fsm.New(nil).State,
		Cluster:        pc,
		Logger:         testLogger(t),
		ForwardTimeout: 300 * time.Millisecond,
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, lis) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	c := berthv1connect.NewAppServiceClient(http.DefaultClient, "http://"+lis.Addr().String())
	res, err := c.CreateApp(ctxFor(t, 30*time.Second), connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/p", "cmd": "x"}`)}))
	if err != nil {
		t.Fatalf("create through a follower whose leader is paused: %v", err)
	}
	if fsm.NewTestReader(t, leader.fsm.State).App("/p") == nil || res.Msg.DeploymentId == "" {
		t.Fatal("write not applied by the real leader")
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.calls < 2 {
		t.Fatalf("the paused leader was not retried past (%d leader lookups)", pc.calls)
	}
}

// TestReadYourWritesThroughFollower: a write through a follower is
// answered as soon as the leader has committed it, with its index in the
// Berth-Index header. The same follower's next read sees the write
// without the client sending anything; another server sees it when the
// client sends that index back as Berth-Min-Index; an index no server
// reaches fails the read with Unavailable instead of answering stale.
func TestReadYourWritesThroughFollower(t *testing.T) {
	servers := startCluster(t, 3, clusterOpts{forwardTimeout: 500 * time.Millisecond})
	leader := waitLeader(t, servers)
	var followers []*server
	for _, s := range servers {
		if s != leader {
			followers = append(followers, s)
		}
	}
	via, other := clientsFor(followers[0]), clientsFor(followers[1])
	ctx := ctxFor(t, 60*time.Second)

	var last uint64
	for i := range 10 {
		id := fmt.Sprintf("/ryw/app-%d", i)
		res, err := via.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, fmt.Sprintf(`{"id": %q, "cmd": "sleep 1000", "instances": 0}`, id))}))
		if err != nil {
			t.Fatal(err)
		}
		index, err := strconv.ParseUint(res.Header().Get("Berth-Index"), 10, 64)
		if err != nil || index <= last {
			t.Fatalf("create %d: Berth-Index %q (%v), previous %d", i, res.Header().Get("Berth-Index"), err, last)
		}
		last = index
		if _, err := via.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: id})); err != nil {
			t.Fatalf("read of %s from the follower it was written through: %v", id, err)
		}
		req := connect.NewRequest(&v1.GetAppRequest{Id: id})
		req.Header().Set("Berth-Min-Index", strconv.FormatUint(index, 10))
		if _, err := other.app.GetApp(ctx, req); err != nil {
			t.Fatalf("read of %s from another follower with Berth-Min-Index %d: %v", id, index, err)
		}
	}

	bad := connect.NewRequest(&v1.ListAppsRequest{})
	bad.Header().Set("Berth-Min-Index", "yesterday")
	_, err := other.app.ListApps(ctx, bad)
	if cerr := wantCode(t, err, connect.CodeInvalidArgument); !strings.Contains(cerr.Message(), "Berth-Min-Index") {
		t.Fatalf("error does not name the header: %v", cerr)
	}
	future := connect.NewRequest(&v1.ListAppsRequest{})
	future.Header().Set("Berth-Min-Index", strconv.FormatUint(last+1_000_000, 10))
	_, err = other.app.ListApps(ctx, future)
	wantCode(t, err, connect.CodeUnavailable)
}
