package acl

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// TestTableCoversEveryMethod walks every method of every service in the
// berth.v1 package and fails if one has no row in Table: a new method
// cannot ship unchecked. It also checks that every field a row reads
// exists and is a string, and that no row names a method that is gone.
func TestTableCoversEveryMethod(t *testing.T) {
	seen := map[string]bool{}
	protoregistry.GlobalFiles.RangeFilesByPackage("berth.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			svc := fd.Services().Get(i)
			for j := 0; j < svc.Methods().Len(); j++ {
				m := svc.Methods().Get(j)
				procedure := "/" + string(svc.FullName()) + "/" + string(m.Name())
				seen[procedure] = true
				rule, ok := Table[procedure]
				if !ok {
					t.Errorf("%s has no row in acl.Table", procedure)
					continue
				}
				for _, f := range rule.Fields {
					checkStringField(t, procedure, m.Input(), f.Path)
				}
				if rule.Fields != nil && m.IsStreamingClient() {
					t.Errorf("%s: a rule that reads the request needs a unary or server-stream method", procedure)
				}
			}
		}
		return true
	})
	if len(seen) < 25 {
		t.Fatalf("walked only %d methods; were the descriptors registered?", len(seen))
	}
	for _, p := range []string{HealthCheckProcedure, HealthWatchProcedure, HealthListProcedure, ReflectionV1Procedure, ReflectionV1AlphaProcedure} {
		seen[p] = true
	}
	for procedure := range Table {
		if !seen[procedure] {
			t.Errorf("acl.Table has a row for %s, which no service serves", procedure)
		}
	}
}

func checkStringField(t *testing.T, procedure string, md protoreflect.MessageDescriptor, path string) {
	t.Helper()
	steps := strings.Split(path, ".")
	for i, name := range steps {
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil || fd.IsList() || fd.IsMap() {
			t.Errorf("%s: rule field %q: %s has no singular field %s", procedure, path, md.FullName(), name)
			return
		}
		if i == len(steps)-1 {
			if fd.Kind() != protoreflect.StringKind {
				t.Errorf("%s: rule field %q is not a string", procedure, path)
			}
			return
		}
		md = fd.Message()
		if md == nil {
			t.Errorf("%s: rule field %q: %s is not a message", procedure, path, name)
			return
		}
	}
}

func token(p v1.ACLPolicy, prefix string) *v1.ACLToken {
	return &v1.ACLToken{AccessorId: "acc-" + PolicyName(p), Policy: p, AppPrefix: prefix}
}

// TestAuthorizeEveryPolicyAndClass decides every method of the table for
// every policy (and no token) and compares with what the policy grants.
func TestAuthorizeEveryPolicyAndClass(t *testing.T) {
	policies := []v1.ACLPolicy{v1.ACLPolicy_ACL_POLICY_READ, v1.ACLPolicy_ACL_POLICY_WRITE, v1.ACLPolicy_ACL_POLICY_OPERATOR, v1.ACLPolicy_ACL_POLICY_MANAGEMENT}
	for procedure, rule := range Table {
		// No token.
		err := Authorize(nil, procedure, rule, nil)
		if rule.Permission == PermAnonymous {
			if err != nil {
				t.Errorf("%s without token: %v, want allowed", procedure, err)
			}
		} else if connect.CodeOf(err) != connect.CodeUnauthenticated || !errors.Is(err, ErrNoToken) {
			t.Errorf("%s without token: %v, want Unauthenticated", procedure, err)
		}
		for _, p := range policies {
			err := Authorize(token(p, ""), procedure, rule, nil)
			want := rule.Permission <= PermToken || p >= rule.Permission.policy()
			switch {
			case want && err != nil:
				t.Errorf("%s with a %s token: %v, want allowed", procedure, PolicyName(p), err)
			case !want && connect.CodeOf(err) != connect.CodePermissionDenied:
				t.Errorf("%s with a %s token: %v, want PermissionDenied", procedure, PolicyName(p), err)
			}
		}
	}
	// Spot checks of the classes, so that a row that drifts is noticed.
	for procedure, want := range map[string]Permission{
		berthv1connect.AppServiceCreateAppProcedure:                 PermWrite,
		berthv1connect.AppServiceGetAppProcedure:                    PermRead,
		berthv1connect.TaskServiceKillTaskProcedure:                 PermWrite,
		berthv1connect.DeploymentServiceCancelDeploymentProcedure:   PermWrite,
		berthv1connect.ClusterServiceRemovePeerProcedure:            PermOperator,
		berthv1connect.ClusterServiceRestoreSnapshotProcedure:       PermManagement,
		berthv1connect.ClusterServiceSaveSnapshotProcedure:          PermManagement,
		berthv1connect.ClusterServiceRestoreSnapshotStreamProcedure: PermManagement,
		berthv1connect.ClusterServiceSaveSnapshotStreamProcedure:    PermManagement,
		berthv1connect.ACLServiceCreateTokenProcedure:               PermManagement,
		berthv1connect.ACLServiceTokenSelfProcedure:                 PermToken,
		berthv1connect.ACLServiceBootstrapProcedure:                 PermAnonymous,
	} {
		if got := Table[procedure].Permission; got != want {
			t.Errorf("%s needs %d, want %d", procedure, got, want)
		}
	}
}

