package scheduler

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestIntegrationConcurrentAppWritesConvergeOnNotifications: writers of
// three apps scale and restart them at once (forced, each write cancelling
// the app's running deployment, as the nemesis client does) while the
// scheduler commits its own plans; with the periodic tick out of reach,
// only the store's change notifications and the driver's cached snapshot
// drive the decisions, so any write the cache hid would leave an app at
// the wrong count. Each app must end with exactly its last count of
// instances goal Running, and that many tasks live (issue 11).
func TestIntegrationConcurrentAppWritesConvergeOnNotifications(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mesos-local")
	}
	c := startCluster(t, 2, "cpus:4;mem:4096;disk:4000;ports:[31000-31400]", true)
	c.startScheduler(Config{TickInterval: time.Hour})
	apps := []string{"/a", "/b", "/c"}
	for _, id := range apps {
		app := residentApp(id, "2025-01-01T00:00:00Z", 1)
		app.Cpus, app.Mem = proto.Float64(0.1), proto.Float64(16)
		app.Container.Volumes[0].Persistent.Size = proto.Float64(5)
		c.createApp(app, "create"+id)
	}
	var mu sync.Mutex
	final := map[string]int{}
	var seq int
	var wg sync.WaitGroup
	for w, id := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for k := 0; k < 120; k++ {
				stored := fsm.NewTestReader(t, c.f.State).App(id)
				next := proto.Clone(stored).(*v1.App)
				change, action := appmodel.Edit, "ScaleApplication"
				count := int(stored.GetInstances())
				if k < 119 && rng.IntN(4) == 0 {
					change, action = appmodel.Restart, "RestartApplication"
				} else {
					count = 1 + rng.IntN(3)
					next.Instances = proto.Int32(int32(count))
				}
				mu.Lock()
				seq++
				ver := time.Date(2025, 1, 1, 0, 0, seq, 0, time.UTC).Format(time.RFC3339Nano)
				mu.Unlock()
				appmodel.StampVersion(stored, next, ver, change)
				var cancel []string
				for _, d := range fsm.NewTestReader(t, c.f.State).Deployments() {
					if d.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING && d.GetAffectedApps()[0] == id {
						cancel = append(cancel, d.GetId())
					}
				}
				dep := &v1.Deployment{Id: fmt.Sprintf("%s-%d", id, k), Version: ver, AffectedApps: []string{id},
					Status:    v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING,
					Steps:     []*v1.DeploymentStep{{Actions: []*v1.DeploymentAction{{Action: action, App: id}}}},
					CreatedAt: timestamppb.Now()}
				err := c.apply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{
					App: next, ExpectedVersion: stored.GetVersion(), Deployment: dep, CancelDeployments: cancel})
				if err == nil {
					mu.Lock()
					final[id] = count
					mu.Unlock()
				}
				time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	c.waitFor("every app at its last count", 60*time.Second, func() bool {
		for _, id := range apps {
			running, live := 0, 0
			for _, i := range c.instances(id) {
				if goalOf(i) == v1.Goal_GOAL_RUNNING {
					running++
				}
				if taskLive(i.GetTask()) && goalOf(i) == v1.Goal_GOAL_RUNNING {
					live++
				}
			}
			if running != final[id] || live != final[id] {
				return false
			}
		}
		return true
	})
}
