package fsm

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"testing"

	"github.com/hashicorp/raft"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestRestoreCarriesTheSnapshotIndex: a follower that installs the
// leader's snapshot reports the index the snapshot reflects, not the one
// its old store had (its read-your-writes wait would stall otherwise).
func TestRestoreCarriesTheSnapshotIndex(t *testing.T) {
	var ids []string
	for i := 1; i <= 10; i++ {
		ids = append(ids, fmt.Sprintf("/a%d", i))
	}
	data := snapshotOf(t, ids...)

	follower := New(nil) // far behind: applied nothing yet
	if err := follower.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
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

// snapshotOf is the snapshot of an FSM that created the apps ids.
func snapshotOf(t *testing.T, ids ...string) []byte {
	t.Helper()
	f := New(nil)
	for i, id := range ids {
		data, err := Encode(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp(id, v1Time)})
		if err != nil {
			t.Fatal(err)
		}
		if res := f.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data}).(*ApplyResult); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&bufSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRestoreInstallsThePreparedStore: an operator's restore decodes the
// snapshot once to check it (PrepareRestore) and Raft's Restore of the
// same bytes installs that store; different bytes are decoded, never
// replaced by the prepared state; bad data is refused and nothing kept.
func TestRestoreInstallsThePreparedStore(t *testing.T) {
	a, b := snapshotOf(t, "/a1", "/a2"), snapshotOf(t, "/b1")
	appIDs := func(f *FSM) []string {
		apps, err := f.State().Snapshot().Apps()
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, app := range apps {
			ids = append(ids, app.GetId())
		}
		return ids
	}
	restore := func(f *FSM, data []byte) {
		t.Helper()
		if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			t.Fatal(err)
		}
	}

	f := New(nil)
	if err := f.PrepareRestore(bytes.NewReader(a)); err != nil {
		t.Fatal(err)
	}
	if got := appIDs(f); len(got) != 0 {
		t.Fatalf("apps after PrepareRestore alone = %v, want none (not installed)", got)
	}
	prepared := f.prepared.Load().store
	restore(f, a)
	if f.State() != prepared {
		t.Error("Restore of the prepared bytes decoded them again instead of installing the prepared store")
	}
	if got := appIDs(f); fmt.Sprint(got) != "[/a1 /a2]" {
		t.Errorf("apps = %v, want [/a1 /a2]", got)
	}
	if f.prepared.Load() != nil {
		t.Error("the prepared store is still kept after Restore")
	}

	// Prepared a, restored b: b is what the state becomes.
	if err := f.PrepareRestore(bytes.NewReader(a)); err != nil {
		t.Fatal(err)
	}
	restore(f, b)
	if got := appIDs(f); fmt.Sprint(got) != "[/b1]" {
		t.Errorf("apps after preparing a and restoring b = %v, want [/b1]", got)
	}

	// A discarded preparation is not used: the bytes are decoded.
	if err := f.PrepareRestore(bytes.NewReader(a)); err != nil {
		t.Fatal(err)
	}
	prepared = f.prepared.Load().store
	f.DiscardPrepared()
	restore(f, a)
	if f.State() == prepared {
		t.Error("Restore installed a discarded prepared store")
	}
	if got := appIDs(f); fmt.Sprint(got) != "[/a1 /a2]" {
		t.Errorf("apps = %v, want [/a1 /a2]", got)
	}

	// Bad data: refused, nothing kept, the state unchanged.
	truncated := a[:len(a)-10]
	if err := f.PrepareRestore(bytes.NewReader(truncated)); err == nil {
		t.Error("PrepareRestore of a truncated snapshot succeeded")
	}
	if f.prepared.Load() != nil {
		t.Error("a store was kept for data PrepareRestore refused")
	}
	if got := appIDs(f); fmt.Sprint(got) != "[/a1 /a2]" {
		t.Errorf("apps after a refused PrepareRestore = %v, want [/a1 /a2]", got)
	}
}

// TestRestoreLiftsTheMemoryLimit: while a restore holds two states the
// soft memory limit is lifted (else the GC runs without pause), and put
// back once the new state is installed or the prepared one dropped.
func TestRestoreLiftsTheMemoryLimit(t *testing.T) {
	const limit = 1 << 30
	old := debug.SetMemoryLimit(limit)
	defer debug.SetMemoryLimit(old)
	current := func() int64 { return debug.SetMemoryLimit(-1) }

	release := liftMemoryLimit()
	inner := liftMemoryLimit()
	if current() != math.MaxInt64 {
		t.Fatalf("limit while lifted = %d, want none", current())
	}
	inner()
	inner() // a second call changes nothing
	if current() != math.MaxInt64 {
		t.Fatalf("limit after the inner lift ended = %d, want none while the outer lasts", current())
	}
	release()
	if current() != limit {
		t.Fatalf("limit after every lift ended = %d, want %d", current(), limit)
	}

	data := snapshotOf(t, "/a")
	f := New(nil)
	if err := f.PrepareRestore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if current() != math.MaxInt64 {
		t.Errorf("limit while a prepared state waits = %d, want none", current())
	}
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if current() != limit {
		t.Errorf("limit after Restore = %d, want %d", current(), limit)
	}
	if err := f.PrepareRestore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	f.DiscardPrepared()
	if current() != limit {
		t.Errorf("limit after DiscardPrepared = %d, want %d", current(), limit)
	}
	if err := f.PrepareRestore(bytes.NewReader(data[:len(data)-3])); err == nil || current() != limit {
		t.Errorf("PrepareRestore of bad data: %v, limit %d after, want an error and %d", err, current(), limit)
	}
}
