package scheduler

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// changes decides the pass the driver runs when the store changed
// (loop.changesTick): over what changed since the last pass, or the full
// pass when that cannot be named; nothing when nothing changed. Before it
// commits, it checks that the scoped pass decides nothing that the full
// pass on the same state would not (mustBeInFullPass).
func (h *harness) changes() Decision {
	h.t.Helper()
	st := h.state()
	ch, ok := h.snaps.take()
	switch {
	case !ok:
		h.snaps.full()
		return h.decide(Tick{})
	case ch.Empty():
		return Decision{}
	}
	h.mustBeInFullPass(st, ch)
	return h.decide(Tick{Changes: ch})
}

// mustBeInFullPass decides the scoped pass over ch and the full pass on
// copies of st and its memory, and fails unless every record the scoped
// one writes to an existing instance is written the same by the full one,
// every instance it forgets the full one forgets, every KILL it sends the
// full one sends, and it creates no more instances of an app than the full
// one (unless the full one reached MaxNewInstancesPerDecision).
func (h *harness) mustBeInFullPass(st *State, ch *Changes) {
	h.t.Helper()
	decideOnCopy := func(in Input) Decision {
		c := *st
		c.Mem = st.Mem.clone()
		cfg := h.cfg
		n := 0
		cfg.NewID = func() string { n++; return fmt.Sprintf("ffffffff-0000-0000-0000-%012d", n) }
		return Decide(&c, in, h.now, cfg)
	}
	scoped, full := decideOnCopy(Tick{Changes: ch}), decideOnCopy(Tick{})
	fullPuts := map[string]*v1.Instance{}
	created := map[string]int{}
	for _, i := range full.Plan.GetPutInstances() {
		fullPuts[i.GetId()] = i
		if st.Instances[i.GetId()] == nil {
			created[i.GetAppId()]++
		}
	}
	total := 0
	for _, n := range created {
		total += n
	}
	for _, i := range scoped.Plan.GetPutInstances() {
		if st.Instances[i.GetId()] == nil {
			created[i.GetAppId()]--
			if created[i.GetAppId()] < 0 && total < h.cfg.withDefaults().MaxNewInstancesPerDecision {
				h.t.Fatalf("the pass over %v creates more instances of %s than the full pass", ch, i.GetAppId())
			}
			continue
		}
		if f := fullPuts[i.GetId()]; !proto.Equal(f, i) {
			h.t.Fatalf("the pass over %v writes %v; the full pass %v", ch, i, f)
		}
	}
	for _, id := range scoped.Plan.GetDeleteInstances() {
		if !slices.Contains(full.Plan.GetDeleteInstances(), id) {
			h.t.Fatalf("the pass over %v forgets %s; the full pass does not", ch, id)
		}
	}
	kills := func(d Decision) map[string]bool {
		out := map[string]bool{}
		for _, c := range d.Calls {
			if c.Type == scheduler.Call_KILL {
				out[c.Kill.TaskID.Value] = true
			}
		}
		return out
	}
	fullKills := kills(full)
	for id := range kills(scoped) {
		if !fullKills[id] {
			h.t.Fatalf("the pass over %v kills %s; the full pass does not", ch, id)
		}
	}
}

// goalsOf returns the goals of an app's instances, sorted by instance id.
func goalsOf(h *harness, appID string) []v1.Goal {
	var out []v1.Goal
	for _, i := range h.instancesOf(appID) {
		out = append(out, goalOf(i))
	}
	return out
}

// twoAppsRunning sets up /a and /b, two resident instances each, running.
func twoAppsRunning(t *testing.T) *harness {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 8, 4096, 4000, 31000, 31100, nil)
	h.store.putApp(residentApp("/a", "v1", 2), "")
	h.store.putApp(residentApp("/b", "v1", 2), "")
	h.settle()
	for _, app := range []string{"/a", "/b"} {
		for _, i := range h.instancesOf(app) {
			if i.GetTask().GetState() != stRunning {
				t.Fatalf("%s not running after settle: %v", i.GetId(), i)
			}
		}
	}
	h.changes() // what settling committed
	return h
}

