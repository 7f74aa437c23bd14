package scheduler

import (
	"math"
	"strings"
	"testing"

	"github.com/berth-dev/berth/appmodel"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestHugeScaleIsCreatedStepByStep: an app asking for a billion instances
// once made one decision allocate them all (the server's memory ran away,
// and a delete could not stop the decision in progress). Each decision now
// creates at most MaxNewInstancesPerDecision, and a delete stops creation
// at the next decision.
func TestHugeScaleIsCreatedStepByStep(t *testing.T) {
	for _, app := range []*v1.App{statelessApp("/huge", "v1", 1_000_000_000), residentApp("/huge", "v1", 1_000_000_000)} {
		h := newHarness(t)
		h.cfg.MaxNewInstancesPerDecision = 50
		h.store.putApp(app, "d1")
		for step := 1; step <= 3; step++ {
			h.tick()
			if n := len(h.instancesOf("/huge")); n != 50*step {
				t.Fatalf("resident=%v: after %d decisions, %d instances; want %d", app.GetResidency() != nil, step, n, 50*step)
			}
		}
		h.store.deleteApp("/huge", "d2")
		h.tick()
		for _, i := range h.instancesOf("/huge") {
			if goalOf(i) != v1.Goal_GOAL_DECOMMISSIONED {
				t.Fatalf("after delete, instance %s has goal %v", i.GetId(), goalOf(i))
			}
		}
		if n := len(h.instancesOf("/huge")); n > 150 {
			t.Fatalf("after delete, %d instances; creation did not stop", n)
		}
	}
}

// TestDerivedIDsFitMesos holds appmodel's id-length rule and the ids the
// scheduler derives together: an app id of the longest length the model
// accepts gives task ids Mesos accepts, one character more would not.
func TestDerivedIDsFitMesos(t *testing.T) {
	uuid := "00000000-0000-0000-0000-000000000000"
	longest := "/" + strings.Repeat("a", appmodel.MaxAppIDLength)
	if n := len(taskIDFor(instanceIDFor(longest, uuid), math.MaxUint32)); n > 255 {
		t.Fatalf("task id of the longest accepted app id has %d characters", n)
	}
	if n := len(taskIDFor(instanceIDFor(longest+"a", uuid), math.MaxUint32)); n <= 255 {
		t.Fatalf("the model refuses an app id whose task ids (%d characters) would fit", n)
	}
}
