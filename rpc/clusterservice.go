package rpc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

type clusterService struct{ *Server }

// Members lists the servers known through gossip.
func (c *clusterService) Members(ctx context.Context, req *connect.Request[v1.MembersRequest]) (*connect.Response[v1.MembersResponse], error) {
	res := &v1.MembersResponse{}
	for _, m := range c.clu.Members() {
		res.Members = append(res.Members, &v1.Member{
			Name: m.Name, RaftAddr: m.RaftAddr, ApiAddr: m.APIAddr, GossipAddr: m.GossipAddr,
			Status: m.Status, Version: m.Version, Leader: m.Leader, DiskError: m.DiskError,
		})
	}
	return connect.NewResponse(res), nil
}

// Leader names the current Raft leader, or fails with Unavailable when none
// is known (during an election).
func (c *clusterService) Leader(ctx context.Context, req *connect.Request[v1.LeaderRequest]) (*connect.Response[v1.LeaderResponse], error) {
	id, raftAddr, apiAddr := c.clu.Leader()
	if id == "" {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("no leader is known (election in progress?)"))
	}
	return connect.NewResponse(&v1.LeaderResponse{Id: id, RaftAddr: raftAddr, ApiAddr: apiAddr, Term: c.clu.Term()}), nil
}

// ListPeers lists the Raft configuration.
func (c *clusterService) ListPeers(ctx context.Context, req *connect.Request[v1.ListPeersRequest]) (*connect.Response[v1.ListPeersResponse], error) {
	peers, err := c.clu.Peers()
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("list raft peers: %w", err))
	}
	res := &v1.ListPeersResponse{}
	for _, p := range peers {
		suffrage := "voter"
		if !p.Voter {
			suffrage = "nonvoter"
		}
		res.Peers = append(res.Peers, &v1.Peer{Id: p.ID, Address: p.Address, Suffrage: suffrage, Leader: p.Leader})
	}
	return connect.NewResponse(res), nil
}

// leaderOp wraps a leader-only cluster operation's error: not being leader
// (any more) makes onLeader retry through the leader; anything else is a
// FailedPrecondition with the cause.
func (c *clusterService) leaderOp(what string, err error) error {
	if err == nil {
		return nil
	}
	if !c.clu.IsLeader() {
		return &notLeaderError{err}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return ctxError(err)
	}
	return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("%s: %w", what, err))
}

// RemovePeer removes a server from the Raft configuration (on the leader).
func (c *clusterService) RemovePeer(ctx context.Context, req *connect.Request[v1.RemovePeerRequest]) (*connect.Response[v1.RemovePeerResponse], error) {
	msg := req.Msg
	if msg.Id == "" {
		return nil, invalid("id", "must not be empty")
	}
	return onLeader(ctx, c.Server, req.Header(), func(ctx context.Context) (*connect.Response[v1.RemovePeerResponse], error) {
		if err := c.leaderOp("remove peer "+msg.Id, c.clu.RemovePeer(ctx, msg.Id)); err != nil {
			return nil, err
		}
		c.log.Info("raft peer removed through the api", "peer", msg.Id)
		return connect.NewResponse(&v1.RemovePeerResponse{}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.RemovePeerResponse], error) {
		return pc.cluster.RemovePeer(ctx, forwarded(ctx, msg))
	})
}

// TransferLeadership hands leadership to another server and names the new
// leader.
func (c *clusterService) TransferLeadership(ctx context.Context, req *connect.Request[v1.TransferLeadershipRequest]) (*connect.Response[v1.TransferLeadershipResponse], error) {
	msg := req.Msg
	return onLeader(ctx, c.Server, req.Header(), func(ctx context.Context) (*connect.Response[v1.TransferLeadershipResponse], error) {
		self, _, _ := c.clu.Leader()
		if err := c.clu.TransferLeadership(ctx, msg.To); err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return nil, ctxError(err)
			}
			// Not a notLeaderError: a transfer must not be retried on
			// whichever server leads next.
			return nil, connect.NewError(connect.CodeFailedPrecondition, prefixed("transfer leadership", err))
		}
		// Wait (bounded) until the new leader is known here.
		wait, cancel := context.WithTimeout(ctx, c.cfg.LeaderWait)
		defer cancel()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if id, _, _ := c.clu.Leader(); id != "" && id != self {
				c.log.Info("leadership transferred through the api", "from", self, "to", id)
				return connect.NewResponse(&v1.TransferLeadershipResponse{Leader: id}), nil
			}
			select {
			case <-wait.Done():
				return connect.NewResponse(&v1.TransferLeadershipResponse{}), nil
			case <-t.C:
			}
		}
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.TransferLeadershipResponse], error) {
		return pc.cluster.TransferLeadership(ctx, forwarded(ctx, msg))
	})
}

// Leave makes this server leave the cluster, then shut down (Config.OnLeft).
// It is never forwarded: it acts on the server that receives it.
func (c *clusterService) Leave(ctx context.Context, req *connect.Request[v1.LeaveRequest]) (*connect.Response[v1.LeaveResponse], error) {
	if err := c.clu.Leave(ctx); err != nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	c.log.Info("left the cluster through the api; shutting down")
	if c.cfg.OnLeft != nil {
		// After the answer is on its way: shutting the API down first
		// would cut it off.
		time.AfterFunc(100*time.Millisecond, c.cfg.OnLeft)
	}
	return connect.NewResponse(&v1.LeaveResponse{Id: c.clu.Name()}), nil
}