// The pass an API write triggers acts on the app it changed, without
// waiting for the periodic pass: a scale-up creates the instances and
// revives offers, a scale-down stops the surplus and kills their tasks.
// Another app's instances are not looked at.
func TestChangesPassScalesTheChangedApp(t *testing.T) {
	h := twoAppsRunning(t)
	bBefore := h.instancesOf("/b")

	h.store.putApp(residentApp("/a", "v2", 4), "")
	d := h.changes()
	if n := len(h.instancesOf("/a")); n != 4 {
		t.Fatalf("%d instances of /a after the scale-up's pass, want 4", n)
	}
	if !slices.Contains(callTypes(d), "REVIVE") {
		t.Fatalf("the scale-up's pass sent %v, want a REVIVE for the new instances", callTypes(d))
	}
	for _, i := range d.Plan.GetPutInstances() {
		if i.GetAppId() != "/a" {
			t.Fatalf("the pass over /a wrote %s of %s", i.GetId(), i.GetAppId())
		}
	}
	h.deliver()
	h.offers()
	h.deliver()
	h.changes()
	for _, i := range h.instancesOf("/a") {
		if i.GetTask().GetState() != stRunning {
			t.Fatalf("%s not running after the scale-up's offers: %v", i.GetId(), i)
		}
	}

	h.store.putApp(residentApp("/a", "v3", 1), "")
	d = h.changes()
	stopped, kills := 0, 0
	for _, g := range goalsOf(h, "/a") {
		if g == v1.Goal_GOAL_STOPPED {
			stopped++
		}
	}
	for _, c := range d.Calls {
		if c.Type == scheduler.Call_KILL {
			kills++
			if i := h.store.read().InstanceByTaskID(c.Kill.TaskID.Value); i.GetAppId() != "/a" || goalOf(i) != v1.Goal_GOAL_STOPPED {
				t.Fatalf("the scale-down's pass killed %s (%v)", c.Kill.TaskID.Value, i)
			}
		}
	}
	if stopped != 3 || kills != 3 {
		t.Fatalf("the scale-down's pass stopped %d and killed %d, want 3 and 3", stopped, kills)
	}
	for k, i := range h.instancesOf("/b") {
		if i != bBefore[k] && !proto.Equal(i, bBefore[k]) {
			t.Fatalf("/b's instance changed by passes over /a: %v, was %v", i, bBefore[k])
		}
	}
	// Nothing changed since: the next pass has nothing to look at.
	if d := h.changes(); !d.Empty() {
		t.Fatalf("a pass with nothing changed decided %v", callTypes(d))
	}
}

// A scoped pass looks only at what it is told changed: a change it never
// heard of (here, /b's scale-down taken away before the pass) is left
// alone by it and caught by the periodic full pass.
func TestFullPassCatchesWhatNoPassWasToldAbout(t *testing.T) {
	h := twoAppsRunning(t)
	h.store.putApp(residentApp("/b", "v2", 0), "")
	h.state()
	if ch, ok := h.snaps.take(); !ok || !ch.Apps["/b"] {
		t.Fatalf("the fresh read named %v (known %v), want /b", ch, ok)
	}
	// The write is lost to the scoped passes from here on.
	h.decide(Tick{Changes: &Changes{Apps: map[string]bool{"/a": true}}})
	if got := goalsOf(h, "/b"); !slices.Equal(got, []v1.Goal{v1.Goal_GOAL_RUNNING, v1.Goal_GOAL_RUNNING}) {
		t.Fatalf("a pass over /a changed /b's goals to %v", got)
	}
	if d := h.changes(); !d.Empty() {
		t.Fatalf("a pass with nothing noted decided %v", callTypes(d))
	}
	d := h.tick()
	if got := goalsOf(h, "/b"); !slices.Equal(got, []v1.Goal{v1.Goal_GOAL_STOPPED, v1.Goal_GOAL_STOPPED}) {
		t.Fatalf("the full pass left /b's goals at %v, want both stopped", got)
	}
	if kills := slices.Collect(func(yield func(string) bool) {
		for _, c := range d.Calls {
			if c.Type == scheduler.Call_KILL && !yield(c.Kill.TaskID.Value) {
				return
			}
		}
	}); len(kills) != 2 {
		t.Fatalf("the full pass killed %v, want /b's 2 tasks", kills)
	}
}

