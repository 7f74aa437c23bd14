package rpc_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectalphapb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/rpc"
)

const seedFile = "../appmodel/testdata/seed/postgres.marathon.json"

func TestAppLifecycle(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 30*time.Second)

	created, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: appFromFile(t, seedFile)}))
	if err != nil {
		t.Fatal(err)
	}
	app := created.Msg.App
	if app.GetId() != "/postgres" || app.GetVersion() == "" || app.GetVersionInfo().GetLastConfigChangeAt() != app.GetVersion() {
		t.Fatalf("created app: id %q version %q info %v", app.GetId(), app.GetVersion(), app.GetVersionInfo())
	}
	if app.GetUnreachableStrategy().GetDisabled() == nil || app.GetContainer().GetVolumes()[0].GetPersistent().GetType() != "root" {
		t.Fatalf("created app not normalized: %v", app)
	}
	depID := created.Msg.DeploymentId
	dep, err := c.deployment.GetDeployment(ctx, connect.NewRequest(&v1.GetDeploymentRequest{Id: depID}))
	if err != nil {
		t.Fatal(err)
	}
	if d := dep.Msg.Deployment; d.GetStatus() != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING ||
		d.GetSteps()[0].GetActions()[0].GetAction() != rpc.ActionStart || d.GetVersion() != app.GetVersion() {
		t.Fatalf("create deployment = %v", d)
	}

	// Creating it again is AlreadyExists.
	_, err = c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: appFromFile(t, seedFile)}))
	wantCode(t, err, connect.CodeAlreadyExists)

	got, err := c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "postgres"}))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.Msg.App, app) || !slices.Equal(got.Msg.Summary.GetDeployments(), []string{depID}) {
		t.Fatalf("GetApp = %v", got.Msg)
	}
	_, err = c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/nope"}))
	wantCode(t, err, connect.CodeNotFound)

	// A second app for the list filters.
	if _, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{
		App: mustApp(t, `{"id": "/web/sleep", "cmd": "sleep 1000", "labels": {"tier": "web"}}`)})); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		req  *v1.ListAppsRequest
		want []string
	}{
		{&v1.ListAppsRequest{}, []string{"/postgres", "/web/sleep"}},
		{&v1.ListAppsRequest{IdContains: "web"}, []string{"/web/sleep"}},
		{&v1.ListAppsRequest{CmdContains: "sleep"}, []string{"/web/sleep"}},
		{&v1.ListAppsRequest{Label: "tier"}, []string{"/web/sleep"}},
		{&v1.ListAppsRequest{Label: "tier==db"}, nil},
		{&v1.ListAppsRequest{Label: "tier==web", Consistency: v1.ReadConsistency_READ_CONSISTENCY_CONSISTENT}, []string{"/web/sleep"}},
		{&v1.ListAppsRequest{Label: "tier=web"}, []string{"/web/sleep"}},
		{&v1.ListAppsRequest{Label: "tier!=db"}, []string{"/web/sleep"}},
		{&v1.ListAppsRequest{Label: "tier in (db, web)"}, []string{"/web/sleep"}},
		{&v1.ListAppsRequest{Label: "tier notin (web)"}, nil},
	} {
		res, err := c.app.ListApps(ctx, connect.NewRequest(f.req))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, a := range res.Msg.Apps {
			ids = append(ids, a.GetId())
		}
		if !slices.Equal(ids, f.want) || len(res.Msg.Summaries) != len(ids) {
			t.Errorf("ListApps(%v) = %v", f.req, ids)
		}
	}

	// A selector that cannot be parsed is refused, not an empty list.
	_, err = c.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{Label: "tier in web"}))
	if ce := wantCode(t, err, connect.CodeInvalidArgument); !strings.Contains(ce.Message(), "label") {
		t.Errorf("bad label selector: %v, want the field named", ce)
	}

	// The create deployment still runs (no scheduler here): the app is
	// locked.
	stop := func(force bool) (*connect.Response[v1.UpdateAppResponse], error) {
		return c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{
			Id: "/postgres", App: &v1.App{Instances: proto.Int32(0)}, Partial: true, Force: force}))
	}
	_, err = stop(false)
	cerr := wantCode(t, err, connect.CodeFailedPrecondition)
	if !strings.Contains(cerr.Message(), "app /postgres is locked by deployment "+depID+"; use force") {
		t.Fatalf("locked message = %q", cerr.Message())
	}
	stopped, err := stop(true)
	if err != nil {
		t.Fatal(err)
	}
	if stopped.Msg.App.GetInstances() != 0 || stopped.Msg.App.GetVersion() <= app.GetVersion() ||
		stopped.Msg.App.GetVersionInfo().GetLastConfigChangeAt() != app.GetVersion() {
		t.Fatalf("stopped app = %v", stopped.Msg.App)
	}
	// Scaling to 0 is a ScaleApplication in Marathon (DeploymentPlan.scala:
	// StopApplication only for an app the target no longer has).
	assertDeployment(t, c, stopped.Msg.DeploymentId, rpc.ActionScale, v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING)
	assertDeployment(t, c, depID, rpc.ActionStart, v1.DeploymentStatus_DEPLOYMENT_STATUS_CANCELED)

	// Cancel (force: no rollback), then scale up: a ScaleApplication deployment.
	if _, err := c.deployment.CancelDeployment(ctx, connect.NewRequest(&v1.CancelDeploymentRequest{Id: stopped.Msg.DeploymentId, Force: true})); err != nil {
		t.Fatal(err)
	}
	scaled, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/postgres", App: &v1.App{Instances: proto.Int32(2)}, Partial: true}))
	if err != nil {
		t.Fatal(err)
	}
	assertDeployment(t, c, scaled.Msg.DeploymentId, rpc.ActionScale, v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING)

	// A config change (full replace) is a restart. Resident resources
	// cannot change.
	full := appFromFile(t, seedFile)
	full.Instances = proto.Int32(2)
	full.Env["EXTRA"] = appmodel.EnvString("1")
	changed, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/postgres", App: full, Force: true}))
	if err != nil {
		t.Fatal(err)
	}
	assertDeployment(t, c, changed.Msg.DeploymentId, rpc.ActionRestart, v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING)
	full.Cpus = proto.Float64(2)
	_, err = c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/postgres", App: full, Force: true}))
	cerr = wantCode(t, err, connect.CodeInvalidArgument)
	if vs := rpc.ViolationsFromError(cerr); len(vs) != 1 || vs[0].Field != "cpus" || !strings.Contains(vs[0].Description, "resident") {
		t.Fatalf("violations = %v", vs)
	}
	// An unchanged definition changes nothing.
	full.Cpus = proto.Float64(1)
	same, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/postgres", App: full}))
	if err != nil {
		t.Fatal(err)
	}
	if same.Msg.DeploymentId != "" || same.Msg.App.GetVersion() != changed.Msg.App.GetVersion() {
		t.Fatalf("no-op update made a change: %v", same.Msg)
	}
	// The id in the body must match.
	full.Id = "/other"
	_, err = c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/postgres", App: full}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/missing", App: &v1.App{Cmd: proto.String("x")}, Partial: true}))
	wantCode(t, err, connect.CodeNotFound)

	restarted, err := c.app.RestartApp(ctx, connect.NewRequest(&v1.RestartAppRequest{Id: "/postgres"}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	restarted, err = c.app.RestartApp(ctx, connect.NewRequest(&v1.RestartAppRequest{Id: "/postgres", Force: true}))
	if err != nil {
		t.Fatal(err)
	}
	assertDeployment(t, c, restarted.Msg.DeploymentId, rpc.ActionRestart, v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING)

	versions, err := c.app.ListAppVersions(ctx, connect.NewRequest(&v1.ListAppVersionsRequest{Id: "/postgres"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{restarted.Msg.Version, changed.Msg.App.GetVersion(), scaled.Msg.App.GetVersion(), stopped.Msg.App.GetVersion(), app.GetVersion()}
	if !slices.Equal(versions.Msg.Versions, want) {
		t.Fatalf("versions = %v, want %v", versions.Msg.Versions, want)
	}
	old, err := c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/postgres", Version: app.GetVersion()}))
	if err != nil || old.Msg.App.GetInstances() != 1 {
		t.Fatalf("GetApp at first version = %v, %v", old, err)
	}
	_, err = c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/postgres", Version: "1999-01-01T00:00:00Z"}))
	wantCode(t, err, connect.CodeNotFound)

	_, err = c.app.DeleteApp(ctx, connect.NewRequest(&v1.DeleteAppRequest{Id: "/postgres"}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	deleted, err := c.app.DeleteApp(ctx, connect.NewRequest(&v1.DeleteAppRequest{Id: "/postgres", Force: true}))
	if err != nil {
		t.Fatal(err)
	}
	assertDeployment(t, c, deleted.Msg.DeploymentId, rpc.ActionStop, v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING)
	_, err = c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/postgres"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.app.DeleteApp(ctx, connect.NewRequest(&v1.DeleteAppRequest{Id: "/postgres"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.app.ListAppVersions(ctx, connect.NewRequest(&v1.ListAppVersionsRequest{Id: "/postgres"}))
	wantCode(t, err, connect.CodeNotFound)
}

func assertDeployment(t *testing.T, c clients, id, action string, status v1.DeploymentStatus) {
	t.Helper()
	res, err := c.deployment.GetDeployment(context.Background(), connect.NewRequest(&v1.GetDeploymentRequest{Id: id}))
	if err != nil {
		t.Fatalf("deployment %q: %v", id, err)
	}
	d := res.Msg.Deployment
	if d.GetStatus() != status || len(d.GetSteps()) != 1 || d.GetSteps()[0].GetActions()[0].GetAction() != action {
		t.Fatalf("deployment %s = %v, want %s %s", id, d, action, status)
	}
}

func TestValidationAndLimits(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{maxRequestBytes: 64 << 10})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 30*time.Second)

	bad := mustApp(t, `{"id": "/db", "cmd": "x", "args": ["y"], "container": {"volumes": [
		{"containerPath": "/data", "mode": "RO", "persistent": {"size": 0}}]},
		"upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 1},
		"portDefinitions": [{"name": "a"}, {"name": "a"}],
		"healthChecks": [{"protocol": "TCP", "portIndex": 5}]}`)
	_, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: bad}))
	cerr := wantCode(t, err, connect.CodeInvalidArgument)
	wantFields := []string{
		"cmd",
		"container.volumes[0].containerPath",
		"container.volumes[0].mode",
		"container.volumes[0].persistent.size",
		"portDefinitions[1].name",
		"healthChecks[0].portIndex",
		"upgradeStrategy.maximumOverCapacity",
	}
	var fields []string
	for _, v := range rpc.ViolationsFromError(cerr) {
		fields = append(fields, v.Field)
	}
	for _, f := range wantFields {
		if !slices.Contains(fields, f) {
			t.Errorf("missing violation for %s in %v", f, fields)
		}
	}
	if !strings.Contains(cerr.Message(), "container.volumes[0].persistent.size: must be greater than 0") {
		t.Errorf("message lacks the size violation line: %q", cerr.Message())
	}
	_, err = c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{}))
	wantCode(t, err, connect.CodeInvalidArgument)

	// The API docs' example sets both cmd and args.
	_, err = c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: appFromFile(t, "../appmodel/testdata/marathon/api-example-app.json")}))
	cerr = wantCode(t, err, connect.CodeInvalidArgument)
	if !strings.Contains(cerr.Message(), "cmd: must not be set together with args") {
		t.Errorf("api example refusal = %q", cerr.Message())
	}

	// A request over MaxRequestBytes is refused before decoding.
	huge := mustApp(t, `{"id": "/huge", "cmd": "x"}`)
	huge.Env = appmodel.Env(map[string]string{"BIG": strings.Repeat("x", 100<<10)})
	_, err = c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: huge}))
	wantCode(t, err, connect.CodeResourceExhausted)

	// Nothing was stored.
	res, err := c.app.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
	if err != nil || len(res.Msg.Apps) != 0 {
		t.Fatalf("apps after refusals: %v, %v", res, err)
	}
}

