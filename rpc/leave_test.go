package rpc_test

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestLeave: `berth cluster leave` is refused while leaving would take the
// voters below the minimum quorum (nothing changes), and a server that may
// leave does, then asks to be shut down.
func TestLeave(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	servers := startCluster(t, 3, clusterOpts{})
	f := followerOf(servers)
	_, err := clientsFor(f).cluster.Leave(ctx, connect.NewRequest(&v1.LeaveRequest{}))
	ce := wantCode(t, err, connect.CodeFailedPrecondition)
	if !strings.Contains(ce.Message(), "minimum quorum of 3") {
		t.Fatalf("leave below the minimum quorum: %q", ce.Message())
	}
	peers, err := clientsFor(f).cluster.ListPeers(ctx, connect.NewRequest(&v1.ListPeersRequest{}))
	if err != nil || len(peers.Msg.Peers) != 3 {
		t.Fatalf("peers after a refused leave: %v, %v", peers, err)
	}

	left := make(chan struct{})
	alone := startCluster(t, 1, clusterOpts{onLeft: func() { close(left) }})[0]
	res, err := clientsFor(alone).cluster.Leave(ctx, connect.NewRequest(&v1.LeaveRequest{}))
	if err != nil || res.Msg.Id != alone.name {
		t.Fatalf("leave = %v, %v", res, err)
	}
	select {
	case <-left:
	case <-time.After(30 * time.Second):
		t.Fatal("OnLeft was not called after leaving")
	}
}
