package rpc_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-dev/berth/acl"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// lockedBuffer collects logs of several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// aclClients are clients of one server that send a token secret ("" for
// none).
type aclClients struct {
	clients
	acl berthv1connect.ACLServiceClient
}

func withSecret(s *server, secret string) aclClients {
	hc := &http.Client{Transport: tokenTransport{secret}}
	return aclClients{clientsWith(s, hc), berthv1connect.NewACLServiceClient(hc, s.url())}
}

// tokenTransport sends a token secret ("" for none) in X-Berth-Token.
type tokenTransport struct{ secret string }

func (t tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.secret != "" {
		req = req.Clone(req.Context())
		req.Header.Set(acl.TokenHeader, t.secret)
	}
	return http.DefaultTransport.RoundTrip(req)
}

func createToken(t *testing.T, c aclClients, policy v1.ACLPolicy, prefix string) (*v1.ACLToken, string) {
	t.Helper()
	res, err := c.acl.CreateToken(ctxFor(t, 20*time.Second), connect.NewRequest(&v1.CreateTokenRequest{Policy: policy, AppPrefix: prefix, Description: "test"}))
	if err != nil {
		t.Fatalf("create %s token: %v", policy, err)
	}
	if res.Msg.GetSecretId() == "" || res.Msg.GetToken().GetSecretHash() != "" {
		t.Fatalf("created token = %v: want a secret and no hash", res.Msg)
	}
	return res.Msg.GetToken(), res.Msg.GetSecretId()
}

