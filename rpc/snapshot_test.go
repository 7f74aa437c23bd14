package rpc_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestSaveSnapshotThroughFollowerHoldsAcknowledgedWrites: a snapshot saved
// through any server contains every write acknowledged before the call. A
// follower's own store may not have applied the latest writes yet, so a
// snapshot taken there could miss them (the bug this test caught: it
// failed within a few rounds when the follower answered from its store).
func TestSaveSnapshotThroughFollowerHoldsAcknowledgedWrites(t *testing.T) {
	servers := startCluster(t, 3, clusterOpts{})
	leader := waitLeader(t, servers)
	lc, fc := clientsFor(leader), clientsFor(followerOf(servers))
	ctx := ctxFor(t, 3*time.Minute)
	const rounds = 25
	for i := range rounds {
		id := fmt.Sprintf("/snap-%d", i)
		app := mustApp(t, fmt.Sprintf(`{"id": %q, "cmd": "sleep 1000", "instances": 0}`, id))
		if _, err := lc.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app})); err != nil {
			t.Fatal(err)
		}
		resp, err := fc.cluster.SaveSnapshot(ctx, connect.NewRequest(&v1.SaveSnapshotRequest{}))
		if err != nil {
			t.Fatalf("round %d: save through a follower: %v", i, err)
		}
		restored := fsm.New(testLogger(t))
		if err := restored.Restore(io.NopCloser(bytes.NewReader(snapshotData(t, resp.Msg.Data)))); err != nil {
			t.Fatalf("round %d: restore: %v", i, err)
		}
		read := fsm.NewTestReader(t, restored.State)
		for j := 0; j <= i; j++ {
			if read.App(fmt.Sprintf("/snap-%d", j)) == nil {
				t.Fatalf("round %d: snapshot (index %d) saved through a follower misses acknowledged app /snap-%d", i, resp.Msg.Index, j)
			}
		}
	}
}

// snapshotData returns the FSM bytes of a snapshot file: after the magic
// line and the JSON header, as many bytes as the header's size.
func snapshotData(t *testing.T, file []byte) []byte {
	t.Helper()
	parts := bytes.SplitN(file, []byte("\n"), 3)
	if len(parts) != 3 {
		t.Fatalf("snapshot file has no header: %q", file[:min(len(file), 80)])
	}
	var hdr struct {
		Size int `json:"size"`
	}
	if err := json.Unmarshal(parts[1], &hdr); err != nil || hdr.Size > len(parts[2]) {
		t.Fatalf("snapshot header %q: %v", parts[1], err)
	}
	return parts[2][:hdr.Size]
}

// TestRestoreThroughFollowerOutlastsForwardTimeout: a restore forwarded to
// the leader is waited for however long it takes there (a large state
// takes seconds), not given up after ForwardTimeout and sent again, which
// restored a 100,000-instance state twice and failed the call.
func TestRestoreThroughFollowerOutlastsForwardTimeout(t *testing.T) {
	// Every forward gives up after 1 ms: no restore is that fast.
	servers := startCluster(t, 3, clusterOpts{forwardTimeout: time.Millisecond})
	leader := waitLeader(t, servers)
	lc, fc := clientsFor(leader), clientsFor(followerOf(servers))
	ctx := ctxFor(t, time.Minute)
	create := func(id string) {
		t.Helper()
		app := mustApp(t, fmt.Sprintf(`{"id": %q, "cmd": "sleep 1000", "instances": 0}`, id))
		if _, err := lc.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app})); err != nil {
			t.Fatal(err)
		}
	}
	create("/kept")
	snap, err := lc.cluster.SaveSnapshot(ctx, connect.NewRequest(&v1.SaveSnapshotRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	create("/lost")
	if _, err := fc.cluster.RestoreSnapshot(ctx, connect.NewRequest(&v1.RestoreSnapshotRequest{Data: snap.Msg.Data})); err != nil {
		t.Fatalf("restore through a follower: %v", err)
	}
	read := fsm.NewTestReader(t, leader.fsm.State)
	if read.App("/kept") == nil || read.App("/lost") != nil {
		t.Fatal("the leader's state is not the snapshot's after the restore returned")
	}
}
