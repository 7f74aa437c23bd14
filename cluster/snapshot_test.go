package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestSnapshotSaveRestoreRoundTrip(t *testing.T) {
	// Source: a single on-disk server with some state.
	src := start(t, tcpConfig(t, "src", 0))
	srcNodes := []*tnode{src}
	waitLeader(t, srcNodes, 10*time.Second)
	for i := range 100 {
		set(t, srcNodes, fmt.Sprintf("k%d", i), fmt.Sprint(i))
	}
	ctx := ctxTimeout(t, 30*time.Second)
	var buf bytes.Buffer
	info, err := src.node.SaveSnapshot(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if info.Index == 0 || info.Size == 0 || info.NodeName != "src" || len(info.SHA256) != 64 {
		t.Fatalf("snapshot info %+v", info)
	}
	if !strings.HasPrefix(buf.String(), snapshotMagic+"\n{") {
		t.Fatalf("snapshot does not start with the header: %q", buf.String()[:40])
	}
	// Nothing new since: the stored snapshot is streamed again.
	var again bytes.Buffer
	info2, err := src.node.SaveSnapshot(ctx, &again)
	if err != nil {
		t.Fatalf("second save: %v", err)
	}
	if info2.Index != info.Index || info2.SHA256 != info.SHA256 {
		t.Fatalf("second save %+v differs from first %+v", info2, info)
	}
	// A snapshot can be taken on a follower too; checked in the cluster test.

	// Destination: a fresh 3-server in-memory cluster.
	network := NewInmemNetwork()
	var dst []*tnode
	for i := range 3 {
		cfg := inmemConfig(t, fmt.Sprintf("dst%d", i), network, 3)
		cfg.VerifySnapshot = verifyKV
		if i > 0 {
			cfg.Join = []string{dst[0].node.GossipAddr()}
		}
		dst = append(dst, start(t, cfg))
	}
	leader := waitLeader(t, dst, 20*time.Second)
	set(t, dst, "old", "state")
	for _, tn := range dst {
		if tn == leader {
			continue
		}
		if _, err := tn.node.RestoreSnapshot(ctx, bytes.NewReader(buf.Bytes())); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("restore on follower: %v, want ErrNotLeader", err)
		}
		break
	}

	// Corrupted inputs are rejected before Raft sees them.
	data := buf.Bytes()
	headerEnd := bytes.IndexByte(data[len(snapshotMagic)+1:], '\n') + len(snapshotMagic) + 2
	flipped := append([]byte(nil), data...)
	flipped[headerEnd+5] ^= 0xff
	bad := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a Berth snapshot"},
		{"not a snapshot", []byte("hello world\n"), "not a Berth snapshot"},
		{"truncated data", data[:headerEnd+10], "truncated"},
		{"no trailer", data[:len(data)-70], "checksum trailer"},
		{"flipped byte", flipped, "checksum mismatch"},
		{"trailing garbage", append(append([]byte(nil), data...), 'x'), "unexpected data after"},
		{"bad header", []byte(snapshotMagic + "\n{\"format\":1,\"bogus\":1}\n"), "unknown field \"bogus\""},
		{"future format", []byte(snapshotMagic + "\n{\"format\":2,\"size\":0,\"raft_snapshot_version\":1}\n"), "format 2 is not supported"},
		{"rejected by VerifySnapshot", rewrap(t, data, []byte("not json")), "data rejected"},
	}
	for _, tc := range bad {
		_, err := leader.node.RestoreSnapshot(ctx, bytes.NewReader(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: restore error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
	waitHas(t, dst, "old", "state")

	got, err := leader.node.RestoreSnapshot(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if got.SHA256 != info.SHA256 {
		t.Fatalf("restored %+v, saved %+v", got, info)
	}
	// Every server of the new cluster has exactly the source's state.
	for i := range 100 {
		waitHas(t, dst, fmt.Sprintf("k%d", i), fmt.Sprint(i))
	}
	for _, tn := range dst {
		if _, ok := tn.fsm.get("old"); ok || tn.fsm.len() != 100 {
			t.Fatalf("%s has %d keys after restore (old present: %v), want exactly the snapshot's 100", tn.cfg.NodeName, tn.fsm.len(), ok)
		}
	}
	// The cluster keeps working after the restore.
	set(t, dst, "after", "restore")
	waitHas(t, dst, "after", "restore")
}

// rewrap builds a well-formed snapshot file around payload, reusing the
// header of a real one.
func rewrap(t *testing.T, real, payload []byte) []byte {
	t.Helper()
	var info SnapshotInfo
	lines := bytes.SplitN(real, []byte("\n"), 3)
	if err := json.Unmarshal(lines[1], &info); err != nil {
		t.Fatal(err)
	}
	info.Size = int64(len(payload))
	var out bytes.Buffer
	hdr, _ := json.Marshal(info)
	fmt.Fprintf(&out, "%s\n%s\n", snapshotMagic, hdr)
	out.Write(payload)
	fmt.Fprintf(&out, "sha256 %s\n", fmt.Sprintf("%x", sha256.Sum256(payload)))
	return out.Bytes()
}

func TestSaveSnapshotOfEmptyState(t *testing.T) {
	tn := start(t, inmemConfig(t, "solo", nil, 0))
	if err := tn.node.WaitForLeader(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	info, err := tn.node.SaveSnapshot(ctxTimeout(t, 10*time.Second), &buf)
	if err != nil {
		t.Fatalf("SaveSnapshot on an empty server: %v", err)
	}
	if info.Index == 0 {
		t.Fatalf("info %+v", info)
	}
	if _, err := tn.node.RestoreSnapshot(ctxTimeout(t, 10*time.Second), &buf); err != nil {
		t.Fatalf("restoring an empty snapshot: %v", err)
	}
}