func TestAuthorizeAppPrefix(t *testing.T) {
	teamA := token(v1.ACLPolicy_ACL_POLICY_WRITE, "/team-a/")
	create := Table[berthv1connect.AppServiceCreateAppProcedure]
	for _, tc := range []struct {
		name      string
		procedure string
		apps      []string
		want      connect.Code // 0: allowed
	}{
		{"own app", berthv1connect.AppServiceCreateAppProcedure, []string{"/team-a/db"}, 0},
		{"own app, relative id", berthv1connect.AppServiceCreateAppProcedure, []string{"team-a/db"}, 0},
		{"nested own app", berthv1connect.AppServiceDeleteAppProcedure, []string{"/team-a/x/y"}, 0},
		{"other team", berthv1connect.AppServiceCreateAppProcedure, []string{"/team-b/db"}, connect.CodePermissionDenied},
		{"prefix without slash", berthv1connect.AppServiceCreateAppProcedure, []string{"/team-ab"}, connect.CodePermissionDenied},
		{"the prefix itself", berthv1connect.AppServiceCreateAppProcedure, []string{"/team-a"}, connect.CodePermissionDenied},
		{"dot-dot escape", berthv1connect.AppServiceCreateAppProcedure, []string{"/team-a/../team-b/db"}, connect.CodePermissionDenied},
		{"one of two outside", berthv1connect.AppServiceUpdateAppProcedure, []string{"/team-a/db", "/team-b/db"}, connect.CodePermissionDenied},
		{"read list (filtered)", berthv1connect.AppServiceListAppsProcedure, nil, 0},
		{"cluster read", berthv1connect.ClusterServiceMembersProcedure, nil, 0},
		{"token self", berthv1connect.ACLServiceTokenSelfProcedure, nil, 0},
	} {
		err := Authorize(teamA, tc.procedure, Table[tc.procedure], tc.apps)
		if got := connect.CodeOf(err); (err == nil) != (tc.want == 0) || (err != nil && got != tc.want) {
			t.Errorf("%s: %v, want code %v", tc.name, err, tc.want)
		}
	}
	// A prefixed operator token (which the API does not create, but a
	// restored snapshot could hold) may not run cluster operations.
	op := token(v1.ACLPolicy_ACL_POLICY_OPERATOR, "/team-a/")
	if err := Authorize(op, "remove", Table[berthv1connect.ClusterServiceRemovePeerProcedure], nil); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("prefixed operator token on RemovePeer: %v, want PermissionDenied", err)
	}
	if err := Authorize(token(v1.ACLPolicy_ACL_POLICY_WRITE, ""), "create", create, []string{"/anything"}); err != nil {
		t.Errorf("token without prefix: %v", err)
	}
}

