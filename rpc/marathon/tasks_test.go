package marathon_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// putResidentInstances commits, as the scheduler would, a running and a
// stopped resident instance of /pg and a never-launched one.
func putResidentInstances(t *testing.T, s *server, version string) {
	t.Helper()
	started := timestamppb.New(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC))
	vol := func(n string) *v1.Reservation {
		return &v1.Reservation{State: v1.ReservationState_RESERVATION_STATE_RESERVED, AgentId: "agent-" + n, Hostname: "host-" + n, Role: "berth",
			Volumes: []*v1.LocalVolume{{PersistenceId: "pg#pgdata#" + n, ContainerPath: "pgdata", SizeMib: 100}}}
	}
	running := &v1.Instance{Id: "pg.instance-1", AppId: "/pg", AppVersion: version, Goal: v1.Goal_GOAL_RUNNING, Resident: true, Reservation: vol("1"),
		Task: &v1.Task{Id: "pg.instance-1._app.1", AgentId: "agent-1", Hostname: "host-1", State: "TASK_RUNNING",
			Healthy: proto.Bool(true), StagedAt: started, StartedAt: started, Ports: []uint32{31000}, AppVersion: version}, Incarnation: 1}
	stopped := &v1.Instance{Id: "pg.instance-2", AppId: "/pg", AppVersion: version, Goal: v1.Goal_GOAL_STOPPED, Resident: true, Reservation: vol("2"),
		Task: &v1.Task{Id: "pg.instance-2._app.3", AgentId: "agent-2", Hostname: "host-2", State: "TASK_KILLED",
			StagedAt: started, StartedAt: started, Ports: []uint32{31001}, AppVersion: version}, Incarnation: 3}
	waiting := &v1.Instance{Id: "pg.instance-3", AppId: "/pg", AppVersion: version, Goal: v1.Goal_GOAL_RUNNING, Resident: true,
		CreatedAt: started, LaunchNotBefore: timestamppb.New(time.Now().Add(time.Hour))}
	applyDirect(t, s, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{running, stopped, waiting}})
}

type taskJSON struct {
	ID, AppID, Host, SlaveID, State, StartedAt, StagedAt, Version string
	Ports, ServicePorts                                           []int
	HealthCheckResults                                            []struct{ Alive bool }
	LocalVolumes                                                  []struct{ ContainerPath, PersistenceID string }
}

