package scheduler

import (
	"fmt"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// An API writer scaling an app concurrently with the driver's own commits
// never leaves the driver's snapshot holding an app count the store no
// longer has (the nemesis suite's scale-down that never came, issue 11).
func TestSnapshotsNeverHideConcurrentAppWrites(t *testing.T) {
	l := newFSMStore(t)
	var mu sync.Mutex
	apply := func(typ v1.CommandType, msg proto.Message) error {
		mu.Lock()
		defer mu.Unlock()
		return l.apply(typ, msg)
	}
	app := residentApp("/a", "v0", 3)
	l.putApp(app, "")
	l.mustApply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{inst("i1", "/a", "t1")}})
	var c snapshots
	mem := NewMemory()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := range 2000 {
			next := withInstances(app, fmt.Sprintf("v%d", k+1), int32(1+k%3))
			if err := apply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{App: next}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for k := 0; ; k++ {
		select {
		case <-done:
		default:
			st, err := c.get(l, mem)
			if err != nil {
				t.Fatal(err)
			}
			i1 := proto.Clone(st.Instances["i1"]).(*v1.Instance)
			i1.ConsecutiveFailures = uint32(k)
			plan := &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{i1}}
			if err := apply(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, plan); err != nil {
				c.drop()
				continue
			}
			c.committed(l, plan)
			continue
		}
		break
	}
	st, err := c.get(l, mem)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, st, l)
	if got, want := st.Apps["/a"].GetInstances(), l.app("/a").GetInstances(); got != want {
		t.Fatalf("driver's snapshot says %d instances, the store %d", got, want)
	}
}
