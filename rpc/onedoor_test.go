package rpc_test

import (
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// rawBytesAllowed lists the request fields that may carry opaque bytes, with
// the reason they are not a way around validation.
var rawBytesAllowed = map[protoreflect.FullName]string{
	// A whole snapshot of the state, parsed by fsm.ReadSnapshot and
	// replaced at once by Raft; it never becomes an FSM command.
	"berth.v1.RestoreSnapshotRequest.data": "whole-state restore, an operator action",
	"berth.v1.SnapshotChunk.data":          "the same, streamed in chunks",
}

// TestNoRawCommandEndpoint walks every method of every Berth service and
// fails if a request can carry FSM command bytes or an FSM command message:
// every write must enter through a validated API request (invariant 6).
func TestNoRawCommandEndpoint(t *testing.T) {
	commandsFile := v1.File_berth_v1_commands_proto.Path()
	methods := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("berth.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			svc := fd.Services().Get(i)
			for j := 0; j < svc.Methods().Len(); j++ {
				m := svc.Methods().Get(j)
				methods++
				checkRequest(t, string(m.FullName()), m.Input(), commandsFile, map[protoreflect.FullName]bool{})
			}
		}
		return true
	})
	if methods < 10 {
		t.Fatalf("walked only %d methods; the descriptors were not found", methods)
	}
}

func checkRequest(t *testing.T, method string, md protoreflect.MessageDescriptor, commandsFile string, seen map[protoreflect.FullName]bool) {
	t.Helper()
	if seen[md.FullName()] {
		return
	}
	seen[md.FullName()] = true
	if md.ParentFile().Path() == commandsFile {
		t.Errorf("%s: request carries %s, an FSM command message", method, md.FullName())
		return
	}
	for i := 0; i < md.Fields().Len(); i++ {
		f := md.Fields().Get(i)
		switch f.Kind() {
		case protoreflect.BytesKind:
			if _, ok := rawBytesAllowed[f.FullName()]; !ok {
				t.Errorf("%s: request field %s carries raw bytes; add a typed, validated request instead", method, f.FullName())
			}
		case protoreflect.MessageKind, protoreflect.GroupKind:
			checkRequest(t, method, f.Message(), commandsFile, seen)
		}
	}
}

// TestForgedCommandHasNoEndpoint replays issue 10's attack: a forged
// AppDelete command posted to the former ForwardCommand endpoint. It must
// find no endpoint, and the app must survive.
func TestForgedCommandHasNoEndpoint(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 30*time.Second)
	if _, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/victim", "cmd": "sleep 1000"}`)})); err != nil {
		t.Fatal(err)
	}
	before := s.fsm.State().LastIndex()
	forged := append([]byte{byte(v1.CommandType_COMMAND_TYPE_APP_DELETE)}, mustMarshal(t, &v1.AppDeleteCommand{AppId: "/victim"})...)
	for _, body := range []struct{ contentType, data string }{
		{"application/proto", string(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), forged))},
		{"application/json", `{"command":"` + base64.StdEncoding.EncodeToString(forged) + `"}`},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url()+"/berth.v1.ClusterService/ForwardCommand", strings.NewReader(body.data))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", body.contentType)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("POST ForwardCommand (%s) = %s, want 404 Not Found", body.contentType, res.Status)
		}
	}
	got, err := c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/victim"}))
	if err != nil || got.Msg.GetApp().GetId() != "/victim" {
		t.Fatalf("app after forged delete = %v, %v", got, err)
	}
	if after := s.fsm.State().LastIndex(); after != before {
		t.Fatalf("applied index moved from %d to %d: something reached the log", before, after)
	}
}