// What a fresh read names: the apps, instances, deployments' apps and
// backups written by anyone since the read before; what the driver's own
// plans write is noted from the plan. A store that was swapped (a restore)
// cannot be compared: the next pass is the full one.
func TestChangesNameWhatWasWritten(t *testing.T) {
	h := twoAppsRunning(t)
	b := h.instancesOf("/b")[0]
	wiped := proto.Clone(b).(*v1.Instance)
	wiped.Goal = v1.Goal_GOAL_DECOMMISSIONED
	h.store.putInstance(wiped)
	h.store.putApp(residentApp("/c", "v1", 1), "d-c")
	h.state()
	ch, ok := h.snaps.take()
	if !ok {
		t.Fatal("the changes of a read after API writes are unknown")
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for a := range ch.Apps {
			if !yield(a) {
				return
			}
		}
	}); !slices.Equal(got, []string{"/b", "/c"}) {
		t.Fatalf("apps named %v, want /b (its instance wiped) and /c (created)", got)
	}
	if len(ch.Instances) != 1 || !ch.Instances[b.GetId()] {
		t.Fatalf("instances named %v, want only %s", ch.Instances, b.GetId())
	}

	// The driver's own plan: noted from the plan, not from a read.
	d := h.changes()
	var ids []string
	for _, i := range d.Plan.GetPutInstances() {
		ids = append(ids, i.GetId())
	}
	sort.Strings(ids)
	ch, ok = h.snaps.take()
	if !ok || len(ch.Instances) != len(ids) {
		t.Fatalf("after the pass's own plan: %v (known %v), want its instances %v", ch, ok, ids)
	}
	for _, id := range ids {
		if !ch.Instances[id] {
			t.Fatalf("own write of %s not noted: %v", id, ch)
		}
	}

	// A swapped store (a snapshot restore) cannot be compared.
	other := newFSMStore(t)
	other.setFrameworkID("fw-1")
	h.store = other
	h.state()
	if _, ok := h.snaps.take(); ok {
		t.Fatal("a swapped store's changes are named; the next pass must be the full one")
	}
}

// An app waiting for the apps it depends on starts in the pass over the
// change that made them ready, not a periodic pass later.
func TestChangesPassStartsTheDependentApp(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	db := residentApp("/shop/db", "v1", 1)
	db.HealthChecks = []*v1.HealthCheck{{Protocol: proto.String("TCP"), PortIndex: proto.Int32(0)}}
	web := statelessApp("/shop/web", "v1", 2)
	web.Dependencies = []string{"/shop"}
	h.store.putApp(db, "d-db")
	h.store.putApp(web, "d-web")
	h.settle()
	h.changes()
	if n := len(h.instancesOf("/shop/web")); n != 0 {
		t.Fatalf("/shop/web has %d instances before /shop/db is healthy", n)
	}
	h.decide(HealthResult{TaskID: h.only("/shop/db").GetTask().GetId(), Healthy: true})
	h.changes()
	if n := len(h.instancesOf("/shop/web")); n != 2 {
		t.Fatalf("/shop/web has %d instances after the pass over /shop/db's health, want 2", n)
	}
}

// The periodic full pass keeps its interval while it is cheap, and takes
// at most about a tenth of the loop's time when it is not (a full pass
// over 100,000 instances on a loaded machine), never spaced more than ten
// intervals apart.
func TestFullPassGap(t *testing.T) {
	for _, c := range []struct{ took, want time.Duration }{
		{0, time.Second},
		{20 * time.Millisecond, time.Second},
		{100 * time.Millisecond, time.Second},
		{300 * time.Millisecond, 3 * time.Second},
		{5 * time.Second, 10 * time.Second},
	} {
		if got := fullPassGap(time.Second, c.took); got != c.want {
			t.Errorf("fullPassGap(1s, %v) = %v, want %v", c.took, got, c.want)
		}
	}
}

// An app id that names no app (a record without one) changes nothing in
// a pass: in particular, the instances the pass creates for other apps
// are not taken for its instances and decommissioned.
func TestChangesPassWithAnEmptyAppID(t *testing.T) {
	h := twoAppsRunning(t)
	h.store.putApp(residentApp("/a", "v2", 4), "")
	h.state()
	h.snaps.take()
	h.decide(Tick{Changes: &Changes{Apps: map[string]bool{"/a": true, "": true}}})
	if got := goalsOf(h, "/a"); !slices.Equal(got, []v1.Goal{v1.Goal_GOAL_RUNNING, v1.Goal_GOAL_RUNNING, v1.Goal_GOAL_RUNNING, v1.Goal_GOAL_RUNNING}) {
		t.Fatalf("/a's goals after the pass: %v, want 4 running", got)
	}
}
