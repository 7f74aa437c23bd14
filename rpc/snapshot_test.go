package rpc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
	"github.com/berth-dev/berth/rpc"
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

// bigState creates apps whose env values make the state's snapshot larger
// than one 1 MiB chunk, and returns their ids.
func bigState(t *testing.T, c clients, n int) []string {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	var ids []string
	for i := range n {
		id := fmt.Sprintf("/big-%d", i)
		app := mustApp(t, fmt.Sprintf(`{"id": %q, "cmd": "sleep 1000", "instances": 0, "env": {"PAD": %q}}`,
			id, strings.Repeat(fmt.Sprintf("%07d", i), 200<<10/7)))
		if _, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app})); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// saveStream saves a snapshot through s with SaveSnapshotStream.
func saveStream(t *testing.T, s *server) []byte {
	t.Helper()
	var buf bytes.Buffer
	cl := berthv1connect.NewClusterServiceClient(http.DefaultClient, s.url(), rpc.WithSnapshotCodec())
	meta, err := rpc.DownloadSnapshot(ctxFor(t, time.Minute), cl, connect.NewRequest(&v1.SaveSnapshotRequest{}), &buf)
	if err != nil || meta.Index == 0 {
		t.Fatalf("save through %s (streamed) = index %d, %v", s.name, meta.Index, err)
	}
	return buf.Bytes()
}

// upload restores data through s with RestoreSnapshotStream, giving size
// in the first chunk.
func upload(ctx context.Context, s *server, r io.Reader, size int64) error {
	cl := berthv1connect.NewClusterServiceClient(http.DefaultClient, s.url(), rpc.WithSnapshotCodec())
	_, err := rpc.UploadSnapshot(ctx, cl, nil, r, size)
	return err
}

// TestRestoreStreamThroughFollower: a snapshot of several chunks, saved
// and restored in chunks through a follower (which keeps the upload and
// forwards it as a stream), replaces the state of every server; the
// forward outlasts ForwardTimeout.
func TestRestoreStreamThroughFollower(t *testing.T) {
	servers := startCluster(t, 3, clusterOpts{forwardTimeout: time.Millisecond, patientRaft: true})
	leader := waitLeader(t, servers)
	follower := followerOf(servers)
	lc := clientsFor(leader)
	ctx := ctxFor(t, 2*time.Minute)
	kept := bigState(t, lc, 6)
	snap := saveStream(t, follower)
	if len(snap) < 2*(1<<20) {
		t.Fatalf("snapshot of %d bytes: want more than two chunks", len(snap))
	}
	lost := mustApp(t, `{"id": "/lost", "cmd": "sleep 1000", "instances": 0}`)
	if _, err := lc.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: lost})); err != nil {
		t.Fatal(err)
	}
	if err := upload(ctx, follower, bytes.NewReader(snap), int64(len(snap))); err != nil {
		t.Fatalf("streamed restore through a follower: %v", err)
	}
	for _, s := range servers {
		waitFor(t, 30*time.Second, s.name+" to hold the restored state", func() error {
			read := fsm.NewTestReader(t, s.fsm.State)
			if read.App("/lost") != nil {
				return errors.New("/lost is still there")
			}
			for _, id := range kept {
				if read.App(id) == nil {
					return fmt.Errorf("%s is missing", id)
				}
			}
			return nil
		})
	}
	// The follower reads its client's restore at once (Berth-Index).
	if _, err := clientsFor(follower).app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/lost"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("GetApp /lost on the follower after the restore: %v, want NotFound", err)
	}
}

