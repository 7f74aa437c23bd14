package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestIntegrationForcedWritesDuringScheduling: bursts of forced scale and
// restart writes, applied while the running scheduler commits its own
// plans, end with the app running exactly its stored instance count
// (issue 11: a scale-down that never came).
func TestIntegrationForcedWritesDuringScheduling(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mesos-local")
	}
	c := startCluster(t, 2, "cpus:2;mem:1024;disk:1000;ports:[31000-31100]", true)
	c.startScheduler(Config{})
	app := residentApp("/kv", "2025-01-01T00:00:00Z", 2)
	app.Cmd = proto.String("exec sleep 3600")
	app.Cpus = proto.Float64(0.1)
	app.Mem = proto.Float64(16)
	app.Container.Volumes[0].Persistent.Size = proto.Float64(5)
	c.createApp(app, "d0")
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for k := 1; k <= 150; k++ {
		stored := fsm.NewTestReader(t, c.f.State).App("/kv")
		next := proto.Clone(stored).(*v1.App)
		change := appmodel.Edit
		action := "ScaleApplication"
		if rng.IntN(4) == 0 {
			change, action = appmodel.Restart, "RestartApplication"
		} else {
			next.Instances = proto.Int32(int32(1 + rng.IntN(3)))
		}
		if k == 150 {
			change, action = appmodel.Edit, "ScaleApplication"
			next = proto.Clone(stored).(*v1.App)
			next.Instances = proto.Int32(1)
		}
		ver := base.Add(time.Duration(k) * time.Second).Format(time.RFC3339Nano)
		appmodel.StampVersion(stored, next, ver, change)
		var cancel []string
		for _, d := range fsm.NewTestReader(t, c.f.State).Deployments() {
			if d.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
				cancel = append(cancel, d.GetId())
			}
		}
		dep := &v1.Deployment{Id: fmt.Sprintf("d%d", k), Version: ver, AffectedApps: []string{"/kv"},
			Status:    v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING,
			Steps:     []*v1.DeploymentStep{{Actions: []*v1.DeploymentAction{{Action: action, App: "/kv"}}}},
			CreatedAt: timestamppb.New(base.Add(time.Duration(k) * time.Second))}
		err := c.apply(v1.CommandType_COMMAND_TYPE_APP_UPDATE, &v1.AppUpdateCommand{
			App: next, ExpectedVersion: stored.GetVersion(), Deployment: dep, CancelDeployments: cancel})
		if err != nil {
			t.Logf("write %d: %v", k, err)
		}
		time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
	}
	c.waitFor("one instance goal Running with a running task", 60*time.Second, func() bool {
		running, live := 0, 0
		for _, i := range c.instances("/kv") {
			if goalOf(i) == v1.Goal_GOAL_RUNNING {
				running++
			}
			if taskLive(i.GetTask()) {
				live++
			}
		}
		return running == 1 && live == 1
	})
}

// deafStore is a store whose change notifications never fire, as if a
// write reached the store without waking the driver.
type deafStore struct {
	Store
	never chan struct{}
}

func (d deafStore) Watch() <-chan struct{} { return d.never }

// TestIntegrationTickReadsTheStore: the periodic pass decides on the store
// as it is even when the driver missed the change notification of a
// write (its cached snapshot would otherwise hide the write until some
// other change): a scale-down of a running app is carried out (issue 11).
func TestIntegrationTickReadsTheStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mesos-local")
	}
	c := startCluster(t, 2, "cpus:2;mem:1024;disk:1000;ports:[31000-31100]", true)
	never := make(chan struct{})
	deps := c.deps()
	deps.Store = func() Store { return deafStore{Store: liveStore{c.f.State()}, never: never} }
	s := New(Config{MesosMaster: c.ml.URL(), Logger: testLogger(t), RefuseSeconds: time.Second, TickInterval: 100 * time.Millisecond}, deps)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("scheduler Run: %v", err)
		}
	}()
	app := residentApp("/kv", "2025-01-01T00:00:00Z", 2)
	app.Cmd = proto.String("exec sleep 3600")
	app.Cpus = proto.Float64(0.1)
	app.Mem = proto.Float64(16)
	app.Container.Volumes[0].Persistent.Size = proto.Float64(5)
	c.createApp(app, "d1")
	c.waitFor("two instances running", 60*time.Second, func() bool {
		n := 0
		for _, i := range c.instances("/kv") {
			if runningTask(i) {
				n++
			}
		}
		return n == 2 && c.deploymentDone("d1")
	})
	one := proto.Clone(app).(*v1.App)
	one.Instances = proto.Int32(1)
	one.Version = proto.String("2025-01-01T00:00:01Z")
	c.updateApp(one, "d2")
	c.waitFor("one instance goal Running after the scale-down", 30*time.Second, func() bool {
		n := 0
		for _, i := range c.instances("/kv") {
			if goalOf(i) == v1.Goal_GOAL_RUNNING {
				n++
			}
		}
		return n == 1 && c.deploymentDone("d2")
	})
}
