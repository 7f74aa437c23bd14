package fsm

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestRestoreCarriesTheSnapshotIndex: a follower that installs the
// leader's snapshot reports the index the snapshot reflects, not the one
// its old store had (its read-your-writes wait would stall otherwise).
func TestRestoreCarriesTheSnapshotIndex(t *testing.T) {
	leader := New(nil)
	for i := uint64(1); i <= 10; i++ {
		data, err := Encode(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp(fmt.Sprintf("/a%d", i), v1Time)})
		if err != nil {
			t.Fatal(err)
		}
		leader.Apply(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data})
	}
	snap, err := leader.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&bufSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}

	follower := New(nil) // far behind: applied nothing yet
	if err := follower.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := follower.State().LastIndex(); got != 10 {
		t.Fatalf("applied index after installing a snapshot at 10 = %d, want 10", got)
	}
}

type bufSink struct{ *bytes.Buffer }

func (bufSink) ID() string    { return "test" }
func (bufSink) Cancel() error { return nil }
func (bufSink) Close() error  { return nil }
