package fsm

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// seedLog is a short history of valid commands: the fuzzers' seeds.
func seedLog(tb testing.TB) [][]byte {
	cmds := []struct {
		t   v1.CommandType
		msg proto.Message
	}{
		{v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{RequestId: "r1", App: testApp("/a", v1Time),
			Deployment: &v1.Deployment{Id: "d1", AffectedApps: []string{"/a"}, Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING}}},
		{v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{
			PutInstances: []*v1.Instance{residentInstance("a.instance-1", "/a", "agent-1", "a#data#1")}}},
		{v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{App: testApp("/a", v2Time), CancelDeployments: []string{"d1"}}},
		{v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: "fw"}},
		{v1.CommandType_COMMAND_TYPE_DEPLOYMENT_CANCEL, &v1.DeploymentCancelCommand{DeploymentIds: []string{"d1"}}},
		{v1.CommandType_COMMAND_TYPE_APP_DELETE, &v1.AppDeleteCommand{AppId: "/a"}},
	}
	var out [][]byte
	for _, c := range cmds {
		data, err := Encode(c.t, c.msg)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// FuzzApply applies a valid history and then one fuzzed entry whose type is
// a registered command (an unregistered one stops the replica by design):
// no payload may panic the FSM, a refused entry changes nothing but the
// index, and the state still snapshots and restores to the same bytes.
func FuzzApply(f *testing.F) {
	for _, s := range seedLog(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry []byte) {
		if len(entry) == 0 {
			return
		}
		if _, known := commands[v1.CommandType(entry[0])&^IgnoreUnknownTypeFlag]; !known && entry[0]&byte(IgnoreUnknownTypeFlag) == 0 {
			return
		}
		fsm := New(nil)
		var index uint64
		apply := func(data []byte) *ApplyResult {
			index++
			return fsm.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).(*ApplyResult)
		}
		for _, s := range seedLog(t)[:3] {
			if res := apply(s); res.Err != nil {
				t.Fatalf("seed: %v", res.Err)
			}
		}
		before := snapshotBytes(t, fsm)
		res := apply(entry)
		if fsm.State().LastIndex() != index {
			t.Fatalf("index %d after applying entry %d", fsm.State().LastIndex(), index)
		}
		after := snapshotBytes(t, fsm)
		if res.Err != nil && !sameStateBesidesIndex(t, before, after) {
			t.Fatalf("a refused entry (%v) changed the state", res.Err)
		}
		restored := New(nil)
		if err := restored.Restore(io.NopCloser(bytes.NewReader(after))); err != nil {
			t.Fatalf("restore after a fuzzed entry: %v", err)
		}
		if again := snapshotBytes(t, restored); !bytes.Equal(again, after) {
			t.Fatal("snapshot → restore → snapshot differs")
		}
	})
}

// FuzzRestore feeds corrupted snapshots to Restore: an error, never a
// panic, and a failed restore leaves the state as it was.
func FuzzRestore(f *testing.F) {
	fsm := New(nil)
	for i, s := range seedLog(f)[:4] {
		fsm.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: s})
	}
	good := snapshotBytes(f, fsm)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		target := New(nil)
		target.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: seedLog(t)[0]})
		before := snapshotBytes(t, target)
		if err := target.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			if !bytes.Equal(snapshotBytes(t, target), before) {
				t.Fatalf("a failed restore (%v) changed the state", err)
			}
		}
	})
}

func snapshotBytes(tb testing.TB, f *FSM) []byte {
	snap, err := f.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	var out sink
	if err := snap.Persist(&out); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// sameStateBesidesIndex compares two snapshots after restoring them: the
// tables must be equal; the applied index may differ.
func sameStateBesidesIndex(t *testing.T, a, b []byte) bool {
	ra, rb := New(nil), New(nil)
	if ra.Restore(io.NopCloser(bytes.NewReader(a))) != nil || rb.Restore(io.NopCloser(bytes.NewReader(b))) != nil {
		return false
	}
	x, y := NewTestReader(t, ra.State), NewTestReader(t, rb.State)
	eq := func(p, q []proto.Message) bool {
		if len(p) != len(q) {
			return false
		}
		for i := range p {
			if !proto.Equal(p[i], q[i]) {
				return false
			}
		}
		return true
	}
	return eq(msgs(x.Apps()), msgs(y.Apps())) && eq(msgs(x.Instances()), msgs(y.Instances())) &&
		eq(msgs(x.Deployments()), msgs(y.Deployments())) && x.FrameworkID() == y.FrameworkID()
}

func msgs[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}