// Tasks as Marathon lists them: a running task with its times and ports,
// a stopped resident instance with its volume but no startedAt, and no
// task for an instance never launched (which waits in /v2/queue).
func TestTasks(t *testing.T) {
	s := startCluster(t, 1)[0]
	r := want(t, do(t, s, "POST", "/v2/apps", `{"id": "/pg", "cmd": "postgres", "instances": 2, "portDefinitions": [{"port": 10000}],
		"container": {"type": "MESOS", "volumes": [{"containerPath": "pgdata", "mode": "RW", "persistent": {"size": 100}}]}}`), 201, "create")
	putResidentInstances(t, s, r.obj(t)["version"].(string))

	var tasks struct{ Tasks []taskJSON }
	want(t, do(t, s, "GET", "/v2/apps/pg/tasks", nil), 200, "app tasks").json(t, &tasks)
	if len(tasks.Tasks) != 2 {
		t.Fatalf("tasks = %+v", tasks.Tasks)
	}
	run, stop := tasks.Tasks[0], tasks.Tasks[1]
	if run.ID != "pg.instance-1._app.1" || run.State != "TASK_RUNNING" || run.StartedAt != "2024-05-01T10:00:00.000Z" ||
		run.SlaveID != "agent-1" || len(run.Ports) != 1 || len(run.HealthCheckResults) != 1 || !run.HealthCheckResults[0].Alive ||
		len(run.LocalVolumes) != 1 || run.LocalVolumes[0].PersistenceID != "pg#pgdata#1" {
		t.Errorf("running task = %+v", run)
	}
	if stop.ID != "pg.instance-2._app.3" || stop.State != "TASK_KILLED" || stop.StartedAt != "" || stop.StagedAt != "" || stop.Version != "" ||
		stop.Ports == nil || len(stop.Ports) != 0 || len(stop.LocalVolumes) != 1 || stop.Host != "host-2" {
		t.Errorf("stopped resident task = %+v", stop)
	}
	want(t, do(t, s, "GET", "/v2/apps/nope/tasks", nil), 404, "tasks of missing app")

	want(t, do(t, s, "GET", "/v2/tasks?status=running", nil), 200, "running tasks").json(t, &tasks)
	if len(tasks.Tasks) != 1 || tasks.Tasks[0].ID != "pg.instance-1._app.1" || len(tasks.Tasks[0].ServicePorts) != 1 || tasks.Tasks[0].ServicePorts[0] != 10000 {
		t.Errorf("running tasks = %+v", tasks.Tasks)
	}
	want(t, do(t, s, "GET", "/v2/tasks", nil), 200, "all tasks").json(t, &tasks)
	if len(tasks.Tasks) != 2 {
		t.Errorf("all tasks = %+v", tasks.Tasks)
	}

	var queue struct {
		Queue []struct {
			App   struct{ ID string }
			Count int
			Delay struct {
				TimeLeftSeconds int
				Overdue         bool
			}
			Since string
		}
	}
	want(t, do(t, s, "GET", "/v2/queue", nil), 200, "queue").json(t, &queue)
	if len(queue.Queue) != 1 || queue.Queue[0].App.ID != "/pg" || queue.Queue[0].Count != 1 || queue.Queue[0].Delay.Overdue ||
		queue.Queue[0].Delay.TimeLeftSeconds < 3000 || queue.Queue[0].Since != "2024-05-01T10:00:00.000Z" {
		t.Errorf("queue = %+v", queue.Queue)
	}
	// Marathon's DELETE /v2/queue/{id}/delay answers 204 and the delay
	// is gone (api/v2/QueueResource.scala resetDelay).
	want(t, do(t, s, "DELETE", "/v2/queue/pg/delay", nil), 204, "backoff reset")
	want(t, do(t, s, "GET", "/v2/queue", nil), 200, "queue").json(t, &queue)
	if len(queue.Queue) != 1 || !queue.Queue[0].Delay.Overdue || queue.Queue[0].Delay.TimeLeftSeconds != 0 {
		t.Errorf("queue after the reset = %+v", queue.Queue)
	}
	want(t, do(t, s, "DELETE", "/v2/queue/nope/delay", nil), 404, "reset of a missing app")

	// Kills.
	want(t, do(t, s, "DELETE", "/v2/apps/pg/tasks?scale=true&wipe=true", nil), 400, "scale and wipe")
	want(t, do(t, s, "DELETE", "/v2/apps/pg/tasks/pg.instance-9._app.1", nil), 404, "unknown task")
	var killed struct{ Task taskJSON }
	want(t, do(t, s, "DELETE", "/v2/apps/pg/tasks/pg.instance-1._app.1", nil), 200, "kill").json(t, &killed)
	if killed.Task.ID != "pg.instance-1._app.1" || killed.Task.State != "TASK_RUNNING" {
		t.Errorf("killed task = %+v (want as before the kill)", killed.Task)
	}
	want(t, do(t, s, "POST", "/v2/tasks/delete", `{"ids": ["pg.instance-1._app.1", "unknown._app.1"]}`), 200, "tasks/delete").json(t, &tasks)
	if len(tasks.Tasks) != 1 {
		t.Errorf("tasks/delete = %+v", tasks.Tasks)
	}
	// Scale: the one active instance stops (berth kept), instances 2 → 1,
	// in one deployment (forced out by nothing: the create deployment
	// still holds the app, so this is refused as locked).
	r = want(t, do(t, s, "DELETE", "/v2/apps/pg/tasks/pg.instance-1._app.1?scale=true", nil), 409, "scale while locked")
	if deps, _ := r.obj(t)["deployments"].([]any); len(deps) != 1 {
		t.Errorf("409 without the blocking deployment: %s", r.body)
	}
	// Wipe one instance: it is decommissioned (its volume will go).
	want(t, do(t, s, "DELETE", "/v2/apps/pg/tasks/pg.instance-2._app.3?wipe=true", nil), 200, "wipe").json(t, &killed)
	if killed.Task.ID != "pg.instance-2._app.3" {
		t.Errorf("wiped task = %+v", killed.Task)
	}
	// Scale down every active instance (two: the running one and the one
	// waiting for an offer) in one deployment, forcing the create out.
	r = want(t, do(t, s, "DELETE", "/v2/apps/pg/tasks?scale=true&force=true", nil), 200, "scale down all")
	if res := r.obj(t); res["deploymentId"] == "" || r.header.Get("Marathon-Deployment-Id") != res["deploymentId"] {
		t.Errorf("scale result = %s", r.body)
	}
	var one struct{ App struct{ Instances *int } }
	want(t, do(t, s, "GET", "/v2/apps/pg", nil), 200, "get").json(t, &one)
	if one.App.Instances == nil || *one.App.Instances != 0 {
		t.Errorf("instances after scaling down both active instances = %v", one.App.Instances)
	}
}
