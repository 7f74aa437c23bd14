package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// updateOwnAddress fixes this leader's own entry in the Raft configuration
// when the server came back on another Raft address (for example `berth
// dev`, whose Raft port is chosen by the kernel at each start). Raft finds
// itself in the configuration by id, so a lone voter still elects itself,
// but the configuration (and `cluster raft list-peers`) would keep the old
// address, and no other server could ever reach it there. The reconciler
// updates the addresses of the other servers from gossip; this is the one
// entry it never touches. Leader only; a no-op when the address is current.
func (n *Node) updateOwnAddress(ctx context.Context) error {
	c, err := n.configuration()
	if err != nil {
		return err
	}
	self := raft.ServerID(n.cfg.NodeName)
	for _, s := range c.Servers {
		if s.ID != self {
			continue
		}
		if string(s.Address) == n.raftAddr || s.Suffrage != raft.Voter {
			return nil
		}
		if err := waitFuture(ctx, n.raft.AddVoter(self, raft.ServerAddress(n.raftAddr), 0, 10*time.Second)); err != nil {
			return fmt.Errorf("update own raft address from %s to %s: %w", s.Address, n.raftAddr, err)
		}
		n.log.Info("updated own raft address in the configuration", "old", s.Address, "new", n.raftAddr)
		return nil
	}
	return nil
}