func TestSecretHashing(t *testing.T) {
	s1, h1 := NewSecret()
	s2, h2 := NewSecret()
	if s1 == s2 || h1 == h2 {
		t.Fatalf("two secrets alike: %s %s", s1, s2)
	}
	if len(strings.ReplaceAll(s1, "-", "")) != 32 {
		t.Fatalf("secret %q does not carry 128 bits in hex", s1)
	}
	if h1 != HashSecret(s1) || len(h1) != 64 || strings.Contains(h1, s1) {
		t.Fatalf("hash of %s = %s", s1, h1)
	}
	for _, tc := range []struct {
		hdr  http.Header
		want string
	}{
		{http.Header{"Authorization": {"Bearer abc"}}, "abc"},
		{http.Header{"Authorization": {"bearer  abc "}}, "abc"},
		{http.Header{"X-Berth-Token": {"xyz"}}, "xyz"},
		{http.Header{"Authorization": {"Basic dXNlcg=="}, "X-Berth-Token": {"xyz"}}, "xyz"},
		{http.Header{}, ""},
	} {
		if got := SecretFromHeader(tc.hdr); got != tc.want {
			t.Errorf("SecretFromHeader(%v) = %q, want %q", tc.hdr, got, tc.want)
		}
	}
}

func TestPolicyAndPrefixParsing(t *testing.T) {
	for _, s := range []string{"read", "write", "operator", "management", "WRITE"} {
		p, err := ParsePolicy(s)
		if err != nil || PolicyName(p) != strings.ToLower(s) {
			t.Errorf("ParsePolicy(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParsePolicy("admin"); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Errorf("ParsePolicy(admin) = %v, want an error naming it", err)
	}
	for prefix, ok := range map[string]bool{"": true, "/team-a/": true, "/a/b/": true, "team-a/": false, "/team-a": false, "/a/../b/": false, "//": false} {
		if err := CheckAppPrefix(prefix); (err == nil) != ok {
			t.Errorf("CheckAppPrefix(%q) = %v, want ok=%v", prefix, err, ok)
		}
	}
}

func TestRedactEnv(t *testing.T) {
	app, err := appmodel.Parse([]byte(`{"id": "/db", "cmd": "x", "env": {"DB_PASSWORD": "hunter2", "TLS": {"secret": "tls"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	res := &v1.ListAppsResponse{Apps: []*v1.App{app}}
	out := RedactEnv(res).(*v1.ListAppsResponse)
	if got := out.GetApps()[0].GetEnv()["DB_PASSWORD"].GetValue(); got != RedactedValue {
		t.Errorf("redacted DB_PASSWORD = %q", got)
	}
	if got := out.GetApps()[0].GetEnv()["TLS"].GetSecret(); got != "tls" {
		t.Errorf("secret reference = %q, want it kept", got)
	}
	if app.GetEnv()["DB_PASSWORD"].GetValue() != "hunter2" {
		t.Fatal("RedactEnv changed its input (shared with the store)")
	}
	// Nested: an app inside a version list response, and no env at all.
	get := &v1.GetAppResponse{App: app}
	if RedactEnv(get).(*v1.GetAppResponse).GetApp().GetEnv()["DB_PASSWORD"].GetValue() != RedactedValue {
		t.Error("GetAppResponse not redacted")
	}
	plain := &v1.ListTasksResponse{Tasks: []*v1.TaskView{{Id: "t"}}}
	if RedactEnv(plain) != proto.Message(plain) {
		t.Error("a message without env was copied")
	}
	// The backup policy's env (a target's credentials) is redacted too.
	withBackup := &v1.App{Id: "/db", Backup: &v1.BackupPolicy{Target: "s3://b", Env: map[string]*v1.EnvValue{
		"AWS_SECRET_ACCESS_KEY": {Kind: &v1.EnvValue_Value{Value: "s3cr3t"}}}}}
	red := RedactEnv(&v1.GetAppResponse{App: withBackup}).(*v1.GetAppResponse)
	if got := red.GetApp().GetBackup().GetEnv()["AWS_SECRET_ACCESS_KEY"].GetValue(); got != RedactedValue {
		t.Errorf("backup env value = %q, want it redacted", got)
	}
}

func TestFilterApps(t *testing.T) {
	teamA := token(v1.ACLPolicy_ACL_POLICY_READ, "/team-a/")
	apps := &v1.ListAppsResponse{
		Apps:      []*v1.App{{Id: "/team-a/db"}, {Id: "/team-b/db"}, {Id: "/team-a/web"}},
		Summaries: []*v1.AppSummary{{TasksRunning: 1}, {TasksRunning: 2}, {TasksRunning: 3}},
	}
	got := FilterApps(teamA, apps).(*v1.ListAppsResponse)
	if len(got.Apps) != 2 || got.Apps[1].GetId() != "/team-a/web" || got.Summaries[1].GetTasksRunning() != 3 {
		t.Errorf("filtered apps = %v", got)
	}
	if len(apps.Apps) != 3 {
		t.Fatal("FilterApps changed its input")
	}
	tasks := FilterApps(teamA, &v1.ListTasksResponse{Tasks: []*v1.TaskView{{AppId: "/team-b/x"}, {AppId: "/team-a/x"}}}).(*v1.ListTasksResponse)
	if len(tasks.Tasks) != 1 || tasks.Tasks[0].GetAppId() != "/team-a/x" {
		t.Errorf("filtered tasks = %v", tasks)
	}
	deps := FilterApps(teamA, &v1.ListDeploymentsResponse{Deployments: []*v1.Deployment{
		{Id: "a", AffectedApps: []string{"/team-a/x"}}, {Id: "ab", AffectedApps: []string{"/team-a/x", "/team-b/y"}},
	}}).(*v1.ListDeploymentsResponse)
	if len(deps.Deployments) != 1 || deps.Deployments[0].GetId() != "a" {
		t.Errorf("filtered deployments = %v", deps)
	}
	if FilterApps(teamA, &v1.Event{AppId: "/team-b/x"}) != nil {
		t.Error("event of another team shown")
	}
	if FilterApps(teamA, &v1.Event{Deployment: &v1.Deployment{AffectedApps: []string{"/team-b/x"}}}) != nil {
		t.Error("deployment event of another team shown")
	}
	if FilterApps(teamA, &v1.Event{AppId: "/team-a/x"}) == nil || FilterApps(teamA, &v1.Event{Type: "event_stream_attached"}) == nil {
		t.Error("own or app-less event hidden")
	}
	if FilterApps(token(v1.ACLPolicy_ACL_POLICY_READ, ""), apps) != proto.Message(apps) {
		t.Error("token without prefix: list filtered")
	}
}

func TestFieldValue(t *testing.T) {
	req := &v1.UpdateAppRequest{Id: "/a", App: &v1.App{Id: "/b"}}
	for path, want := range map[string]string{"id": "/a", "app.id": "/b", "app.cmd": "", "nope": "", "force": "", "app.nope.x": ""} {
		if got := FieldValue(req, path); got != want {
			t.Errorf("FieldValue(%s) = %q, want %q", path, got, want)
		}
	}
	if got := FieldValue(nil, "id"); got != "" {
		t.Errorf("FieldValue(nil) = %q", got)
	}
	if got := FieldValue((*v1.GetAppRequest)(nil), "id"); got != "" {
		t.Errorf("FieldValue of a typed nil = %q", got)
	}
	if got := FieldValue(&v1.UpdateAppRequest{}, "app.id"); got != "" {
		t.Errorf("FieldValue of a missing message = %q", got)
	}
}