// TestRestoreStreamRefusesDamage: a truncated, corrupted or cut-off upload
// is refused with an error saying what is wrong, and the state is
// unchanged, whether sent to the leader or through a follower.
func TestRestoreStreamRefusesDamage(t *testing.T) {
	servers := startCluster(t, 3, clusterOpts{patientRaft: true})
	leader := waitLeader(t, servers)
	lc := clientsFor(leader)
	bigState(t, lc, 3)
	snap := saveStream(t, leader)
	after := mustApp(t, `{"id": "/after", "cmd": "sleep 1000", "instances": 0}`)
	if _, err := lc.app.CreateApp(ctxFor(t, time.Minute), connect.NewRequest(&v1.CreateAppRequest{App: after})); err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(snap)
	corrupt[len(corrupt)/2] ^= 0x40
	for _, tc := range []struct {
		name string
		data []byte
		size int64
		// cut: the client's reader fails after this many bytes.
		cut  int
		code connect.Code
		want string
	}{
		{name: "truncated", data: snap[:len(snap)*2/3], size: int64(len(snap) * 2 / 3), code: connect.CodeInvalidArgument, want: "truncated"},
		{name: "shorter than its size", data: snap[:len(snap)*2/3], size: int64(len(snap)), code: connect.CodeInvalidArgument, want: fmt.Sprintf("ended after %d of the %d bytes", len(snap)*2/3, len(snap))},
		{name: "longer than its size", data: append(bytes.Clone(snap), "more"...), size: int64(len(snap)), code: connect.CodeInvalidArgument, want: "more than the"},
		{name: "size not given, trailing data", data: append(bytes.Clone(snap), "more"...), code: connect.CodeInvalidArgument, want: "after the checksum trailer"},
		{name: "corrupted", data: corrupt, size: int64(len(corrupt)), code: connect.CodeInvalidArgument, want: "checksum mismatch"},
		{name: "client fails mid-way", data: snap, size: int64(len(snap)), cut: len(snap) / 2},
	} {
		for _, via := range []*server{leader, followerOf(servers)} {
			t.Run(tc.name+" via "+via.name, func(t *testing.T) {
				ctx := ctxFor(t, time.Minute)
				var r io.Reader = bytes.NewReader(tc.data)
				if tc.cut > 0 {
					r = io.MultiReader(io.LimitReader(r, int64(tc.cut)), iotest.ErrReader(errors.New("disk on fire")))
				}
				err := upload(ctx, via, r, tc.size)
				if tc.cut > 0 {
					if err == nil || !strings.Contains(err.Error(), "disk on fire") {
						t.Fatalf("upload whose reader failed: %v, want the read error", err)
					}
				} else if ce := wantCode(t, err, tc.code); !strings.Contains(ce.Message(), tc.want) || strings.Count(ce.Message(), "restore snapshot") != 1 {
					t.Fatalf("error %q: want %q in it and the operation named once", ce.Message(), tc.want)
				}
				for _, s := range servers {
					if fsm.NewTestReader(t, s.fsm.State).App("/after") == nil {
						t.Fatalf("%s lost /after: the refused restore changed the state", s.name)
					}
				}
			})
		}
	}
	// The same snapshot, whole, restores (the cases above failed for
	// their damage alone).
	if err := upload(ctxFor(t, time.Minute), followerOf(servers), bytes.NewReader(snap), int64(len(snap))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the restore to reach the leader", func() error {
		if fsm.NewTestReader(t, leader.fsm.State).App("/after") != nil {
			return errors.New("/after still there")
		}
		return nil
	})
}

// countingReader yields n bytes of a pattern and counts what was read.
type countingReader struct {
	n, read int64
}

var pattern = bytes.Repeat([]byte("0123456789abcdef"), 4096)

func (c *countingReader) Read(p []byte) (int, error) {
	if c.read >= c.n {
		return 0, io.EOF
	}
	n := copy(p[:min(int64(len(p)), c.n-c.read)], pattern)
	c.read += int64(n)
	return n, nil
}

// TestRestoreStreamOverLimitRefusedEarly: a snapshot larger than the
// server's limit is refused with an error naming the limit and the flag
// that sets it: at the first chunk when the client gives the size, else
// as soon as the limit is passed; either way long before the client has
// sent it all.
func TestRestoreStreamOverLimitRefusedEarly(t *testing.T) {
	const limit = 2 << 20
	servers := startCluster(t, 3, clusterOpts{maxSnapshotBytes: limit})
	leader := waitLeader(t, servers)
	// A snapshot file's start, saying it holds 256 MiB of data.
	header := `BERTH-SNAPSHOT 1` + "\n" + `{"format":1,"index":5,"term":2,"size":268435456,"raft_snapshot_version":1}` + "\n"
	for _, declared := range []bool{true, false} {
		for _, via := range []*server{leader, followerOf(servers)} {
			src := &countingReader{n: 256 << 20}
			size := int64(0)
			if declared {
				size = int64(len(header)) + src.n
			}
			err := upload(ctxFor(t, time.Minute), via, io.MultiReader(strings.NewReader(header), src), size)
			ce := wantCode(t, err, connect.CodeResourceExhausted)
			if !strings.Contains(ce.Message(), "limit of 2.0 MiB") || !strings.Contains(ce.Message(), "--max-snapshot-size") {
				t.Errorf("declared size %v via %s: %q, want the limit and its flag named", declared, via.name, ce.Message())
			}
			if declared && !strings.Contains(ce.Message(), "(256.0 MiB)") {
				t.Errorf("declared size via %s: %q, want the size named", via.name, ce.Message())
			}
			t.Logf("declared size %v via %s: refused after the client read %.1f MiB of 256", declared, via.name, float64(src.read)/(1<<20))
			if src.read > 32<<20 {
				t.Errorf("declared size %v via %s: the client sent %d MiB of 256 before the refusal", declared, via.name, src.read>>20)
			}
		}
	}
}

