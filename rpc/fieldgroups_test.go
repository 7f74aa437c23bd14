package rpc_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// A Marathon file with fields Berth does not act upon is stored whole and
// comes back with them, and the summary says which; an explicit [] stays
// "no ports" through the server, and a partial update with {} clears a map.
func TestAppFieldGroupsThroughServer(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 30*time.Second)

	created, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{
		"id": "/checked", "cmd": "sleep 1000", "instances": 0, "portDefinitions": [], "labels": {"tier": "web"},
		"check": {"exec": {"command": {"shell": "true"}}},
		"container": {"type": "MESOS", "linuxInfo": {"ipcInfo": {"mode": "PRIVATE", "shmSize": 16}}}}`)}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/checked"}))
	if err != nil {
		t.Fatal(err)
	}
	app := got.Msg.App
	if app.GetCheck().GetExec().GetCommand().GetShell() != "true" || app.GetContainer().GetLinuxInfo().GetIpcInfo().GetShmSize() != 16 {
		t.Fatalf("stored app lost fields: %v", app)
	}
	if len(appmodel.Ports(app)) != 0 || !appmodel.ExplicitlyEmpty(app, "portDefinitions") {
		t.Fatalf("stored app has ports %v, want none", appmodel.Ports(app))
	}
	var fields []string
	for _, u := range got.Msg.Summary.GetUnsupported() {
		f, _, _ := strings.Cut(u, ":")
		fields = append(fields, f)
	}
	if !slices.Equal(fields, []string{"check", "container.linuxInfo"}) {
		t.Fatalf("summary unsupported = %v", got.Msg.Summary.GetUnsupported())
	}
	rendered, err := appmodel.Render(app)
	if err != nil || !strings.Contains(string(rendered), `"portDefinitions": []`) {
		t.Fatalf("rendered (%v):\n%s", err, rendered)
	}

	updated, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/checked", Partial: true, Force: true,
		App: mustApp(t, `{"labels": {}, "check": null}`)}))
	if err != nil {
		t.Fatal(err)
	}
	if u := updated.Msg.App; len(u.GetLabels()) != 0 || u.GetCheck() != nil || len(appmodel.Ports(u)) != 0 || u.GetVersion() == created.Msg.App.GetVersion() {
		t.Fatalf("after partial update: %v", u)
	}
}
