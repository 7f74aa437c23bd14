package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// lifecycleAPI records the lifecycle requests the CLI sends.
type lifecycleAPI struct {
	berthv1connect.UnimplementedAppServiceHandler
	berthv1connect.UnimplementedDeploymentServiceHandler
	mu      sync.Mutex
	cancels []*v1.CancelDeploymentRequest
	updates []*v1.UpdateAppRequest
	resets  []*v1.ResetDelayRequest
}

func (a *lifecycleAPI) CancelDeployment(_ context.Context, req *connect.Request[v1.CancelDeploymentRequest]) (*connect.Response[v1.CancelDeploymentResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancels = append(a.cancels, req.Msg)
	if req.Msg.Force {
		return connect.NewResponse(&v1.CancelDeploymentResponse{}), nil
	}
	return connect.NewResponse(&v1.CancelDeploymentResponse{DeploymentId: "rb1", Version: "2026-01-01T00:00:02Z"}), nil
}

func (a *lifecycleAPI) UpdateApp(_ context.Context, req *connect.Request[v1.UpdateAppRequest]) (*connect.Response[v1.UpdateAppResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.updates = append(a.updates, req.Msg)
	return connect.NewResponse(&v1.UpdateAppResponse{App: &v1.App{Id: req.Msg.Id, Version: proto.String("2026-01-01T00:00:03Z")}, DeploymentId: "d9"}), nil
}

func (a *lifecycleAPI) ResetDelay(_ context.Context, req *connect.Request[v1.ResetDelayRequest]) (*connect.Response[v1.ResetDelayResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.resets = append(a.resets, req.Msg)
	return connect.NewResponse(&v1.ResetDelayResponse{InstancesReset: 2}), nil
}

// berth deployment cancel ID [--force], berth app rollback ID --to V and
// berth app reset-delay ID send the requests Marathon's DELETE
// /v2/deployments/{id}[?force=true], PUT /v2/apps/{id} {"version": V} and
// DELETE /v2/queue/{id}/delay stand for, and say what happened.
func TestLifecycleCommands(t *testing.T) {
	api := &lifecycleAPI{}
	mux := http.NewServeMux()
	mux.Handle(berthv1connect.NewAppServiceHandler(api))
	mux.Handle(berthv1connect.NewDeploymentServiceHandler(api))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"deployment", "cancel", "d1"}, "Cancelled deployment d1; rolling back (deployment rb1, version 2026-01-01T00:00:02Z)"},
		{[]string{"deployment", "cancel", "d2", "--force"}, "Cancelled deployment d2\n"},
		{[]string{"app", "rollback", "/db", "--to", "2026-01-01T00:00:00Z"}, "Rolling app /db back to 2026-01-01T00:00:00Z (version 2026-01-01T00:00:03Z) (deployment d9)"},
		{[]string{"app", "reset-delay", "/db"}, "Reset the launch delay of app /db (2 instances)"},
	} {
		stdout, stderr, code := runCLI(t, append(c.args, "--addr", addr)...)
		if code != 0 || !strings.Contains(stdout, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", c.args, code, stdout, stderr, c.want)
		}
	}
	_, stderr, code := runCLI(t, "app", "rollback", "/db", "--addr", addr)
	if code == 0 || !strings.Contains(stderr, "--to VERSION") {
		t.Errorf("rollback without --to: exit %d, %q", code, stderr)
	}

	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.cancels) != 2 || api.cancels[0].Id != "d1" || api.cancels[0].Force || api.cancels[1].Id != "d2" || !api.cancels[1].Force {
		t.Errorf("cancel requests %v", api.cancels)
	}
	if len(api.updates) != 1 || api.updates[0].Id != "/db" || api.updates[0].VersionToDeploy != "2026-01-01T00:00:00Z" || api.updates[0].App != nil {
		t.Errorf("rollback requests %v", api.updates)
	}
	if len(api.resets) != 1 || api.resets[0].Id != "/db" {
		t.Errorf("reset requests %v", api.resets)
	}
}

func TestWithBackoff(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tv := &v1.TaskView{Message: "Command exited with status 3", LaunchNotBefore: "2026-01-01T00:00:30.000Z"}
	if got := withBackoff(tv, now); got != "Command exited with status 3; backoff: relaunch not before 2026-01-01T00:00:30.000Z" {
		t.Errorf("waiting: %q", got)
	}
	if got := withBackoff(tv, now.Add(time.Minute)); got != "Command exited with status 3" {
		t.Errorf("delay over: %q", got)
	}
	tv.AgentNotice = "agent draining: agent S1 is draining"
	if got := withBackoff(tv, now.Add(time.Minute)); got != "agent draining: agent S1 is draining; Command exited with status 3" {
		t.Errorf("with an agent notice: %q", got)
	}
}