// uploadSink is a leader whose restore reads the snapshot and keeps only
// its size and SHA-256: what a restore's upload costs the API server
// alone.
type uploadSink struct {
	rpc.Cluster // nil: a restore calls only what is below
	received    atomic.Int64
	sum         atomic.Value // [32]byte
}

func (u *uploadSink) IsLeader() bool { return true }

func (u *uploadSink) RestoreSnapshot(ctx context.Context, r io.Reader) (rpc.SnapshotMeta, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	u.received.Store(n)
	u.sum.Store([32]byte(h.Sum(nil)))
	return rpc.SnapshotMeta{Index: 1, Term: 1}, err
}

// startAPI serves an API whose cluster is clu, over HTTP/1.1, and returns
// its address.
func startAPI(t testing.TB, clu rpc.Cluster) string {
	api := rpc.NewServer(rpc.Config{Store: fsm.New(testLogger(t)).State, Cluster: clu, Logger: testLogger(t), SpoolDir: t.TempDir()})
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	return hs.Listener.Addr().String()
}

// startSink serves an API whose cluster is an uploadSink.
func startSink(t testing.TB) (berthv1connect.ClusterServiceClient, *uploadSink) {
	sink := &uploadSink{}
	return berthv1connect.NewClusterServiceClient(http.DefaultClient, "http://"+startAPI(t, sink), rpc.WithSnapshotCodec()), sink
}

// fallingLeader leads until it has read part of a restore, then loses
// leadership to the server at next (as a leader does when its followers,
// installing a large snapshot on a loaded machine, miss its lease).
type fallingLeader struct {
	rpc.Cluster
	next    string
	leading atomic.Bool
}

func (f *fallingLeader) IsLeader() bool { return f.leading.Load() }

func (f *fallingLeader) Leader() (string, string, string) {
	if f.leading.Load() {
		return "a", "", "self"
	}
	return "b", "", f.next
}

func (f *fallingLeader) RestoreSnapshot(ctx context.Context, r io.Reader) (rpc.SnapshotMeta, error) {
	if _, err := io.CopyN(io.Discard, r, 3<<20+17); err != nil {
		return rpc.SnapshotMeta{}, err
	}
	f.leading.Store(false)
	return rpc.SnapshotMeta{}, errors.New("leadership lost while committing log")
}

// TestRestoreStreamOutlivesLeaderChange: a leader that loses leadership
// after reading part of an upload sends the whole of it to the new leader
// (from its copy, and the rest of the stream): the client sends it once.
func TestRestoreStreamOutlivesLeaderChange(t *testing.T) {
	const size = 8<<20 + 5
	data, _ := io.ReadAll(&countingReader{n: size})
	for _, declared := range []int64{size, 0} {
		sink := &uploadSink{}
		first := &fallingLeader{next: startAPI(t, sink)}
		first.leading.Store(true)
		cl := berthv1connect.NewClusterServiceClient(http.DefaultClient, "http://"+startAPI(t, first), rpc.WithSnapshotCodec())
		if _, err := rpc.UploadSnapshot(ctxFor(t, time.Minute), cl, nil, bytes.NewReader(data), declared); err != nil {
			t.Fatalf("size given %d: %v", declared, err)
		}
		if sink.received.Load() != size || sink.sum.Load() != sha256.Sum256(data) {
			t.Fatalf("size given %d: the new leader restored %d bytes (want %d) or other bytes", declared, sink.received.Load(), size)
		}
	}
}

// heapGrowthDuring returns how far the live heap (as the collector found
// it, run often: GOGC=10) rose above its level before f while f ran,
// sampled every 200 µs: memory held, not garbage. (Bytes allocated would
// be the sharper measure, but the race detector makes sync.Pool drop
// buffers at random, and connect pools its buffers.)
func heapGrowthDuring(f func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	stop, peak := make(chan struct{}), make(chan uint64)
	go func() {
		high := base
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peak <- high
				return
			case <-tick.C:
				metrics.Read(sample)
				high = max(high, sample[0].Value.Uint64())
			}
		}
	}()
	f()
	close(stop)
	return <-peak - base
}

