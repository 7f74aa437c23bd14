package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// etcdValueBytes is the size of the value of every etcd put.
const etcdValueBytes = 600

// newHTTP1Client returns an HTTP/1.1 client with its own connection pool,
// as a separate user would have.
func newHTTP1Client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     time.Minute,
	}}
}

// berthCreate returns an op that creates the app /bench/<tag>/app-<i>
// (stateless, instances 0) on the server at url, as Connect JSON over
// HTTP/1.1, and a function that closes its connections.
func berthCreate(url, tag string) (op, func()) {
	hc := newHTTP1Client()
	c := berthv1connect.NewAppServiceClient(hc, url, connect.WithProtoJSON())
	do := func(ctx context.Context, i int) error {
		app := &v1.App{
			Id:        fmt.Sprintf("/bench/%s/app-%d", tag, i),
			Cmd:       proto.String("sleep 1000"),
			Instances: proto.Int32(0),
			Cpus:      proto.Float64(0.1),
			Mem:       proto.Float64(32),
		}
		_, err := c.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app}))
		return err
	}
	return do, hc.CloseIdleConnections
}

// etcdPut returns an op that puts a 600-byte value under /bench/<tag>/<i>
// through a client of its own connected to the member at url.
func etcdPut(url, tag string) (op, func(), error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 10 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("etcd client: %w", err)
	}
	value := strings.Repeat("v", etcdValueBytes)
	do := func(ctx context.Context, i int) error {
		_, err := cli.Put(ctx, fmt.Sprintf("/bench/%s/%d", tag, i), value)
		return err
	}
	return do, func() { cli.Close() }, nil
}

// createEntrySize is the size of the log entry that created the app id
// on s: the command the leader committed, rebuilt from what s stored.
func createEntrySize(s *berthServer, id string) (int, error) {
	st := s.fsm.State().Snapshot()
	app, err := st.App(id)
	if err != nil || app == nil {
		return 0, fmt.Errorf("read app %s: %v", id, err)
	}
	deps, err := st.DeploymentsByApp(id)
	if err != nil {
		return 0, err
	}
	cmd := &v1.AppCreateCommand{RequestId: "6f0d7a36-5a8b-4bd2-8f3e-1c3f2f5e9a10", App: app}
	if len(deps) > 0 {
		cmd.Deployment = deps[0]
	}
	b, err := fsm.Encode(v1.CommandType_COMMAND_TYPE_APP_CREATE, cmd)
	return len(b), err
}

// berthRawApply returns an op that commits, through Raft on the leader, an
// entry of n bytes that every server's FSM skips (a command type no server
// knows, flagged ignorable): Raft's own cost, the floor of any write.
func berthRawApply(s *berthServer, n int) op {
	cmd := make([]byte, n)
	cmd[0] = byte(127 | fsm.IgnoreUnknownTypeFlag)
	return func(ctx context.Context, i int) error {
		_, _, err := s.node.Apply(ctx, cmd)
		return err
	}
}

// berthGet returns an op that reads the app id from the server at url
// (default consistency: the server's replica), as Connect JSON.
func berthGet(url, id string) (op, func()) {
	hc := newHTTP1Client()
	c := berthv1connect.NewAppServiceClient(hc, url, connect.WithProtoJSON())
	do := func(ctx context.Context, _ int) error {
		_, err := c.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: id}))
		return err
	}
	return do, hc.CloseIdleConnections
}

// etcdGet returns an op that reads key from the member at url without
// asking the leader (a serializable read: the member's replica, as
// Berth's default read).
func etcdGet(url, key string) (op, func(), error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 10 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("etcd client: %w", err)
	}
	do := func(ctx context.Context, _ int) error {
		res, err := cli.Get(ctx, key, clientv3.WithSerializable())
		if err == nil && len(res.Kvs) != 1 {
			err = fmt.Errorf("get %s: %d keys", key, len(res.Kvs))
		}
		return err
	}
	return do, func() { cli.Close() }, nil
}
