package rpc_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestListAppsLongListingMatchesGetApp: a listing long enough to read the
// instances and deployments tables whole gives every app the summary GetApp
// gives it; clients listing the same store at once get the same answer
// (shared and encoded once), over the binary and the JSON protocols; and a
// write shows in the next listing.
func TestListAppsLongListingMatchesGetApp(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 2*time.Minute)
	const n = 300 // beyond the bulk threshold (256)
	at := timestamppb.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	for i := range n {
		id := fmt.Sprintf("/many/app-%03d", i)
		status := v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED
		if i%3 == 0 {
			status = v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING
		}
		var insts []*v1.Instance
		for j := range i % 4 {
			inst := &v1.Instance{Id: fmt.Sprintf("many_app-%03d.instance-%d", i, j), AppId: id, Goal: v1.Goal_GOAL_RUNNING}
			switch j {
			case 1:
				inst.Task = &v1.Task{Id: inst.Id + "._app.1", State: "TASK_RUNNING", Healthy: proto.Bool(i%2 == 0)}
			case 2:
				inst.Goal = v1.Goal_GOAL_STOPPED
				inst.Task = &v1.Task{Id: inst.Id + "._app.2", State: "TASK_FAILED"}
				inst.LastFailure = &v1.TaskFailure{AppId: id, InstanceId: inst.Id, TaskId: inst.Task.Id, State: "TASK_FAILED", Timestamp: at}
			}
			insts = append(insts, inst)
		}
		applyDirect(t, s, v1.CommandType_COMMAND_TYPE_APP_CREATE, &v1.AppCreateCommand{
			App:          &v1.App{Id: id, Cmd: proto.String("sleep 1000"), Instances: proto.Int32(int32(i % 4)), Version: proto.String("2025-01-01T00:00:00Z")},
			Deployment:   &v1.Deployment{Id: fmt.Sprintf("d-%d", i), AffectedApps: []string{id}, Status: status, CreatedAt: at},
			PutInstances: insts,
		})
	}

	list := func(c clients) *v1.ListAppsResponse {
		t.Helper()
		res, err := c.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Msg.Apps) != n || len(res.Msg.Summaries) != n {
			t.Fatalf("listed %d apps with %d summaries, want %d", len(res.Msg.Apps), len(res.Msg.Summaries), n)
		}
		return res.Msg
	}
	first := list(c)
	for i, app := range first.Apps {
		got, err := c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: app.GetId()}))
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got.Msg.Summary, first.Summaries[i]) {
			t.Fatalf("%s: listed with summary %v, GetApp says %v", app.GetId(), first.Summaries[i], got.Msg.Summary)
		}
	}
	// The data behind the comparison is not all zero.
	if s := first.Summaries[1]; s.GetInstancesWaiting() != 1 || len(s.GetDeployments()) != 0 {
		t.Fatalf("summary of app-001: %v", s)
	}
	if s := first.Summaries[3]; s.GetTasksRunning() != 1 || s.GetTasksUnhealthy() != 1 || s.GetInstancesStopped() != 1 ||
		s.GetLastTaskFailure() == nil || len(s.GetDeployments()) != 1 {
		t.Fatalf("summary of app-003: %v", s)
	}

	// Concurrent listings of the same store, over Connect (binary and
	// JSON), gRPC and gRPC-Web.
	protocols := []clients{c, clientsFor(s, connect.WithProtoJSON()), clientsWith(s, h2cClient(), connect.WithGRPC()),
		clientsFor(s, connect.WithGRPCWeb())}
	var wg sync.WaitGroup
	got := make([]*v1.ListAppsResponse, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := protocols[i%len(protocols)]
			res, err := cl.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = res.Msg
		}()
	}
	wg.Wait()
	for i, g := range got {
		if g != nil && !proto.Equal(g, first) {
			t.Fatalf("concurrent listing %d differs from the first", i)
		}
	}

	// A write: the next listing shows it.
	if _, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/many/app-001", Partial: true, Force: true,
		App: &v1.App{Labels: map[string]string{"changed": "yes"}}})); err != nil {
		t.Fatal(err)
	}
	after := list(c)
	if after.Apps[1].GetLabels()["changed"] != "yes" || len(after.Summaries[1].GetDeployments()) != 1 {
		t.Fatalf("after the update, app-001 is listed as %v with %v", after.Apps[1], after.Summaries[1])
	}
	// Filters and pages are answers of their own.
	page, err := c.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{IdContains: "app-00", PageSize: 3}))
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Msg.Apps) != 3 || page.Msg.Apps[0].GetId() != "/many/app-000" || page.Msg.NextPageToken == "" {
		t.Fatalf("first page of app-00*: %d apps from %s, next %q", len(page.Msg.Apps), page.Msg.Apps[0].GetId(), page.Msg.NextPageToken)
	}
}