// TestProtocols checks that Connect, gRPC (connect-go and grpc-go) and
// gRPC-Web clients all work on the one port, with health checking and
// reflection.
func TestProtocols(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	ctx := ctxFor(t, 30*time.Second)

	for i, c := range []clients{
		clientsFor(s), // Connect, binary, HTTP/1.1
		clientsWith(s, h2cClient(), connect.WithGRPC()), // gRPC over h2c
		clientsFor(s, connect.WithGRPCWeb()),            // gRPC-Web over HTTP/1.1
		clientsFor(s, connect.WithProtoJSON()),          // Connect, JSON
	} {
		id := "/proto/app-" + string(rune('a'+i))
		res, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "`+id+`", "cmd": "sleep 1"}`)}))
		if err != nil {
			t.Fatalf("protocol %d: %v", i, err)
		}
		if res.Msg.App.GetId() != id {
			t.Fatalf("protocol %d: created %q", i, res.Msg.App.GetId())
		}
		_, err = c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/absent"}))
		wantCode(t, err, connect.CodeNotFound)
	}

	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var created v1.CreateAppResponse
	err = conn.Invoke(ctx, "/berth.v1.AppService/CreateApp",
		&v1.CreateAppRequest{App: mustApp(t, `{"id": "/grpc-go", "cmd": "sleep 1"}`)}, &created)
	if err != nil || created.App.GetId() != "/grpc-go" || created.DeploymentId == "" {
		t.Fatalf("grpc-go CreateApp = %v, %v", &created, err)
	}
	var list v1.ListAppsResponse
	if err := conn.Invoke(ctx, "/berth.v1.AppService/ListApps", &v1.ListAppsRequest{}, &list); err != nil || len(list.Apps) != 5 {
		t.Fatalf("grpc-go ListApps = %d apps, %v", len(list.Apps), err)
	}
	var got v1.GetAppResponse
	err = conn.Invoke(ctx, "/berth.v1.AppService/GetApp", &v1.GetAppRequest{Id: "/nope"}, &got)
	if err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("grpc-go GetApp(missing) = %v", err)
	}

	health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || health.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", health, err)
	}
	health, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "berth.v1.AppService"})
	if err != nil || health.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health(AppService) = %v, %v", health, err)
	}

	stream, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rres, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range rres.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	for _, want := range []string{"berth.v1.AppService", "berth.v1.TaskService", "berth.v1.DeploymentService", "berth.v1.EventService", "berth.v1.ClusterService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lacks %s: %v", want, names)
		}
	}
	// Describe a file, as grpcurl does.
	if err := stream.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "berth.v1.AppService"}}); err != nil {
		t.Fatal(err)
	}
	if rres, err = stream.Recv(); err != nil || len(rres.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("file containing AppService: %v, %v", rres, err)
	}
	_ = stream.CloseSend()

	alpha, err := reflectalphapb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := alpha.Send(&reflectalphapb.ServerReflectionRequest{MessageRequest: &reflectalphapb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if ares, err := alpha.Recv(); err != nil || len(ares.GetListServicesResponse().GetService()) < 6 {
		t.Fatalf("v1alpha reflection: %v, %v", ares, err)
	}
	_ = alpha.CloseSend()

	// Plain HTTP/1.1 Connect with JSON, as curl would send it.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url()+"/berth.v1.AppService/GetApp", strings.NewReader(`{"id": "/grpc-go"}`))
	req.Header.Set("Content-Type", "application/json")
	hres, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hres.Body.Close()
	if hres.StatusCode != http.StatusOK || hres.ProtoMajor != 1 {
		t.Fatalf("curl-style GetApp: %s %s", hres.Proto, hres.Status)
	}
}

func TestTasks(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 30*time.Second)
	created, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: appFromFile(t, seedFile)}))
	if err != nil {
		t.Fatal(err)
	}
	// The create deployment is done (as the scheduler would record it),
	// and there are two instances: one running, one stopped.
	done := proto.Clone(mustDeployment(t, c, created.Msg.DeploymentId)).(*v1.Deployment)
	done.Status = v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED
	ver := created.Msg.App.GetVersion()
	started := timestamppb.New(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC))
	running := &v1.Instance{
		Id: "postgres.instance-1", AppId: "/postgres", AppVersion: ver, Goal: v1.Goal_GOAL_RUNNING, Resident: true,
		Reservation: &v1.Reservation{State: v1.ReservationState_RESERVATION_STATE_RESERVED, AgentId: "agent-1", Hostname: "host-1", Role: "berth",
			Volumes: []*v1.LocalVolume{{PersistenceId: "postgres#pgdata#1", ContainerPath: "pgdata", SizeMib: 100}}},
		Task: &v1.Task{Id: "postgres.instance-1._app.1", AgentId: "agent-1", Hostname: "host-1", State: "TASK_RUNNING",
			Healthy: proto.Bool(true), StagedAt: started, StartedAt: started, Ports: []uint32{31000}, AppVersion: ver},
		Incarnation: 1,
	}
	stopped := &v1.Instance{
		Id: "postgres.instance-2", AppId: "/postgres", AppVersion: ver, Goal: v1.Goal_GOAL_STOPPED, Resident: true,
		Reservation: &v1.Reservation{State: v1.ReservationState_RESERVATION_STATE_RESERVED, AgentId: "agent-2", Hostname: "host-2",
			Volumes: []*v1.LocalVolume{{PersistenceId: "postgres#pgdata#2", ContainerPath: "pgdata", SizeMib: 100}}},
		Task: &v1.Task{Id: "postgres.instance-2._app.3", AgentId: "agent-2", Hostname: "host-2", State: "TASK_KILLED",
			StagedAt: started, StartedAt: started, Ports: []uint32{31001}, AppVersion: ver},
		Incarnation: 3,
	}
	applyDirect(t, s, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{
		PutInstances: []*v1.Instance{running, stopped}, PutDeployments: []*v1.Deployment{done}})

	list, err := c.task.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{AppId: "postgres"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.Tasks) != 2 {
		t.Fatalf("tasks = %v", list.Msg.Tasks)
	}
	r, st := list.Msg.Tasks[0], list.Msg.Tasks[1]
	if r.Id != "postgres.instance-1._app.1" || r.StartedAt != "2024-05-01T10:00:00.000Z" || !r.GetHealthy() || r.Host != "host-1" ||
		!slices.Equal(r.Ports, []uint32{31000}) || r.Version != ver || r.Goal != "Running" || r.State != "TASK_RUNNING" ||
		len(r.LocalVolumes) != 1 || r.LocalVolumes[0].PersistenceId != "postgres#pgdata#1" || r.LocalVolumes[0].ContainerPath != "pgdata" {
		t.Errorf("running task view = %v", r)
	}
	if st.StartedAt != "" || st.StagedAt != "" || len(st.Ports) != 0 || st.Version != "" || st.Goal != "Stopped" ||
		len(st.LocalVolumes) != 1 || st.LocalVolumes[0].PersistenceId != "postgres#pgdata#2" {
		t.Errorf("stopped task view = %v", st)
	}
	summary, err := c.app.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/postgres"}))
	if err != nil {
		t.Fatal(err)
	}
	if sm := summary.Msg.Summary; sm.TasksRunning != 1 || sm.TasksHealthy != 1 || sm.InstancesStopped != 1 || len(sm.Deployments) != 0 {
		t.Errorf("summary = %v", sm)
	}
	if all, err := c.task.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{})); err != nil || len(all.Msg.Tasks) != 2 {
		t.Fatalf("all tasks = %v, %v", all, err)
	}
	if none, err := c.task.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{AppId: "/other"})); err != nil || len(none.Msg.Tasks) != 0 {
		t.Fatalf("other app tasks = %v, %v", none, err)
	}

	// Plain kill by task id: the request is recorded on the task, the goal
	// is kept.
	killed, err := c.task.KillTask(ctx, connect.NewRequest(&v1.KillTaskRequest{Id: "postgres.instance-1._app.1"}))
	if err != nil {
		t.Fatal(err)
	}
	inst := fsm.NewTestReader(t, s.fsm.State).Instance("postgres.instance-1")
	if inst.GetTask().GetKillRequestedAt() == nil || inst.GetGoal() != v1.Goal_GOAL_RUNNING || killed.Msg.Task.InstanceId != inst.GetId() {
		t.Fatalf("after kill: %v", inst)
	}
	// Kill of a task that is not running changes nothing.
	before := s.fsm.State().LastIndex()
	if _, err := c.task.KillTask(ctx, connect.NewRequest(&v1.KillTaskRequest{Id: "postgres.instance-2"})); err != nil {
		t.Fatal(err)
	}
	if s.fsm.State().LastIndex() != before {
		t.Errorf("kill of a stopped instance wrote to the log")
	}

	_, err = c.task.KillTask(ctx, connect.NewRequest(&v1.KillTaskRequest{Id: "postgres.instance-1", Wipe: true, Scale: true}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = c.task.KillTask(ctx, connect.NewRequest(&v1.KillTaskRequest{Id: "nope"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.task.KillTask(ctx, connect.NewRequest(&v1.KillTaskRequest{Id: "postgres.instance-2", Scale: true}))
	wantCode(t, err, connect.CodeFailedPrecondition)

	// Kill and scale: the instance is stopped (berth kept), the app loses
	// one instance.
	scaled, err := c.task.KillTask(ctx, connect.NewRequest(&v1.KillTaskRequest{Id: "postgres.instance-1", Scale: true}))
	if err != nil {
		t.Fatal(err)
	}
	if app := fsm.NewTestReader(t, s.fsm.State).App("/postgres"); app.GetInstances() != 0 || app.GetVersion() == ver {
		t.Fatalf("app after kill+scale: %v", app)
	}
	if inst := fsm.NewTestReader(t, s.fsm.State).Instance("postgres.instance-1"); inst.GetGoal() != v1.Goal_GOAL_STOPPED || inst.GetReservation() == nil {
		t.Fatalf("instance after kill+scale: %v", inst)
	}
	assertDeployment(t, c, scaled.Msg.DeploymentId, rpc.ActionScale, v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING)

	// Wipe: decommissioned.
	wiped, err := c.task.KillTask(ctx, connect.NewRequest(&v1.KillTaskRequest{Id: "postgres.instance-2", Wipe: true}))
	if err != nil {
		t.Fatal(err)
	}
	if wiped.Msg.Task.Goal != "Decommissioned" || fsm.NewTestReader(t, s.fsm.State).Instance("postgres.instance-2").GetGoal() != v1.Goal_GOAL_DECOMMISSIONED {
		t.Fatalf("after wipe: %v", wiped.Msg.Task)
	}
}

// Cancelling a deployment without force rolls it back, as Marathon's
// DELETE /v2/deployments/{id} (api/v2/DeploymentsResource.scala: the
// plan's revert, submitted with force, cancels the original): the app
// returns to its previous definition under a new version that keeps that
// definition's lastConfigChangeAt, so the instances of the old version are
// current again. A deployment_failed event ends the cancelled deployment.
// An app created by the cancelled deployment is removed.
func TestCancelDeploymentRollsBack(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 30*time.Second)
	created, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/r", "cmd": "v1", "instances": 4}`)}))
	if err != nil {
		t.Fatal(err)
	}
	v1App := created.Msg.App
	if _, err := c.deployment.CancelDeployment(ctx, connect.NewRequest(&v1.CancelDeploymentRequest{Id: created.Msg.DeploymentId, Force: true})); err != nil {
		t.Fatal(err)
	}
	up, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/r", App: mustApp(t, `{"cmd": "v2"}`), Partial: true}))
	if err != nil {
		t.Fatal(err)
	}
	events, err := c.event.StreamEvents(ctx, connect.NewRequest(&v1.StreamEventsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	receive(t, events) // attached

	res, err := c.deployment.CancelDeployment(ctx, connect.NewRequest(&v1.CancelDeploymentRequest{Id: up.Msg.DeploymentId}))
	if err != nil {
		t.Fatal(err)
	}
	rb := mustDeployment(t, c, res.Msg.DeploymentId)
	if rb.GetStatus() != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING || rb.GetSteps()[0].GetActions()[0].GetAction() != rpc.ActionRestart || res.Msg.Version != rb.GetVersion() {
		t.Fatalf("rollback deployment = %v (response %v)", rb, res.Msg)
	}
	assertDeployment(t, c, up.Msg.DeploymentId, rpc.ActionRestart, v1.DeploymentStatus_DEPLOYMENT_STATUS_CANCELED)
	app := fsm.NewTestReader(t, s.fsm.State).App("/r")
	if app.GetCmd() != "v1" || app.GetVersion() != rb.GetVersion() || app.GetVersionInfo().GetLastConfigChangeAt() != v1App.GetVersion() {
		t.Fatalf("app after rollback = %v, want v1's definition (lastConfigChangeAt %s) at %s", app, v1App.GetVersion(), rb.GetVersion())
	}
	if ev := receive(t, events); ev.Type != "deployment_failed" || ev.Deployment.GetId() != up.Msg.DeploymentId || ev.AppId != "/r" {
		t.Fatalf("first event = %v, want deployment_failed of the cancelled deployment", ev)
	}
	if ev := receive(t, events); ev.Type != rpc.EventAPIPost || ev.Deployment.GetId() != rb.GetId() {
		t.Fatalf("second event = %v, want the rollback's api_post_event", ev)
	}

	// A deployment that created its app: the rollback removes the app.
	n, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/n", "cmd": "x"}`)}))
	if err != nil {
		t.Fatal(err)
	}
	res, err = c.deployment.CancelDeployment(ctx, connect.NewRequest(&v1.CancelDeploymentRequest{Id: n.Msg.DeploymentId}))
	if err != nil {
		t.Fatal(err)
	}
	if fsm.NewTestReader(t, s.fsm.State).App("/n") != nil {
		t.Fatalf("app /n survived the rollback of its creation")
	}
	assertDeployment(t, c, res.Msg.DeploymentId, rpc.ActionStop, v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING)
}

// Rollback to a stored version (Marathon's PUT /v2/apps/{id}
// {"version": V}, api/v2/AppsResource.scala): version_to_deploy makes that
// version's definition the app's, through the same write; it may not be
// combined with an app, and an unknown version is NotFound.
func TestRollbackToVersion(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 30*time.Second)
	created, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/v", "cmd": "one", "instances": 2}`)}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/v", App: mustApp(t, `{"cmd": "two", "instances": 3}`), Partial: true, Force: true})); err != nil {
		t.Fatal(err)
	}
	_, err = c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/v", VersionToDeploy: created.Msg.App.GetVersion()}))
	wantCode(t, err, connect.CodeFailedPrecondition) // locked by the update's deployment
	back, err := c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/v", VersionToDeploy: created.Msg.App.GetVersion(), Force: true}))
	if err != nil {
		t.Fatal(err)
	}
	if back.Msg.App.GetCmd() != "one" || back.Msg.App.GetInstances() != 2 || back.Msg.App.GetVersion() <= created.Msg.App.GetVersion() ||
		back.Msg.App.GetVersionInfo().GetLastConfigChangeAt() != created.Msg.App.GetVersion() {
		t.Fatalf("rolled back app = %v", back.Msg.App)
	}
	assertDeployment(t, c, back.Msg.DeploymentId, rpc.ActionRestart, v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING)
	_, err = c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/v", VersionToDeploy: "2001-01-01T00:00:00Z", Force: true}))
	if ce := wantCode(t, err, connect.CodeNotFound); !strings.Contains(ce.Message(), "2001-01-01T00:00:00Z") {
		t.Fatalf("unknown version: %q", ce.Message())
	}
	_, err = c.app.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: "/v", VersionToDeploy: created.Msg.App.GetVersion(), App: mustApp(t, `{"cmd": "x"}`)}))
	if ce := wantCode(t, err, connect.CodeInvalidArgument); !strings.Contains(ce.Message(), "version_to_deploy") {
		t.Fatalf("version with app: %q", ce.Message())
	}
}

