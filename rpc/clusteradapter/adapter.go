// Package clusteradapter lets a cluster.Node serve as the rpc package's
// Cluster, translating the few types the two packages do not share.
package clusteradapter

import (
	"context"
	"io"

	"github.com/berth-dev/berth/cluster"
	"github.com/berth-dev/berth/rpc"
)

// Node adapts a *cluster.Node to rpc.Cluster.
type Node struct{ *cluster.Node }

// New returns n as an rpc.Cluster.
func New(n *cluster.Node) rpc.Cluster { return Node{n} }

// Members lists the servers known through gossip.
func (n Node) Members() []rpc.MemberInfo {
	ms := n.Node.Members()
	out := make([]rpc.MemberInfo, 0, len(ms))
	for _, m := range ms {
		out = append(out, rpc.MemberInfo{
			Name: m.Name, RaftAddr: m.RaftAddr, APIAddr: m.APIAddr, GossipAddr: m.GossipAddr,
			Status: string(m.Status), Version: m.Version, Leader: m.Leader, DiskError: m.DiskError,
		})
	}
	return out
}

// Peers lists the Raft configuration.
func (n Node) Peers() ([]rpc.PeerInfo, error) {
	ps, err := n.Node.Peers()
	if err != nil {
		return nil, err
	}
	out := make([]rpc.PeerInfo, 0, len(ps))
	for _, p := range ps {
		out = append(out, rpc.PeerInfo{ID: p.ID, Address: p.Address, Voter: p.Voter, Leader: p.Leader})
	}
	return out, nil
}

// SaveSnapshot streams a snapshot to w.
func (n Node) SaveSnapshot(ctx context.Context, w io.Writer) (rpc.SnapshotMeta, error) {
	info, err := n.Node.SaveSnapshot(ctx, w)
	if err != nil {
		return rpc.SnapshotMeta{}, err
	}
	return rpc.SnapshotMeta{Index: info.Index, Term: info.Term}, nil
}

// RestoreSnapshot restores a snapshot read from r.
func (n Node) RestoreSnapshot(ctx context.Context, r io.Reader) (rpc.SnapshotMeta, error) {
	info, err := n.Node.RestoreSnapshot(ctx, r)
	if err != nil {
		return rpc.SnapshotMeta{}, err
	}
	return rpc.SnapshotMeta{Index: info.Index, Term: info.Term}, nil
}

// Keyring adapts a *cluster.Node's gossip keyring to rpc.Keyring.
type Keyring struct{ *cluster.Node }

// ChangeGossipKeyring applies "install", "use" or "remove" with key.
func (k Keyring) ChangeGossipKeyring(op, key string) error {
	return k.Node.ChangeGossipKeyring(cluster.KeyringOp(op), key)
}
