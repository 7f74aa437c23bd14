package rpc_test

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/rpc"
)

// TestLimits: requests beyond a server's caps are refused with an error that
// names the field or the cap, and change nothing. A billion instances once
// were accepted and ran the leader out of memory.
func TestLimits(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{maxApps: 2, maxInstances: 5})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, time.Minute)
	create := func(js string) error {
		_, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, js)}))
		return err
	}
	violation := func(err error, field, desc string) {
		t.Helper()
		ce := wantCode(t, err, connect.CodeInvalidArgument)
		for _, v := range rpc.ViolationsFromError(ce) {
			if v.Field == field && strings.Contains(v.Description, desc) {
				return
			}
		}
		t.Fatalf("want a violation of %s (%q), got %v", field, desc, rpc.ViolationsFromError(ce))
	}
	violation(create(`{"id": "/huge", "cmd": "sleep 1", "instances": 1000000000, "cpus": 0.01, "mem": 1}`),
		"instances", "must be at most 25000")
	violation(create(`{"id": "/nul", "cmd": "echo \u0000"}`), "cmd", "control character U+0000")
	violation(create(`{"id": "/`+strings.Repeat("a", 300)+`", "cmd": "x"}`), "id", "at most 193")

	if err := create(`{"id": "/a", "cmd": "x", "instances": 2}`); err != nil {
		t.Fatal(err)
	}
	if err := create(`{"id": "/b", "cmd": "x", "instances": 2}`); err != nil {
		t.Fatal(err)
	}
	ce := wantCode(t, create(`{"id": "/c", "cmd": "x", "instances": 0}`), connect.CodeResourceExhausted)
	if !strings.Contains(ce.Message(), "holds 2 apps, its maximum") {
		t.Fatalf("apps cap: %q", ce.Message())
	}
	_, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/a", App: &v1.App{Instances: proto.Int32(4)}, Partial: true, Force: true}))
	ce = wantCode(t, err, connect.CodeResourceExhausted)
	if !strings.Contains(ce.Message(), "6 instances together, beyond its maximum of 5") {
		t.Fatalf("instances cap: %q", ce.Message())
	}
	// Within the cap, and scaling down, work.
	for _, n := range []int32{3, 0} {
		if _, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/a", App: &v1.App{Instances: proto.Int32(n)}, Partial: true, Force: true})); err != nil {
			t.Fatalf("scale /a to %d: %v", n, err)
		}
	}
	apps, err := c.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
	if err != nil || len(apps.Msg.Apps) != 2 {
		t.Fatalf("apps after refusals: %v, %v", apps, err)
	}
}

// TestListAppsPages: a listing in pages returns every app once, in order,
// with filters applied before the cut.
func TestListAppsPages(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, time.Minute)
	for _, id := range []string{"/a", "/b", "/c", "/d", "/e", "/x"} {
		labels := `{"team": "t"}`
		if id == "/c" {
			labels = `{}`
		}
		if _, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t,
			`{"id": "`+id+`", "cmd": "x", "instances": 0, "labels": `+labels+`}`)})); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	token, pages := "", 0
	for {
		res, err := c.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{Label: "team==t", PageSize: 2, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(res.Msg.Apps) != len(res.Msg.Summaries) || len(res.Msg.Apps) > 2 {
			t.Fatalf("page %d: %d apps, %d summaries", pages, len(res.Msg.Apps), len(res.Msg.Summaries))
		}
		for _, a := range res.Msg.Apps {
			got = append(got, a.GetId())
		}
		if token = res.Msg.NextPageToken; token == "" {
			break
		}
	}
	if strings.Join(got, ",") != "/a,/b,/d,/e,/x" || pages != 3 {
		t.Fatalf("pages gave %v in %d pages", got, pages)
	}
	_, err := c.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{PageToken: "not a token!"}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = c.task.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{PageSize: -1}))
	wantCode(t, err, connect.CodeInvalidArgument)
}
