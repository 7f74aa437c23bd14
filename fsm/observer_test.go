package fsm

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// observed records what an Observer is told.
type observed struct {
	commands  []string
	snapBytes int64
	snaps     int
}

func (o *observed) CommandApplied(c string, _ time.Duration) { o.commands = append(o.commands, c) }
func (o *observed) SnapshotPersisted(n int64, _ time.Duration) {
	o.snapBytes, o.snaps = n, o.snaps+1
}

func TestObserverSeesAppliesAndSnapshots(t *testing.T) {
	f := New(nil)
	o := &observed{}
	f.SetObserver(o)
	data, err := Encode(v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{App: testApp("/a", v1Time)})
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: data})
	f.Apply(&raft.Log{Index: 2, Term: 1, Type: raft.LogNoop}) // not a command: not counted
	// An ignorable entry of an unknown type is counted under its type.
	f.Apply(&raft.Log{Index: 3, Term: 1, Type: raft.LogCommand, Data: []byte{byte(IgnoreUnknownTypeFlag | 120)}})
	if len(o.commands) != 2 || o.commands[0] != "COMMAND_TYPE_APP_CREATE" || o.commands[1] != "120" {
		t.Fatalf("commands observed: %v", o.commands)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&bufSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	if o.snaps != 1 || o.snapBytes != int64(buf.Len()) || o.snapBytes == 0 {
		t.Fatalf("snapshot observed %d times, %d bytes; wrote %d", o.snaps, o.snapBytes, buf.Len())
	}
}
