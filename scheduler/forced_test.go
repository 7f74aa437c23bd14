package scheduler

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestForcedScaleAndRestartConverge drives a resident app through bursts
// of forced scale and restart writes (each cancelling the app's running
// deployments in the same entry, as the API's force does), task crashes,
// a master that loses every task and failovers; once they stop, the app
// runs exactly its stored instance count (issue 11).
func TestForcedScaleAndRestartConverge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		intn := func(n int, label string) int { return rapid.IntRange(0, n-1).Draw(t, label) }
		h := newHarness(t)
		for i := 0; i < 2; i++ {
			h.master.addAgent(fmt.Sprintf("A%d", i), fmt.Sprintf("host%d", i), 4, 2048, 2000, 31000, 31050, nil)
		}
		app := residentApp("/r", "2025-01-01T00:00:00Z", 2)
		h.store.putApp(app, "dep-0")
		h.settle()
		k := 0
		write := func(next *v1.App, change appmodel.Change) {
			k++
			ver := h.now.Add(time.Duration(k) * time.Millisecond).Format(time.RFC3339Nano)
			appmodel.StampVersion(app, next, ver, change)
			var cancel []string
			for _, d := range h.store.deployments() {
				if d.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
					cancel = append(cancel, d.GetId())
				}
			}
			action := "ScaleApplication"
			if change == appmodel.Restart {
				action = "RestartApplication"
			}
			dep := &v1.Deployment{Id: fmt.Sprintf("dep-%d", k), Version: ver, AffectedApps: []string{"/r"},
				Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING, Steps: []*v1.DeploymentStep{{Actions: []*v1.DeploymentAction{{Action: action, App: "/r"}}}}, CreatedAt: timestamppb.New(h.now.Add(time.Duration(k) * time.Millisecond))}
			h.store.mustApply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{
				App: next, ExpectedVersion: app.GetVersion(), Deployment: dep, CancelDeployments: cancel})
			app = next
		}
		steps := rapid.IntRange(1, 40).Draw(t, "steps")
		for step := 0; step < steps; step++ {
			switch intn(8, "action") {
			case 0, 1: // forced scale
				next := proto.Clone(app).(*v1.App)
				next.Instances = proto.Int32(int32(1 + intn(3, "scale")))
				write(next, appmodel.Edit)
			case 2: // forced restart
				write(proto.Clone(app).(*v1.App), appmodel.Restart)
			case 3: // the master loses every task (mesos-local restart)
				for _, id := range h.master.liveTasks() {
					h.master.crash(id)
				}
			case 4: // failover
				h.restart()
			case 5:
				h.advance(time.Duration(1+intn(20, "seconds")) * time.Second)
			default:
				h.tick()
				h.deliver()
				h.offers()
				h.deliver()
			}
		}
		for i := 0; i < 12; i++ {
			h.advance(time.Minute)
			h.settle()
		}
		want := int(app.GetInstances())
		running := 0
		for _, i := range h.instancesOf("/r") {
			if goalOf(i) == v1.Goal_GOAL_RUNNING {
				running++
			}
		}
		if running != want {
			for _, i := range h.instancesOf("/r") {
				t.Logf("%s goal %v task %s %s version %s", i.Id, i.Goal, i.GetTask().GetId(), i.GetTask().GetState(), i.GetAppVersion())
			}
			for _, d := range h.store.deployments() {
				t.Logf("deployment %s %v", d.Id, d.Status)
			}
			t.Fatalf("%d instances goal Running, the app wants %d", running, want)
		}
	})
}