func mustDeployment(t *testing.T, c clients, id string) *v1.Deployment {
	t.Helper()
	res, err := c.deployment.GetDeployment(context.Background(), connect.NewRequest(&v1.GetDeploymentRequest{Id: id}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.Deployment
}

func TestDeployments(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 30*time.Second)
	a, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/a", "cmd": "x"}`)}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/b", "cmd": "x"}`)}))
	if err != nil {
		t.Fatal(err)
	}
	list := func(all bool) []string {
		res, err := c.deployment.ListDeployments(ctx, connect.NewRequest(&v1.ListDeploymentsRequest{IncludeFinished: all}))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range res.Msg.Deployments {
			ids = append(ids, d.GetId())
		}
		return ids
	}
	if got := list(false); !slices.Equal(got, []string{a.Msg.DeploymentId, b.Msg.DeploymentId}) {
		t.Fatalf("running = %v", got)
	}
	// With force: stopped where it stands, no rollback deployment.
	forced, err := c.deployment.CancelDeployment(ctx, connect.NewRequest(&v1.CancelDeploymentRequest{Id: a.Msg.DeploymentId, Force: true}))
	if err != nil {
		t.Fatal(err)
	}
	if forced.Msg.DeploymentId != "" || fsm.NewTestReader(t, s.fsm.State).App("/a") == nil {
		t.Fatalf("forced cancel = %v; app /a must stay", forced.Msg)
	}
	// Cancelling again is fine.
	if _, err := c.deployment.CancelDeployment(ctx, connect.NewRequest(&v1.CancelDeploymentRequest{Id: a.Msg.DeploymentId})); err != nil {
		t.Fatal(err)
	}
	if got := list(false); !slices.Equal(got, []string{b.Msg.DeploymentId}) {
		t.Fatalf("running after cancel = %v", got)
	}
	if got := list(true); len(got) != 2 {
		t.Fatalf("all = %v", got)
	}
	_, err = c.deployment.CancelDeployment(ctx, connect.NewRequest(&v1.CancelDeploymentRequest{Id: "nope"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.deployment.GetDeployment(ctx, connect.NewRequest(&v1.GetDeploymentRequest{Id: "nope"}))
	wantCode(t, err, connect.CodeNotFound)
	// A finished deployment cannot be cancelled.
	d := proto.Clone(mustDeployment(t, c, b.Msg.DeploymentId)).(*v1.Deployment)
	d.Status = v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED
	applyDirect(t, s, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutDeployments: []*v1.Deployment{d}})
	_, err = c.deployment.CancelDeployment(ctx, connect.NewRequest(&v1.CancelDeploymentRequest{Id: b.Msg.DeploymentId}))
	wantCode(t, err, connect.CodeFailedPrecondition)
}

// receive reads the next event from a stream, failing the test on error.
func receive(t *testing.T, stream *connect.ServerStreamForClient[v1.Event]) *v1.Event {
	t.Helper()
	if !stream.Receive() {
		t.Fatalf("event stream ended: %v", stream.Err())
	}
	return stream.Msg()
}

func TestEvents(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	all, err := c.event.StreamEvents(ctx, connect.NewRequest(&v1.StreamEventsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	if ev := receive(t, all); ev.Type != rpc.EventStreamAttached {
		t.Fatalf("first event = %v", ev)
	}
	filtered, err := c.event.StreamEvents(ctx, connect.NewRequest(&v1.StreamEventsRequest{Types: []string{"status_update_event"}, AppId: "db"}))
	if err != nil {
		t.Fatal(err)
	}
	defer filtered.Close()
	receive(t, filtered)
	// A type filter that can only match nothing is refused, naming the
	// known types.
	typo, err := c.event.StreamEvents(ctx, connect.NewRequest(&v1.StreamEventsRequest{Types: []string{"status_update"}}))
	if err != nil {
		t.Fatal(err)
	}
	if typo.Receive() {
		t.Fatalf("unknown type: got event %v, want a refusal", typo.Msg())
	}
	if ce := wantCode(t, typo.Err(), connect.CodeInvalidArgument); !strings.Contains(ce.Message(), `"status_update"`) || !strings.Contains(ce.Message(), "status_update_event") {
		t.Errorf("unknown type: %q, want the type and the known types named", ce.Message())
	}
	typo.Close()

	s.broker.Publish(&v1.Event{Type: "status_update_event", AppId: "/web", TaskState: "TASK_RUNNING"})
	s.broker.Publish(&v1.Event{Type: "health_status_changed_event", AppId: "/db", Healthy: proto.Bool(true)})
	s.broker.Publish(&v1.Event{Type: "status_update_event", AppId: "/db", TaskId: "db.1", TaskState: "TASK_RUNNING"})

	for _, want := range []string{"status_update_event", "health_status_changed_event", "status_update_event"} {
		if ev := receive(t, all); ev.Type != want {
			t.Fatalf("got %v, want %s", ev, want)
		}
	}
	if ev := receive(t, filtered); ev.TaskId != "db.1" {
		t.Fatalf("filtered stream got %v", ev)
	}
	// The server's own events: an app created through the API.
	if _, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/e", "cmd": "x"}`)})); err != nil {
		t.Fatal(err)
	}
	if ev := receive(t, all); ev.Type != rpc.EventAPIPost || ev.AppId != "/e" || ev.Deployment == nil {
		t.Fatalf("api event = %v", ev)
	}
	// Closing the client's stream ends the subscription on the server.
	all.Close()
	filtered.Close()
	waitFor(t, 10*time.Second, "subscriptions to end", func() error {
		if n := s.broker.Subscribers(); n != 0 {
			return errors.New("subscribers left")
		}
		return nil
	})
}