// TestACLThroughFollower drives a 3-server cluster with ACLs on through a
// follower: bootstrap once, tokens of each policy and prefix, writes that
// pass and fail, redaction, filtering, token self and delete, and the
// audit log on the leader.
func TestACLThroughFollower(t *testing.T) {
	logs := &lockedBuffer{}
	servers := startCluster(t, 3, clusterOpts{aclEnabled: true, logs: logs})
	leader := waitLeader(t, servers)
	follower := followerOf(servers)
	ctx := ctxFor(t, 2*time.Minute)

	anon := withSecret(follower, "")
	_, err := anon.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated)
	_, err = anon.acl.TokenSelf(ctx, connect.NewRequest(&v1.TokenSelfRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated)

	// Health checks stay open for load balancers.
	hres, err := http.Post(follower.url()+acl.HealthCheckProcedure, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	hres.Body.Close()
	if hres.StatusCode != http.StatusOK {
		t.Fatalf("health check without token: HTTP %d", hres.StatusCode)
	}

	boot, err := anon.acl.Bootstrap(ctx, connect.NewRequest(&v1.BootstrapRequest{}))
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if boot.Msg.GetToken().GetPolicy() != v1.ACLPolicy_ACL_POLICY_MANAGEMENT || boot.Msg.GetSecretId() == "" {
		t.Fatalf("bootstrap = %v", boot.Msg)
	}
	_, err = anon.acl.Bootstrap(ctx, connect.NewRequest(&v1.BootstrapRequest{}))
	wantCode(t, err, connect.CodeFailedPrecondition)

	mgmt := withSecret(follower, boot.Msg.GetSecretId())
	_, readSecret := createToken(t, mgmt, v1.ACLPolicy_ACL_POLICY_READ, "")
	teamATok, teamASecret := createToken(t, mgmt, v1.ACLPolicy_ACL_POLICY_WRITE, "/team-a/")
	teamBTok, teamBSecret := createToken(t, mgmt, v1.ACLPolicy_ACL_POLICY_WRITE, "/team-b/")
	_, err = mgmt.acl.CreateToken(ctx, connect.NewRequest(&v1.CreateTokenRequest{Policy: v1.ACLPolicy_ACL_POLICY_WRITE, AppPrefix: "team-a"}))
	if ce := wantCode(t, err, connect.CodeInvalidArgument); !strings.Contains(ce.Message(), "app_prefix") {
		t.Errorf("bad prefix refused with %q, want it to name app_prefix", ce.Message())
	}

	teamA := withSecret(follower, teamASecret)
	app := mustApp(t, `{"id": "/team-a/db", "cmd": "sleep 1000", "instances": 1, "cpus": 0.1, "mem": 32, "env": {"DB_PASSWORD": "hunter2"}}`)
	if _, err := teamA.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app})); err != nil {
		t.Fatalf("create with the team-a token through a follower: %v", err)
	}

	other := mustApp(t, `{"id": "/team-a/other", "cmd": "sleep 1000", "instances": 1, "cpus": 0.1, "mem": 32}`)
	unknown := withSecret(follower, "00000000-0000-0000-0000-000000000000")
	for _, tc := range []struct {
		name string
		c    aclClients
		want connect.Code
	}{
		{"no token", anon, connect.CodeUnauthenticated},
		{"unknown token", unknown, connect.CodeUnauthenticated},
		{"read token", withSecret(follower, readSecret), connect.CodePermissionDenied},
		{"other prefix", withSecret(follower, teamBSecret), connect.CodePermissionDenied},
	} {
		_, err := tc.c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: other}))
		wantCode(t, err, tc.want)
		_, err = tc.c.app.DeleteApp(ctx, connect.NewRequest(&v1.DeleteAppRequest{Id: "/team-a/db"}))
		wantCode(t, err, tc.want)
		_, err = tc.c.app.RestartApp(ctx, connect.NewRequest(&v1.RestartAppRequest{Id: "/team-a/db"}))
		wantCode(t, err, tc.want)
	}
	// The leader checks a forwarded request again: the forwarded mark
	// alone opens nothing.
	req := connect.NewRequest(&v1.DeleteAppRequest{Id: "/team-a/db"})
	req.Header().Set("Berth-Forwarded", "1")
	_, err = withSecret(leader, "").app.DeleteApp(ctx, req)
	wantCode(t, err, connect.CodeUnauthenticated)

	all, err := mgmt.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{Consistency: v1.ReadConsistency_READ_CONSISTENCY_CONSISTENT}))
	if err != nil || len(all.Msg.GetApps()) != 1 || all.Msg.GetApps()[0].GetVersion() == "" {
		t.Fatalf("apps after refused writes = %v, %v; want /team-a/db alone", all, err)
	}
	version := all.Msg.GetApps()[0].GetVersion()

	// Env values: a read token sees them redacted, a write token sees them.
	got, err := withSecret(follower, readSecret).app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/team-a/db"}))
	if err != nil || got.Msg.GetApp().GetEnv()["DB_PASSWORD"].GetValue() != acl.RedactedValue {
		t.Fatalf("GetApp with a read token = %v, %v; want the env value redacted", got, err)
	}
	got, err = teamA.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/team-a/db"}))
	if err != nil || got.Msg.GetApp().GetEnv()["DB_PASSWORD"].GetValue() != "hunter2" {
		t.Fatalf("GetApp with a write token = %v, %v; want the env value", got, err)
	}
	// Redaction did not touch the store.
	got, err = mgmt.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/team-a/db"}))
	if err != nil || got.Msg.GetApp().GetEnv()["DB_PASSWORD"].GetValue() != "hunter2" {
		t.Fatalf("GetApp with the management token after a redacted read = %v, %v", got, err)
	}

	// Lists are filtered by prefix; reads of another team's app refused.
	teamB := withSecret(follower, teamBSecret)
	list, err := teamB.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
	if err != nil || len(list.Msg.GetApps()) != 0 || len(list.Msg.GetSummaries()) != 0 {
		t.Fatalf("ListApps with the team-b token = %v, %v; want nothing", list, err)
	}
	tasks, err := teamB.task.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{}))
	if err != nil || len(tasks.Msg.GetTasks()) != 0 {
		t.Fatalf("ListTasks with the team-b token = %v, %v; want nothing", tasks, err)
	}
	deps, err := teamB.deployment.ListDeployments(ctx, connect.NewRequest(&v1.ListDeploymentsRequest{IncludeFinished: true}))
	if err != nil || len(deps.Msg.GetDeployments()) != 0 {
		t.Fatalf("ListDeployments with the team-b token = %v, %v; want nothing", deps, err)
	}
	_, err = teamB.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/team-a/db"}))
	wantCode(t, err, connect.CodePermissionDenied)
	list, err = teamA.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
	if err != nil || len(list.Msg.GetApps()) != 1 {
		t.Fatalf("ListApps with the team-a token = %v, %v; want its app", list, err)
	}

	// A stream whose rule reads the request (app_id).
	stream, err := teamB.event.StreamEvents(ctx, connect.NewRequest(&v1.StreamEventsRequest{AppId: "/team-a/db"}))
	if err == nil {
		if stream.Receive() {
			t.Fatalf("team-b streams team-a events: got %v", stream.Msg())
		}
		err = stream.Err()
		stream.Close()
	}
	wantCode(t, err, connect.CodePermissionDenied)
	sctx, cancel := context.WithCancel(ctx)
	stream, err = teamA.event.StreamEvents(sctx, connect.NewRequest(&v1.StreamEventsRequest{AppId: "/team-a/db"}))
	if err != nil || !stream.Receive() {
		t.Fatalf("team-a event stream: %v %v", err, stream.Err())
	}
	cancel()
	stream.Close()

	// The same check over gRPC and gRPC-Web.
	for name, c := range map[string]clients{
		"grpc":     clientsWith(follower, h2cClient(), connect.WithGRPC()),
		"grpc-web": clientsFor(follower, connect.WithGRPCWeb()),
	} {
		_, err := c.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
		wantCode(t, err, connect.CodeUnauthenticated)
		req := connect.NewRequest(&v1.DeleteAppRequest{Id: "/team-a/db"})
		req.Header().Set("Authorization", "Bearer "+readSecret)
		_, err = c.app.DeleteApp(ctx, req)
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s: delete with a read token: %v, want PermissionDenied", name, err)
		}
	}

	// Token self and token management.
	self, err := teamA.acl.TokenSelf(ctx, connect.NewRequest(&v1.TokenSelfRequest{}))
	if err != nil || self.Msg.GetToken().GetAccessorId() != teamATok.GetAccessorId() || self.Msg.GetToken().GetSecretHash() != "" {
		t.Fatalf("token self = %v, %v", self, err)
	}
	_, err = teamA.acl.ListTokens(ctx, connect.NewRequest(&v1.ListTokensRequest{}))
	wantCode(t, err, connect.CodePermissionDenied)
	toks, err := mgmt.acl.ListTokens(ctx, connect.NewRequest(&v1.ListTokensRequest{}))
	if err != nil || len(toks.Msg.GetTokens()) != 4 {
		t.Fatalf("list tokens = %v, %v; want 4", toks, err)
	}
	for _, tok := range toks.Msg.GetTokens() {
		if tok.GetSecretHash() != "" {
			t.Errorf("token %s listed with its hash", tok.GetAccessorId())
		}
	}
	if _, err := mgmt.acl.DeleteToken(ctx, connect.NewRequest(&v1.DeleteTokenRequest{AccessorId: teamBTok.GetAccessorId()})); err != nil {
		t.Fatalf("delete token: %v", err)
	}
	waitFor(t, 10*time.Second, "the deleted token to be refused", func() error {
		_, err := teamB.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			return err
		}
		return nil
	})

	// Nothing changed by the refused writes; one audit line per accepted
	// write, on the leader, with the accessor and the request id.
	cur, err := mgmt.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/team-a/db", Consistency: v1.ReadConsistency_READ_CONSISTENCY_CONSISTENT}))
	if err != nil || cur.Msg.GetApp().GetVersion() != version {
		t.Fatalf("app after refused writes = %v, %v; want version %s", cur, err, version)
	}
	creates := regexp.MustCompile(`msg=audit node=`+leader.name+` accessor=`+teamATok.GetAccessorId()+` method=/berth.v1.AppService/CreateApp apps=\[/team-a/db\] request_id=\S+`).FindAllString(logs.String(), -1)
	if len(creates) != 1 {
		t.Errorf("audit lines of the create = %q, want one on the leader %s; logs:\n%s", creates, leader.name, logs.String())
	}
	if n := strings.Count(logs.String(), "msg=audit"); n != 6 {
		t.Errorf("%d audit lines, want 6 (bootstrap, 3 token creates, app create, token delete)", n)
	}
}

