package scheduler

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestRandomizedLifecycle drives the core through random sequences of
// operator actions and faults (scaling, restarts, crashes, kills, wipes,
// lost calls followed by a leader failover, time passing) with the
// harness's invariant checks on every decision (write-ahead intent, one
// live task per instance, no operation the master refuses). After the
// faults stop, the app must converge to its instance count on distinct
// berths, and removing it must leave nothing reserved.
//
// The sequences come from rapid, so a failure shrinks to a short one;
// rerun it with the -rapid.failfile printed (more cases: -rapid.checks=N).
func TestRandomizedLifecycle(t *testing.T) {
	// As many cases as the 300 seeds this test used to run, unless
	// -rapid.checks says otherwise.
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == f.DefValue {
		if err := f.Value.Set("300"); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Value.Set(f.DefValue) }()
	}
	rapid.Check(t, func(t *rapid.T) {
		// intn draws a number in [0, n): every choice is one draw, so
		// shrinking simplifies them one by one.
		intn := func(n int, label string) int { return rapid.IntRange(0, n-1).Draw(t, label) }
		h := newHarness(t)
		for i := 0; i < 3; i++ {
			h.master.addAgent(fmt.Sprintf("A%d", i), fmt.Sprintf("host%d", i), 4, 2048, 2000, 31000, 31050, nil)
		}
		app := residentApp("/r", "v0", int32(1+intn(3, "instances")))
		h.store.putApp(app, "")
		web := statelessApp("/web", "v0", 2)
		h.store.putApp(web, "")
		version := 0
		next := func() string { version++; return fmt.Sprintf("v%d", version) }
		steps := rapid.IntRange(1, 60).Draw(t, "steps")
		for step := 0; step < steps; step++ {
			switch intn(10, "action") {
			case 0: // scale
				app = withInstances(app, next(), int32(intn(5, "scale")))
				h.store.putApp(app, "")
			case 1: // config change (restart)
				app = withInstances(app, next(), app.GetInstances())
				app.Env = appmodel.Env(map[string]string{"V": app.GetVersion()})
				h.store.putApp(app, "")
			case 2: // a task crashes
				if live := h.master.liveTasks(); len(live) > 0 {
					h.master.crash(live[intn(len(live), "crash")])
				}
			case 3: // plain kill or wipe of a random instance
				is := h.instancesOf("/r")
				if len(is) == 0 {
					break
				}
				i := proto.Clone(is[intn(len(is), "instance")]).(*v1.Instance)
				if intn(2, "wipe") == 0 {
					i.Goal = v1.Goal_GOAL_DECOMMISSIONED
				} else if taskLive(i.Task) {
					i.Task.KillRequestedAt = i.Task.UpdatedAt
				}
				h.store.putInstance(i)
			case 4: // crash between commit and send, then failover
				h.dropCalls = true
				if intn(2, "lost") == 0 {
					h.offers()
				} else {
					h.tick()
				}
				h.restart()
			case 5:
				h.advance(time.Duration(1+intn(30, "seconds")) * time.Second)
			case 6: // an agent is partitioned, or comes back
				a := h.master.order[intn(len(h.master.order), "agent")]
				if h.master.agents[a].gone {
					h.master.heal(a)
				} else {
					h.master.partition(a)
				}
			case 7: // the stateless app scales, or changes (a rolling upgrade)
				web = withInstances(web, next(), int32(intn(6, "web")))
				if intn(2, "upgrade") == 0 {
					web.Env = appmodel.Env(map[string]string{"V": web.GetVersion()})
					web.UpgradeStrategy = &v1.UpgradeStrategy{
						MinimumHealthCapacity: proto.Float64(float64(intn(3, "minHealth")) / 2),
						MaximumOverCapacity:   proto.Float64(float64(intn(3, "maxOver")) / 2),
					}
				}
				h.store.putApp(web, "")
			default:
				// The pass a store change triggers (scoped to what changed,
				// checked against the full pass) or the periodic one.
				if intn(2, "scoped") == 0 {
					h.changes()
				} else {
					h.tick()
				}
				h.deliver()
				h.changes()
				h.offers()
				h.deliver()
				h.changes()
			}
		}
		// Quiesce: partitions heal, time passes, the system settles.
		for _, a := range h.master.order {
			if h.master.agents[a].gone {
				h.master.heal(a)
			}
		}
		// (12 minutes: one periodic reconciliation finds stray tasks.)
		for i := 0; i < 12; i++ {
			h.advance(time.Minute)
			h.settle()
		}
		want := int(app.GetInstances())
		pids := map[string]bool{}
		running := 0
		for _, i := range h.instancesOf("/r") {
			if goalOf(i) != v1.Goal_GOAL_RUNNING {
				continue
			}
			if i.GetTask().GetState() != stRunning || i.AppVersion != app.GetVersion() && appmodel.NeedsRelaunch(h.store.appVersion("/r", i.AppVersion), app) {
				t.Fatalf("instance not converged: %v", i)
			}
			pid := i.GetReservation().GetVolumes()[0].GetPersistenceId()
			if pids[pid] {
				t.Fatalf("two instances share volume %s", pid)
			}
			pids[pid] = true
			running++
		}
		if running != want {
			t.Fatalf("%d running, want %d", running, want)
		}
		webRunning := 0
		for _, i := range h.instancesOf("/web") {
			if i.GetTask().GetState() == stRunning && !(i.AppVersion != web.GetVersion() && appmodel.NeedsRelaunch(h.store.appVersion("/web", i.AppVersion), web)) {
				webRunning++
			} else {
				t.Fatalf("stateless instance not running: %v", i)
			}
		}
		if webRunning != int(web.GetInstances()) {
			t.Fatalf("%d stateless running, want %d", webRunning, web.GetInstances())
		}
		// Every berth on the agents belongs to an instance that holds it,
		// and every instance holds its berth.
		held := map[string]bool{}
		for _, i := range h.instancesOf("/r") {
			if !hasBerth(i) {
				t.Fatalf("instance without a berth kept: %v", i)
			}
			held[fmt.Sprintf("%s@%s vols=%s", i.Id, i.Reservation.AgentId, i.Reservation.Volumes[0].PersistenceId)] = true
		}
		for _, r := range h.master.reservations() {
			if !held[r] {
				var detail []string
				for _, a := range h.master.agents {
					for iid, res := range a.res {
						if strings.HasPrefix(r, iid+"@") {
							st := ""
							if tk := a.tasks[res.usedBy]; tk != nil {
								st = tk.state.String()
							}
							detail = append(detail, fmt.Sprintf("used by %q (%s), agent gone=%v", res.usedBy, st, a.gone))
						}
					}
				}
				t.Fatalf("berth %s held by no instance %v (instances: %v)", r, detail, held)
			}
			delete(held, r)
		}
		if len(held) != 0 {
			t.Fatalf("instances whose berth is missing on the agents: %v", held)
		}
		h.store.deleteApp("/r", "")
		for i := 0; i < 3; i++ {
			h.advance(time.Minute)
			h.settle()
		}
		if n := len(h.instancesOf("/r")); n != 0 {
			t.Fatalf("%d instances after removal", n)
		}
		if r := h.master.reservations(); len(r) != 0 {
			t.Fatalf("leaked after removal: %v", r)
		}
	})
}
