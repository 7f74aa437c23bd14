package rpc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Every app write goes through one path: a running deployment of the app
// refuses it (force cancels that deployment in the same write), and a
// retry with the same request id answers with the first attempt's
// deployment without writing again.
func TestWritePath(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 60*time.Second)

	type write func(ctx context.Context, requestID string, force bool) (deploymentID string, err error)
	writes := []struct {
		name     string
		canForce bool
		do       write
	}{
		{"update", true, func(ctx context.Context, id string, force bool) (string, error) {
			r, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/postgres", Partial: true, Force: force, RequestId: id,
				App: &v1.App{Cmd: proto.String("postgres -c " + id)}}))
			return deploymentOf(r, err)
		}},
		{"restart", true, func(ctx context.Context, id string, force bool) (string, error) {
			r, err := c.app.RestartApp(ctx, connect.NewRequest(&v1.RestartAppRequest{Id: "/postgres", Force: force, RequestId: id}))
			return deploymentOf(r, err)
		}},
		{"kill and scale", false, func(ctx context.Context, id string, _ bool) (string, error) {
			r, err := c.task.KillTask(ctx, connect.NewRequest(&v1.KillTaskRequest{Id: "postgres.instance-1", Scale: true, RequestId: id}))
			return deploymentOf(r, err)
		}},
		{"delete", true, func(ctx context.Context, id string, force bool) (string, error) {
			r, err := c.app.DeleteApp(ctx, connect.NewRequest(&v1.DeleteAppRequest{Id: "/postgres", Force: force, RequestId: id}))
			return deploymentOf(r, err)
		}},
	}

	created, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: appFromFile(t, seedFile), RequestId: "create"}))
	if err != nil {
		t.Fatal(err)
	}
	running := created.Msg.DeploymentId
	applyDirect(t, s, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{{
		Id: "postgres.instance-1", AppId: "/postgres", AppVersion: created.Msg.App.GetVersion(), Goal: v1.Goal_GOAL_RUNNING, Resident: true,
	}}})

	for i, w := range writes {
		requestID := fmt.Sprintf("req-%d", i)
		// Locked by the running deployment.
		_, err := w.do(ctx, requestID, false)
		wantCode(t, err, connect.CodeFailedPrecondition)
		if !w.canForce {
			// Let the scheduler's stand-in finish the deployment.
			d := mustDeployment(t, c, running)
			d.Status = v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED
			applyDirect(t, s, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutDeployments: []*v1.Deployment{d}})
		}
		depID, err := w.do(ctx, requestID, true)
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		if depID == "" || depID == running {
			t.Fatalf("%s: deployment %q", w.name, depID)
		}
		if w.canForce {
			if st := mustDeployment(t, c, running).GetStatus(); st != v1.DeploymentStatus_DEPLOYMENT_STATUS_CANCELED {
				t.Errorf("%s with force: the running deployment is %v, want canceled", w.name, st)
			}
		}
		// A retry answers with the same deployment and writes nothing.
		before := s.fsm.State().LastIndex()
		again, err := w.do(ctx, requestID, true)
		if err != nil || again != depID {
			t.Fatalf("%s retried: %q, %v; want %q", w.name, again, err, depID)
		}
		if after := s.fsm.State().LastIndex(); after != before {
			t.Errorf("%s retried: the log grew from %d to %d", w.name, before, after)
		}
		running = depID
	}
}

// deploymentOf is the deployment id of a write's response.
func deploymentOf[T any](r *connect.Response[T], err error) (string, error) {
	if err != nil {
		return "", err
	}
	return any(r.Msg).(interface{ GetDeploymentId() string }).GetDeploymentId(), nil
}