// TestTaskUsers refuses apps whose tasks would run as a user outside the
// allowlist, naming the field and the allowed users.
func TestTaskUsers(t *testing.T) {
	servers := startCluster(t, 1, clusterOpts{taskUsers: []string{"nobody", "postgres"}, defaultTaskUser: "berth"})
	c := clientsFor(servers[0])
	ctx := ctxFor(t, time.Minute)
	for _, tc := range []struct {
		json string
		ok   bool
	}{
		{`{"id": "/pg", "cmd": "x", "user": "postgres"}`, true},
		{`{"id": "/root", "cmd": "x", "user": "root"}`, false},
		{`{"id": "/default", "cmd": "x"}`, false}, // the framework user is not listed
	} {
		_, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, tc.json)}))
		if tc.ok {
			if err != nil {
				t.Errorf("create %s: %v", tc.json, err)
			}
			continue
		}
		ce := wantCode(t, err, connect.CodeInvalidArgument)
		if msg := ce.Message(); !strings.Contains(msg, "user") || !strings.Contains(msg, "nobody, postgres") {
			t.Errorf("create %s refused with %q, want the field user and the allowed users named", tc.json, msg)
		}
	}
	_, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/pg", App: mustApp(t, `{"user": "root"}`), Partial: true}))
	wantCode(t, err, connect.CodeInvalidArgument)
	got, err := c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/pg"}))
	if err != nil || got.Msg.GetApp().GetUser() != "postgres" {
		t.Fatalf("app after refused update = %v, %v", got, err)
	}
	// Scaling an app keeps its user, allowed or not: only a change of
	// user is checked.
	if _, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/pg", App: mustApp(t, `{"instances": 2}`), Partial: true, Force: true})); err != nil {
		t.Fatalf("scale: %v", err)
	}
}

