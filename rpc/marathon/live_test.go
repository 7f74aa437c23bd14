package marathon_test

import (
	"bytes"
	"testing"
	"time"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// What the leader knows without replicating it reaches every server's /v2:
// why an app waits (Marathon's /v2/queue processedOffersSummary and, with
// embed=lastUnusedOffers, lastUnusedOffers), each health check's result
// in the task JSON (healthCheckResults with firstSuccess, lastFailure,
// lastFailureCause...) and the readiness results of a deployment's
// currentActions, asked through a follower.
func TestLiveThroughFollower(t *testing.T) {
	servers := startCluster(t, 3)
	follower := followerOf(servers)
	r := want(t, do(t, follower, "POST", "/v2/apps", `{"id": "/pg", "cmd": "postgres", "instances": 2, "portDefinitions": [{"port": 10000, "name": "pg"}],
		"healthChecks": [{"protocol": "HTTP", "path": "/health"}], "readinessChecks": [{"name": "ready", "portName": "pg"}],
		"container": {"type": "MESOS", "volumes": [{"containerPath": "pgdata", "mode": "RW", "persistent": {"size": 100}}]}}`), 201, "create")
	putResidentInstances(t, leaderOf(servers), r.obj(t)["version"].(string))
	rejects := func(counts map[string]int32, total int32) []*v1.OfferRejections {
		var out []*v1.OfferRejections
		for _, reason := range (&fakeLive{}).ReasonFunnel() {
			out = append(out, &v1.OfferRejections{Reason: reason, Declined: counts[reason], Processed: total})
			total -= counts[reason]
		}
		return out
	}
	// Every server holds the same knowledge, so that whichever leads
	// (leadership may move on a loaded machine) serves it.
	queue0 := []*v1.QueueEntry{{
		AppId: "/pg", InstanceIds: []string{"pg.instance-3"}, Since: "2024-05-01T10:00:00.000Z",
		ProcessedOffersSummary: &v1.ProcessedOffersSummary{
			ProcessedOffersCount: 12, UnusedOffersCount: 12, LastUnusedOfferAt: "2024-05-01T10:01:00.000Z",
			RejectSummaryLastOffers:    rejects(map[string]int32{"InsufficientMemory": 1}, 1),
			RejectSummaryLaunchAttempt: rejects(map[string]int32{"UnfulfilledConstraint": 3, "InsufficientMemory": 9}, 12),
		},
		LastUnusedOffers: []*v1.UnusedOffer{{OfferId: "o-12", AgentId: "agent-1", Hostname: "host-1", Reasons: []string{"InsufficientMemory"}, Timestamp: "2024-05-01T10:01:00.000Z"}},
	}}
	results := []*v1.TaskCheckResults{{
		TaskId: "pg.instance-1._app.1", AppId: "/pg",
		HealthCheckResults: []*v1.HealthCheckResult{{
			Index: 0, InstanceId: "pg.instance-1", TaskId: "pg.instance-1._app.1", Alive: false, ConsecutiveFailures: 2,
			FirstSuccess: "2024-05-01T10:00:05.000Z", LastSuccess: "2024-05-01T10:00:35.000Z",
			LastFailure: "2024-05-01T10:00:45.000Z", LastFailureCause: "GET http://host-1:31000/health: status 503",
		}},
		ReadinessCheckResults: []*v1.ReadinessCheckResult{{
			Name: "ready", TaskId: "pg.instance-1._app.1", Ready: false,
			LastResponse: &v1.ReadinessResponse{Status: 503, ContentType: "text/plain", Body: "starting"},
		}},
	}}
	for _, s := range servers {
		s.live.set(queue0, results)
	}

	var queue struct {
		Queue []struct {
			Count                  int
			ProcessedOffersSummary struct {
				ProcessedOffersCount, UnusedOffersCount int
				LastUnusedOfferAt                       string
				RejectSummaryLaunchAttempt              []struct {
					Reason              string
					Declined, Processed int
				}
			}
			LastUnusedOffers []struct {
				Offer  struct{ ID, AgentID, Hostname string }
				Reason []string
			}
		}
	}
	// The follower's store applies the instances a little later.
	waitFor(t, 10*time.Second, "the waiting instance on the follower", func() error {
		want(t, do(t, follower, "GET", "/v2/queue?embed=lastUnusedOffers", nil), 200, "queue").json(t, &queue)
		if len(queue.Queue) != 1 {
			return errorf("queue = %+v", queue)
		}
		return nil
	})
	q := queue.Queue[0]
	s := q.ProcessedOffersSummary
	if q.Count != 1 || s.ProcessedOffersCount != 12 || s.UnusedOffersCount != 12 || s.LastUnusedOfferAt == "" || len(s.RejectSummaryLaunchAttempt) != 10 {
		t.Fatalf("queue item = %+v", q)
	}
	if c := s.RejectSummaryLaunchAttempt[1]; c.Reason != "UnfulfilledConstraint" || c.Declined != 3 || c.Processed != 12 {
		t.Errorf("constraint rejections = %+v", c)
	}
	if m := s.RejectSummaryLaunchAttempt[5]; m.Reason != "InsufficientMemory" || m.Declined != 9 || m.Processed != 9 {
		t.Errorf("memory rejections = %+v", m)
	}
	if len(q.LastUnusedOffers) != 1 || q.LastUnusedOffers[0].Offer.ID != "o-12" || q.LastUnusedOffers[0].Reason[0] != "InsufficientMemory" {
		t.Errorf("last unused offers = %+v", q.LastUnusedOffers)
	}
	// Without the embed, no lastUnusedOffers (Marathon's default).
	plain := want(t, do(t, follower, "GET", "/v2/queue", nil), 200, "queue").body
	if bytes.Contains(plain, []byte("lastUnusedOffers")) || !bytes.Contains(plain, []byte("processedOffersSummary")) {
		t.Errorf("queue without embed = %s", plain)
	}

	var tasks struct {
		Tasks []struct {
			ID                 string
			HealthCheckResults []struct {
				Alive                                                    bool
				ConsecutiveFailures                                      int
				FirstSuccess, LastSuccess, LastFailure, LastFailureCause string
				InstanceID                                               string
			}
		}
	}
	for _, path := range []string{"/v2/apps/pg/tasks", "/v2/tasks"} {
		want(t, do(t, follower, "GET", path, nil), 200, path).json(t, &tasks)
		hr := tasks.Tasks[0].HealthCheckResults
		if len(hr) != 1 || hr[0].Alive || hr[0].ConsecutiveFailures != 2 || hr[0].FirstSuccess == "" || hr[0].LastFailure == "" ||
			hr[0].LastFailureCause != "GET http://host-1:31000/health: status 503" || hr[0].InstanceID != "pg.instance-1" {
			t.Errorf("%s: health check results = %+v", path, hr)
		}
	}
	var apps struct {
		Apps []struct {
			Tasks []struct {
				HealthCheckResults []struct{ LastFailureCause string }
			}
		}
	}
	want(t, do(t, follower, "GET", "/v2/apps?embed=apps.tasks", nil), 200, "apps with tasks").json(t, &apps)
	if len(apps.Apps) != 1 || len(apps.Apps[0].Tasks) == 0 || len(apps.Apps[0].Tasks[0].HealthCheckResults) != 1 ||
		apps.Apps[0].Tasks[0].HealthCheckResults[0].LastFailureCause == "" {
		t.Errorf("apps?embed=apps.tasks = %+v", apps)
	}

	// embed=apps.readiness: the app's readinessCheckResults.
	var withReadiness struct {
		App struct {
			ReadinessCheckResults []struct {
				Name, TaskID string
				Ready        bool
			}
		}
	}
	want(t, do(t, follower, "GET", "/v2/apps/pg?embed=app.readiness", nil), 200, "app with readiness").json(t, &withReadiness)
	if rs := withReadiness.App.ReadinessCheckResults; len(rs) != 1 || rs[0].Name != "ready" || rs[0].TaskID != "pg.instance-1._app.1" || rs[0].Ready {
		t.Errorf("app readinessCheckResults = %+v", rs)
	}
	if b := want(t, do(t, follower, "GET", "/v2/apps/pg", nil), 200, "app").body; bytes.Contains(b, []byte("readinessCheckResults")) {
		t.Errorf("readinessCheckResults without the embed: %s", b)
	}

	// The deployment (running: no scheduler here) at its first step.
	var deps []struct{ ID string }
	want(t, do(t, follower, "GET", "/v2/deployments", nil), 200, "deployments").json(t, &deps)
	if len(deps) != 1 {
		t.Fatalf("deployments = %+v", deps)
	}
	applyDirect(t, leaderOf(servers), v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutDeployments: []*v1.Deployment{{
		Id: deps[0].ID, Version: r.obj(t)["version"].(string), AffectedApps: []string{"/pg"}, CurrentStep: 1,
		Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING,
		Steps:  []*v1.DeploymentStep{{Actions: []*v1.DeploymentAction{{Action: "StartApplication", App: "/pg"}}}},
	}}})
	var withActions []struct {
		CurrentActions []struct {
			Action, App           string
			ReadinessCheckResults []struct {
				Name, TaskID string
				Ready        bool
				LastResponse *struct {
					Status            int
					ContentType, Body string
				}
			}
		}
	}
	waitFor(t, 10*time.Second, "the deployment at step 1 on the follower", func() error {
		want(t, do(t, follower, "GET", "/v2/deployments", nil), 200, "deployments").json(t, &withActions)
		if len(withActions) != 1 || len(withActions[0].CurrentActions) != 1 {
			return errorf("deployments = %+v", withActions)
		}
		return nil
	})
	ca := withActions[0].CurrentActions[0]
	if ca.Action != "StartApplication" || len(ca.ReadinessCheckResults) != 1 || ca.ReadinessCheckResults[0].Name != "ready" ||
		ca.ReadinessCheckResults[0].Ready || ca.ReadinessCheckResults[0].LastResponse == nil || ca.ReadinessCheckResults[0].LastResponse.Status != 503 ||
		ca.ReadinessCheckResults[0].LastResponse.Body != "starting" {
		t.Errorf("current action = %+v", ca)
	}

	// Mixed checks: the leader's result of the HTTP check (index 0) and
	// the Mesos check's (index 1) as Mesos last reported it.
	mix := want(t, do(t, follower, "POST", "/v2/apps", `{"id": "/mix", "cmd": "sleep 1000", "portDefinitions": [{"port": 0}],
		"healthChecks": [{"protocol": "HTTP", "path": "/h"}, {"protocol": "COMMAND", "command": {"value": "true"}}]}`), 201, "create /mix")
	mixVersion := mix.obj(t)["version"].(string)
	yes := true
	applyDirect(t, leaderOf(servers), v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: []*v1.Instance{{
		Id: "mix.instance-1", AppId: "/mix", AppVersion: mixVersion, Goal: v1.Goal_GOAL_RUNNING,
		Task: &v1.Task{Id: "mix.instance-1._app.1", AgentId: "agent-1", Hostname: "host-1", State: "TASK_RUNNING",
			MesosHealthy: &yes, Ports: []uint32{31005}, AppVersion: mixVersion},
	}}})
	for _, s := range servers {
		s.live.set(queue0, append(append([]*v1.TaskCheckResults(nil), results...), &v1.TaskCheckResults{
			TaskId: "mix.instance-1._app.1", AppId: "/mix",
			HealthCheckResults: []*v1.HealthCheckResult{{Index: 0, InstanceId: "mix.instance-1", TaskId: "mix.instance-1._app.1", LastFailureCause: "GET /h: status 500"}},
		}))
	}
	waitFor(t, 10*time.Second, "both results of /mix's task", func() error {
		want(t, do(t, follower, "GET", "/v2/apps/mix/tasks", nil), 200, "mix tasks").json(t, &tasks)
		if len(tasks.Tasks) != 1 || len(tasks.Tasks[0].HealthCheckResults) != 2 {
			return errorf("tasks = %+v", tasks.Tasks)
		}
		return nil
	})
	if hr := tasks.Tasks[0].HealthCheckResults; hr[0].Alive || hr[0].LastFailureCause != "GET /h: status 500" || !hr[1].Alive || hr[1].InstanceID != "mix.instance-1" {
		t.Errorf("mixed results = %+v", hr)
	}
}
