package cluster

import (
	"fmt"
	"testing"
	"time"
)

// A lone server restarted on another Raft address (as `berth dev` is, on a
// kernel-chosen port) updates its own entry in the Raft configuration, and
// writes keep committing.
func TestLoneServerRestartOnNewRaftAddress(t *testing.T) {
	tn := start(t, tcpConfig(t, "solo", 0))
	waitLeader(t, []*tnode{tn}, 10*time.Second)
	set(t, []*tnode{tn}, "before", "move")
	oldAddr := tn.node.RaftAddr()
	tn.stop(t)

	cfg := tn.cfg
	cfg.RaftBind = "127.0.0.1:0" // a new port
	tn2 := start(t, cfg)
	newAddr := tn2.node.RaftAddr()
	if newAddr == oldAddr {
		t.Fatalf("restarted on the same raft address %s; the test needs another one", newAddr)
	}
	waitLeader(t, []*tnode{tn2}, 10*time.Second)
	waitFor(t, 10*time.Second, "the configuration to list the new address", func() error {
		peers, err := tn2.node.Peers()
		if err != nil {
			return err
		}
		if len(peers) != 1 || peers[0].ID != "solo" || peers[0].Address != newAddr || !peers[0].Voter {
			return fmt.Errorf("peers = %+v, want solo at %s (old address %s)", peers, newAddr, oldAddr)
		}
		return nil
	})
	set(t, []*tnode{tn2}, "after", "move")
	if v, ok := tn2.fsm.get("before"); !ok || v != "move" {
		t.Fatalf("write from before the move: %q, %v", v, ok)
	}

	// And it stays right across a further restart on the same new address.
	tn2.stop(t)
	tn3 := tn2.restart(t)
	waitLeader(t, []*tnode{tn3}, 10*time.Second)
	set(t, []*tnode{tn3}, "third", "start")
	peers, err := tn3.node.Peers()
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 1 || peers[0].Address != newAddr {
		t.Fatalf("after a restart on the same address: peers = %+v, want solo at %s", peers, newAddr)
	}
}
