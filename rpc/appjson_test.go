package rpc_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/rpc"
)

// TestParseAndRenderApp: a Marathon definition (env values as strings)
// goes through ParseApp into the same App the CLI's parser makes, and
// RenderApp writes it back in a form ParseApp reads again.
func TestParseAndRenderApp(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, time.Minute)
	data, err := os.ReadFile("../deploy/examples/postgres.json")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := c.app.ParseApp(ctx, connect.NewRequest(&v1.ParseAppRequest{Json: string(data)}))
	if err != nil {
		t.Fatal(err)
	}
	want := appFromFile(t, "../deploy/examples/postgres.json")
	if !proto.Equal(parsed.Msg.GetApp(), want) {
		t.Fatalf("ParseApp gave %v, want %v", parsed.Msg.GetApp(), want)
	}
	if got := parsed.Msg.GetApp().GetEnv()["LANG"].GetValue(); got != "C.UTF-8" {
		t.Errorf("env LANG = %q", got)
	}
	rendered, err := c.app.RenderApp(ctx, connect.NewRequest(&v1.RenderAppRequest{App: want}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rendered.Msg.GetJson(), `"LANG": "C.UTF-8"`) {
		t.Errorf("RenderApp did not write env in Marathon's form:\n%s", rendered.Msg.GetJson())
	}
	again, err := c.app.ParseApp(ctx, connect.NewRequest(&v1.ParseAppRequest{Json: rendered.Msg.GetJson()}))
	if err != nil {
		t.Fatalf("ParseApp of RenderApp's output: %v", err)
	}
	if !proto.Equal(again.Msg.GetApp(), want) {
		t.Errorf("round trip changed the app: %v", again.Msg.GetApp())
	}
}

// TestParseAppErrorsNameFields: each problem comes back as a field
// violation naming its JSON path; malformed JSON names the text as a whole.
func TestParseAppErrorsNameFields(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, time.Minute)
	_, err := c.app.ParseApp(ctx, connect.NewRequest(&v1.ParseAppRequest{Json: `{"id": "/x", "instaces": 1, "cpus": "many"}`}))
	wantCode(t, err, connect.CodeInvalidArgument)
	fields := map[string]string{}
	for _, v := range rpc.ViolationsFromError(err) {
		fields[v.Field] = v.Description
	}
	if !strings.Contains(fields["instaces"], "instances") || fields["cpus"] == "" {
		t.Errorf("violations %v, want instaces (suggesting instances) and cpus", fields)
	}
	_, err = c.app.ParseApp(ctx, connect.NewRequest(&v1.ParseAppRequest{Json: `{"id": `}))
	wantCode(t, err, connect.CodeInvalidArgument)
	if vs := rpc.ViolationsFromError(err); len(vs) != 1 || vs[0].Field != "json" {
		t.Errorf("malformed JSON: violations %v, want one for json", vs)
	}
	_, err = c.app.RenderApp(ctx, connect.NewRequest(&v1.RenderAppRequest{}))
	wantCode(t, err, connect.CodeInvalidArgument)
}
