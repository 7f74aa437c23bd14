package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/cluster"
	"github.com/berth-dev/berth/fsm"
	"github.com/berth-dev/berth/metrics"
	"github.com/berth-dev/berth/rpc"
	"github.com/berth-dev/berth/rpc/clusteradapter"
)

// berthServer is one Berth server run in this process the way `berth
// server` runs it (on-disk Raft, TCP transport, gossip, the API with its
// metrics), without the Mesos scheduler: the write path does not need it.
type berthServer struct {
	name   string
	node   *cluster.Node
	fsm    *fsm.FSM
	events *rpc.EventBroker
	addr   string
	cancel context.CancelFunc
	done   chan error
}

// berthCluster is n servers forming one Raft cluster.
type berthCluster struct{ servers []*berthServer }

// startBerth starts n servers with their data under dir and waits until
// they agree on a leader.
func startBerth(ctx context.Context, dir string, n int, logger *slog.Logger) (*berthCluster, error) {
	c := &berthCluster{}
	for i := range n {
		name := fmt.Sprintf("berth%d", i)
		join := ""
		if i > 0 {
			join = c.servers[0].node.GossipAddr()
		}
		s, err := startBerthServer(ctx, filepath.Join(dir, name), name, n, join, logger.With("node", name))
		if err != nil {
			c.stop()
			return nil, err
		}
		c.servers = append(c.servers, s)
	}
	if err := c.waitAgreed(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func startBerthServer(ctx context.Context, dir, name string, expect int, join string, logger *slog.Logger) (*berthServer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	reg := metrics.New()
	state := fsm.New(logger)
	state.SetObserver(reg.FSM)
	cfg := cluster.Config{
		NodeName:        name,
		DataDir:         dir,
		RaftBind:        "127.0.0.1:0",
		GossipBind:      "127.0.0.1:0",
		APIAddr:         lis.Addr().String(),
		BootstrapExpect: expect,
		FSM:             state,
		Logger:          logger,
		Version:         "bench",
		VerifySnapshot:  func(r io.Reader) error { return fsm.New(logger).Restore(io.NopCloser(r)) },
		CheckProposal:   fsm.CheckProposal,
	}
	if join != "" {
		cfg.Join = []string{join}
	}
	node, err := cluster.New(cfg)
	if err != nil {
		lis.Close()
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := node.Start(sctx); err != nil {
		lis.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	events := rpc.NewEventBroker(1024, logger)
	api := rpc.NewServer(rpc.Config{
		Store:     state.State,
		Cluster:   clusteradapter.New(node),
		Events:    events,
		Publisher: events,
		Logger:    logger,
		Keyring:   clusteradapter.Keyring{Node: node},
		Metrics:   reg,
	})
	serveCtx, stopServe := context.WithCancel(context.Background())
	s := &berthServer{name: name, node: node, fsm: state, events: events, addr: lis.Addr().String(), cancel: stopServe, done: make(chan error, 1)}
	go func() { s.done <- api.Serve(serveCtx, lis) }()
	return s, nil
}

func (s *berthServer) url() string { return "http://" + s.addr }

func (s *berthServer) stop() {
	s.cancel()
	<-s.done
	s.events.Close()
	s.node.Close()
}

func (c *berthCluster) stop() {
	for _, s := range c.servers {
		s.stop()
	}
}

// waitAgreed waits until one server leads and every server knows the
// leader's API address (so that followers can forward).
func (c *berthCluster) waitAgreed(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if l := c.leader(); l != nil {
			agreed := true
			for _, s := range c.servers {
				if _, _, addr := s.node.Leader(); addr != l.addr {
					agreed = false
				}
			}
			if agreed {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return errors.New("berth: no agreed leader after 2m")
}

func (c *berthCluster) leader() *berthServer {
	for _, s := range c.servers {
		if s.node.IsLeader() {
			return s
		}
	}
	return nil
}

func (c *berthCluster) follower() *berthServer {
	for _, s := range c.servers {
		if !s.node.IsLeader() {
			return s
		}
	}
	return nil
}