func TestEventBrokerDropsOldest(t *testing.T) {
	b := rpc.NewEventBroker(3, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	ch, unsubscribe := b.Subscribe(ctx)
	defer unsubscribe()
	for i := range 5 {
		b.Publish(&v1.Event{Type: "e", Message: string(rune('0' + i))})
	}
	var got []string
	for range 3 {
		got = append(got, (<-ch).Message)
	}
	if !slices.Equal(got, []string{"2", "3", "4"}) {
		t.Fatalf("kept %v, want the 3 newest", got)
	}
	cancel()
	// The channel closes when the context ends.
	for range ch {
	}
	if b.Subscribers() != 0 {
		t.Fatal("subscriber not removed")
	}
	b.Close()
	ch2, _ := b.Subscribe(context.Background())
	if _, ok := <-ch2; ok {
		t.Fatal("subscription after Close is open")
	}
}

func TestClusterServiceSingle(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{})[0]
	c := clientsFor(s)
	ctx := ctxFor(t, 30*time.Second)

	leader, err := c.cluster.Leader(ctx, connect.NewRequest(&v1.LeaderRequest{}))
	if err != nil || leader.Msg.Id != "s0" || leader.Msg.ApiAddr != s.addr || leader.Msg.Term == 0 {
		t.Fatalf("Leader = %v, %v", leader, err)
	}
	members, err := c.cluster.Members(ctx, connect.NewRequest(&v1.MembersRequest{}))
	if err != nil || len(members.Msg.Members) != 1 || members.Msg.Members[0].ApiAddr != s.addr || !members.Msg.Members[0].Leader {
		t.Fatalf("Members = %v, %v", members, err)
	}
	peers, err := c.cluster.ListPeers(ctx, connect.NewRequest(&v1.ListPeersRequest{}))
	if err != nil || len(peers.Msg.Peers) != 1 || peers.Msg.Peers[0].Suffrage != "voter" {
		t.Fatalf("ListPeers = %v, %v", peers, err)
	}
	_, err = c.cluster.RemovePeer(ctx, connect.NewRequest(&v1.RemovePeerRequest{Id: "ghost"}))
	wantCode(t, err, connect.CodeFailedPrecondition)

	// Snapshot, change, restore: the change is gone.
	if _, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/kept", "cmd": "x"}`)})); err != nil {
		t.Fatal(err)
	}
	snap, err := c.cluster.SaveSnapshot(ctx, connect.NewRequest(&v1.SaveSnapshotRequest{}))
	if err != nil || len(snap.Msg.Data) == 0 || snap.Msg.Index == 0 {
		t.Fatalf("SaveSnapshot = %d bytes at %d, %v", len(snap.Msg.GetData()), snap.Msg.GetIndex(), err)
	}
	if _, err := c.app.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: mustApp(t, `{"id": "/lost", "cmd": "x"}`)})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.cluster.RestoreSnapshot(ctx, connect.NewRequest(&v1.RestoreSnapshotRequest{Data: snap.Msg.Data})); err != nil {
		t.Fatal(err)
	}
	if fsm.NewTestReader(t, s.fsm.State).App("/kept") == nil || fsm.NewTestReader(t, s.fsm.State).App("/lost") != nil {
		t.Fatal("restore did not bring back the snapshot's state")
	}
	_, err = c.cluster.RestoreSnapshot(ctx, connect.NewRequest(&v1.RestoreSnapshotRequest{Data: []byte("garbage")}))
	if ce := wantCode(t, err, connect.CodeInvalidArgument); strings.Count(ce.Message(), "restore snapshot") != 1 {
		t.Errorf("restore of garbage: %q, want the operation named once", ce.Message())
	}

}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