// TestRestoreStreamHoldsOneChunk: receiving a 32 MiB snapshot in chunks
// holds a few chunks' worth of memory, client and server together, where
// the same snapshot in one message holds several times its size at once.
func TestRestoreStreamHoldsOneChunk(t *testing.T) {
	const size = 32 << 20
	cl, sink := startSink(t)
	ctx := ctxFor(t, time.Minute)
	// Warm the connection and connect's buffer pools.
	if _, err := rpc.UploadSnapshot(ctx, cl, nil, &countingReader{n: 4 << 20}, 4<<20); err != nil {
		t.Fatal(err)
	}
	streamed := heapGrowthDuring(func() {
		if _, err := rpc.UploadSnapshot(ctx, cl, nil, &countingReader{n: size}, size); err != nil {
			t.Fatal(err)
		}
	})
	if sink.received.Load() != size {
		t.Fatalf("the server read %d bytes, want %d", sink.received.Load(), size)
	}
	data, _ := io.ReadAll(&countingReader{n: size})
	whole := heapGrowthDuring(func() {
		if _, err := cl.RestoreSnapshot(ctx, connect.NewRequest(&v1.RestoreSnapshotRequest{Data: data})); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("during a 32 MiB restore the heap grew by %.1f MiB in chunks, %.1f MiB in one message", float64(streamed)/(1<<20), float64(whole)/(1<<20))
	if whole < size {
		t.Fatalf("one message: the heap grew by %d bytes, less than the message: the measure is broken", whole)
	}
	if streamed > size/2 {
		t.Fatalf("in chunks, the heap grew by %.1f MiB during a 32 MiB restore: want O(chunk) (1 MiB chunks), not O(snapshot): under 16 MiB", float64(streamed)/(1<<20))
	}
}

// BenchmarkRestoreUpload: a 32 MiB restore's upload through the API
// (client and server on loopback, the restore itself a sink):
//
//	go test -run '^$' -bench RestoreUpload -benchmem ./rpc/
func BenchmarkRestoreUpload(b *testing.B) {
	const size = 32 << 20
	cl, _ := startSink(b)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rpc.UploadSnapshot(context.Background(), cl, nil, &countingReader{n: size}, size); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSnapshotCodecReusesChunks: the codec decodes what protobuf encodes
// (unknown fields skipped, the last data field winning) into the memory
// of the chunk it decodes into.
func TestSnapshotCodecReusesChunks(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 4096)
	enc := mustMarshal(t, &v1.SnapshotChunk{Data: big, Size: 7, Index: 9, Term: 3})
	enc = protowire.AppendTag(enc, 99, protowire.BytesType)
	enc = protowire.AppendBytes(enc, []byte("unknown"))
	enc = protowire.AppendTag(enc, 1, protowire.BytesType)
	enc = protowire.AppendBytes(enc, []byte("last"))
	var got v1.SnapshotChunk
	got.Data = make([]byte, 0, 8192)
	mem := &got.Data[:1][0]
	codec := rpc.SnapshotCodecForTest()
	if err := codec.Unmarshal(enc, &got); err != nil {
		t.Fatal(err)
	}
	var want v1.SnapshotChunk
	if err := proto.Unmarshal(enc, &want); err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != string(want.Data) || got.Size != want.Size || got.Index != want.Index || got.Term != want.Term {
		t.Fatalf("decoded %q %d %d %d, protobuf says %q %d %d %d", got.Data, got.Size, got.Index, got.Term, want.Data, want.Size, want.Index, want.Term)
	}
	if &got.Data[:1][0] != mem {
		t.Error("the chunk's data was decoded into new memory")
	}
	if err := codec.Unmarshal(mustMarshal(t, &v1.SnapshotChunk{Index: 5}), &got); err != nil || len(got.Data) != 0 || got.Index != 5 || got.Size != 0 {
		t.Fatalf("a chunk without data decoded into a used one: %q %d %d, %v", got.Data, got.Index, got.Size, err)
	}
	if err := codec.Unmarshal(enc[:len(enc)-2], &got); err == nil {
		t.Fatal("a cut-off chunk decoded without error")
	}
}