// TestACLOffIsOpen: without --acl-enabled nothing needs a token, env values
// are shown, and writes are audited as anonymous.
func TestACLOffIsOpen(t *testing.T) {
	logs := &lockedBuffer{}
	servers := startCluster(t, 1, clusterOpts{logs: logs})
	c := withSecret(servers[0], "")
	ctx := ctxFor(t, time.Minute)
	// A retry (same request id) is answered but not audited again.
	for i := 0; i < 2; i++ {
		if _, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/x", "cmd": "x", "env": {"A": "b"}}`), RequestId: "req-1"})); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/x"}))
	if err != nil || got.Msg.GetApp().GetEnv()["A"].GetValue() != "b" {
		t.Fatalf("get = %v, %v", got, err)
	}
	_, err = c.acl.Bootstrap(ctx, connect.NewRequest(&v1.BootstrapRequest{}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	if n := strings.Count(logs.String(), "accessor=anonymous method=/berth.v1.AppService/CreateApp apps=[/x] request_id=req-1"); n != 1 {
		t.Errorf("%d anonymous audit lines for the create and its retry, want 1; logs:\n%s", n, logs.String())
	}
}

// TestInterceptorEveryMethodEveryPolicy calls every unary, server-stream
// and client-stream procedure of the ACL table on a live server with an empty request, with
// no token and with a token of every policy (and a prefixed one), and
// checks the interceptor's decision against acl.Authorize: refused calls
// get Unauthenticated or PermissionDenied, allowed calls get past the
// check (whatever the handler then says of the empty request).
func TestInterceptorEveryMethodEveryPolicy(t *testing.T) {
	servers := startCluster(t, 1, clusterOpts{aclEnabled: true})
	s := servers[0]
	ctx := ctxFor(t, 2*time.Minute)
	boot, err := withSecret(s, "").acl.Bootstrap(ctx, connect.NewRequest(&v1.BootstrapRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	mgmt := withSecret(s, boot.Msg.GetSecretId())
	type caller struct {
		name   string
		token  *v1.ACLToken
		secret string
	}
	callers := []caller{{name: "no token"}, {"management", boot.Msg.GetToken(), boot.Msg.GetSecretId()}}
	for _, p := range []v1.ACLPolicy{v1.ACLPolicy_ACL_POLICY_READ, v1.ACLPolicy_ACL_POLICY_WRITE, v1.ACLPolicy_ACL_POLICY_OPERATOR} {
		tok, secret := createToken(t, mgmt, p, "")
		callers = append(callers, caller{acl.PolicyName(p), tok, secret})
	}
	tok, secret := createToken(t, mgmt, v1.ACLPolicy_ACL_POLICY_WRITE, "/team-a/")
	callers = append(callers, caller{"write /team-a/", tok, secret})

	checked := 0
	for procedure, rule := range acl.Table {
		for _, c := range callers {
			want := acl.Authorize(c.token, procedure, rule, nil)
			hc := &http.Client{Transport: tokenTransport{c.secret}}
			client := connect.NewClient[emptypb.Empty, emptypb.Empty](hc, s.url()+procedure)
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var err error
			switch {
			case strings.HasPrefix(procedure, "/grpc.reflection."):
				cancel()
				continue // bidi streams need HTTP/2; open to all, as the table says
			case procedure == berthv1connect.ClusterServiceRestoreSnapshotStreamProcedure:
				stream := client.CallClientStream(cctx)
				if err = stream.Send(&emptypb.Empty{}); err == nil || errors.Is(err, io.EOF) {
					_, err = stream.CloseAndReceive()
				}
			case procedure == berthv1connect.EventServiceStreamEventsProcedure || procedure == berthv1connect.TaskServiceReadTaskLogProcedure ||
				procedure == acl.HealthWatchProcedure || procedure == berthv1connect.ClusterServiceSaveSnapshotStreamProcedure:
				var stream *connect.ServerStreamForClient[emptypb.Empty]
				stream, err = client.CallServerStream(cctx, connect.NewRequest(&emptypb.Empty{}))
				if err == nil {
					stream.Receive()
					err = stream.Err()
					stream.Close()
				}
			default:
				_, err = client.CallUnary(cctx, connect.NewRequest(&emptypb.Empty{}))
			}
			cancel()
			checked++
			got := connect.CodeOf(err)
			refused := err != nil && (got == connect.CodeUnauthenticated || got == connect.CodePermissionDenied)
			switch {
			case want != nil && (!refused || got != connect.CodeOf(want)):
				t.Errorf("%s by %s: %v, want %v", procedure, c.name, err, connect.CodeOf(want))
			case want == nil && refused:
				t.Errorf("%s by %s: refused (%v), want it past the ACL check", procedure, c.name, err)
			}
		}
	}
	if checked < 25*len(callers) {
		t.Fatalf("checked only %d calls", checked)
	}
}
