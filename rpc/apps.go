package rpc

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Deployment actions (Marathon's names).
const (
	ActionStart   = "StartApplication"
	ActionStop    = "StopApplication"
	ActionScale   = "ScaleApplication"
	ActionRestart = "RestartApplication"
)

// Event types the server itself publishes.
const (
	EventAPIPost = "api_post_event"
)

type appService struct{ *Server }

// newVersion returns a version (RFC 3339 UTC, nanoseconds) for a change made
// now, strictly after prev so that version history keys always increase,
// even across leaders with slightly different clocks.
func (s *Server) newVersion(prev string) (string, time.Time) {
	now := s.now().UTC()
	if t, err := time.Parse(time.RFC3339Nano, prev); err == nil && !now.After(t) {
		now = t.Add(time.Nanosecond)
	}
	return now.Format(time.RFC3339Nano), now
}

// newDeployment builds a running one-step deployment of one action on one
// app.
func newDeployment(id, version, appID, action string, now time.Time) *v1.Deployment {
	return &v1.Deployment{
		Id:           id,
		Version:      version,
		AffectedApps: []string{appID},
		Steps:        []*v1.DeploymentStep{{Actions: []*v1.DeploymentAction{{Action: action, App: appID}}}},
		Status:       v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING,
		CreatedAt:    timestamppb.New(now),
	}
}

// runningDeployments returns the running deployments that affect an app.
func runningDeployments(st *fsm.Snapshot, appID string) ([]*v1.Deployment, error) {
	deps, err := st.DeploymentsByApp(appID)
	if err != nil {
		return nil, stateError(err)
	}
	var out []*v1.Deployment
	for _, d := range deps {
		if d.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
			out = append(out, d)
		}
	}
	return out, nil
}

// lockedError is the refusal of a change to an app that a running
// deployment holds.
func lockedError(appID string, running []*v1.Deployment) *connect.Error {
	ids := make([]string, len(running))
	for i, d := range running {
		ids[i] = d.GetId()
	}
	return connect.NewError(connect.CodeFailedPrecondition,
		fmt.Errorf("app %s is locked by deployment %s; use force to cancel it", appID, strings.Join(ids, ", ")))
}

// checkLock returns the deployments to cancel (with force) or the locked
// error.
func checkLock(st *fsm.Snapshot, appID string, force bool) ([]string, error) {
	running, err := runningDeployments(st, appID)
	if err != nil || len(running) == 0 {
		return nil, err
	}
	if !force {
		return nil, lockedError(appID, running)
	}
	ids := make([]string, len(running))
	for i, d := range running {
		ids[i] = d.GetId()
	}
	return ids, nil
}

// prepareApp canonicalizes and validates a submitted app definition, within
// this server's limits; the result is a copy.
func (s *Server) prepareApp(app *v1.App) (*v1.App, error) {
	if app == nil {
		return nil, ViolationsError("app", []appmodel.Violation{{Field: "app", Description: "must be set"}})
	}
	app = appmodel.Canonicalize(proto.Clone(app).(*v1.App))
	app.Version, app.VersionInfo = nil, nil
	if vs := s.validate(app); len(vs) > 0 {
		return nil, ViolationsError("app "+app.GetId(), vs)
	}
	return app, nil
}

// validate checks a canonical app against the model's rules and this
// server's limits.
func (s *Server) validate(app *v1.App) []appmodel.Violation {
	return append(appmodel.Validate(app), appmodel.CheckLimits(app, s.cfg.Limits)...)
}

// publish sends an event to Config.Publisher, if there is one.
func (s *Server) publish(ev *v1.Event) {
	if s.cfg.Publisher == nil {
		return
	}
	if ev.Timestamp == "" {
		ev.Timestamp = s.now().UTC().Format(time.RFC3339Nano)
	}
	s.cfg.Publisher.Publish(ev)
}

// taskUser is the user an app's tasks run as: its own, else the
// framework's.
func (s *Server) taskUser(app *v1.App) string {
	if u := app.GetUser(); u != "" {
		return u
	}
	return s.cfg.DefaultTaskUser
}

// taskUserViolations refuses an app whose tasks would run as a user
// outside Config.TaskUsers (--task-users).
func (s *Server) taskUserViolations(app *v1.App) []appmodel.Violation {
	if s.cfg.TaskUsers == nil {
		return nil
	}
	u := s.taskUser(app)
	if slices.Contains(s.cfg.TaskUsers, u) {
		return nil
	}
	allowed := strings.Join(s.cfg.TaskUsers, ", ")
	if allowed == "" {
		allowed = "none"
	}
	return []appmodel.Violation{{Field: "user", Description: fmt.Sprintf("tasks may not run as %q; allowed users: %s (--task-users)", u, allowed)}}
}

func notFound(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf(format, args...))
}

func invalid(field, description string) *connect.Error {
	return ViolationsError("request", []appmodel.Violation{{Field: field, Description: description}})
}

// CreateApp stores a new app and starts its deployment.
func (a *appService) CreateApp(ctx context.Context, req *connect.Request[v1.CreateAppRequest]) (*connect.Response[v1.CreateAppResponse], error) {
	msg := req.Msg
	// Validate here first: cheap, and answers even without a leader.
	app, err := a.prepareApp(msg.App)
	if err != nil {
		return nil, err
	}
	if vs := a.taskUserViolations(app); len(vs) > 0 {
		return nil, ViolationsError("app "+app.GetId(), vs)
	}
	return onLeaderWrite(ctx, a.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.CreateAppResponse], error) {
		res, err := a.writeApp(ctx, appWrite{requestID: msg.RequestId, appID: app.GetId(),
			change: func(_ *v1.App, version string) (appChange, error) {
				app := proto.Clone(app).(*v1.App)
				appmodel.StampVersion(nil, app, version, appmodel.Edit)
				return appChange{command: v1.CommandType_COMMAND_TYPE_APP_CREATE, app: app, action: ActionStart, what: "app created"}, nil
			}})
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&v1.CreateAppResponse{App: res.app, DeploymentId: res.deployment.GetId()}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.CreateAppResponse], error) {
		return pc.app.CreateApp(ctx, forwarded(ctx, msg))
	})
}

// summarize counts an app's instances by state, like Marathon's
// tasksRunning/tasksHealthy/... fields, and lists the app's fields Berth
// does not act upon.
func summarize(st *fsm.Snapshot, app *v1.App) (*v1.AppSummary, error) {
	insts, err := st.InstancesOfApp(app.GetId())
	if err != nil {
		return nil, stateError(err)
	}
	running, err := runningDeployments(st, app.GetId())
	if err != nil {
		return nil, err
	}
	return summaryOf(app, insts, running), nil
}

// summaryOf is the summary of app given its instances and its running
// deployments (oldest first).
func summaryOf(app *v1.App, insts iter.Seq[*v1.Instance], running []*v1.Deployment) *v1.AppSummary {
	sum := &v1.AppSummary{Unsupported: appmodel.Unsupported(app)}
	for inst := range insts {
		sum.LastTaskFailure = laterFailure(sum.LastTaskFailure, inst.GetLastFailure())
		if inst.GetGoal() == v1.Goal_GOAL_STOPPED {
			sum.InstancesStopped++
		}
		t := inst.GetTask()
		if t == nil || isTerminal(t.GetState()) {
			if goalOf(inst) == v1.Goal_GOAL_RUNNING {
				sum.InstancesWaiting++
			}
			continue
		}
		switch t.GetState() {
		case "TASK_STAGING", "TASK_STARTING":
			sum.TasksStaged++
		case "TASK_RUNNING":
			sum.TasksRunning++
			if t.Healthy != nil {
				if t.GetHealthy() {
					sum.TasksHealthy++
				} else {
					sum.TasksUnhealthy++
				}
			}
		}
	}
	for _, d := range running {
		sum.Deployments = append(sum.Deployments, d.GetId())
	}
	return sum
}

// GetApp returns one app, optionally at a stored version.
func (a *appService) GetApp(ctx context.Context, req *connect.Request[v1.GetAppRequest]) (*connect.Response[v1.GetAppResponse], error) {
	msg := req.Msg
	return readConsistent(ctx, a.Server, msg.Consistency, req.Header(), func() (*connect.Response[v1.GetAppResponse], error) {
		id := appmodel.NormalizeID(msg.Id)
		if id == "" {
			return nil, invalid("id", "must not be empty")
		}
		st := a.store().Snapshot()
		var app *v1.App
		var err error
		if msg.Version != "" {
			if app, err = st.AppVersion(id, msg.Version); err != nil {
				return nil, stateError(err)
			}
			if app == nil {
				return nil, notFound("app %s has no version %s", id, msg.Version)
			}
		} else if app, err = st.App(id); err != nil {
			return nil, stateError(err)
		} else if app == nil {
			return nil, notFound("app %s does not exist", id)
		}
		sum, err := summarize(st, app)
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&v1.GetAppResponse{App: app, Summary: sum}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.GetAppResponse], error) {
		return pc.app.GetApp(ctx, forwarded(ctx, msg))
	})
}

// ListApps returns the apps matching the filters, sorted by id.
func (a *appService) ListApps(ctx context.Context, req *connect.Request[v1.ListAppsRequest]) (*connect.Response[v1.ListAppsResponse], error) {
	msg := req.Msg
	selector, err := parseLabelSelector(msg.Label)
	if msg.Label != "" && err != nil {
		return nil, invalid("label", err.Error())
	}
	return readConsistent(ctx, a.Server, msg.Consistency, req.Header(), func() (*connect.Response[v1.ListAppsResponse], error) {
		pages, err := newPager(msg.PageSize, msg.PageToken)
		if err != nil {
			return nil, err
		}
		st := a.store().Snapshot()
		res, err := a.appLists.get(ctx, st.Index(), appListKey(msg), func() (*v1.ListAppsResponse, error) {
			return a.listApps(ctx, st, msg, selector, pages)
		})
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(answer(res)), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.ListAppsResponse], error) {
		return pc.app.ListApps(ctx, forwarded(ctx, msg))
	})
}

// listApps computes a ListApps answer from st. It yields the processor
// between chunks of apps, so that a write's goroutines are not kept waiting
// behind a long listing, and stops when the client has gone.
func (a *appService) listApps(ctx context.Context, st *fsm.Snapshot, msg *v1.ListAppsRequest, selector labelSelector, pages *pager) (*v1.ListAppsResponse, error) {
	apps, err := st.Apps()
	if err != nil {
		return nil, stateError(err)
	}
	n := len(apps)
	if pages.size > 0 {
		n = min(n, pages.size)
	}
	sums, err := newAppSummaries(st, n)
	if err != nil {
		return nil, err
	}
	res := &v1.ListAppsResponse{}
	for i, app := range apps {
		if err := stillWanted(ctx, i); err != nil {
			return nil, connect.NewError(connect.CodeCanceled, err)
		}
		if pages.done() {
			break
		}
		if msg.IdContains != "" && !strings.Contains(app.GetId(), msg.IdContains) {
			continue
		}
		if msg.CmdContains != "" && !strings.Contains(app.GetCmd(), msg.CmdContains) {
			continue
		}
		if msg.Label != "" && !selector.matches(app.GetLabels()) {
			continue
		}
		if !pages.take(app.GetId()) {
			continue
		}
		sum, err := sums.summary(app)
		if err != nil {
			return nil, err
		}
		res.Apps = append(res.Apps, app)
		res.Summaries = append(res.Summaries, sum)
	}
	res.NextPageToken = pages.next()
	return res, nil
}

// alreadyApplied returns the deployment an earlier attempt of this request
// created, if it was applied (a retry after an unknown outcome).
func alreadyApplied(st *fsm.Snapshot, requestID string) (*v1.Deployment, error) {
	d, err := st.Deployment(deploymentIDFor(requestID))
	if err != nil {
		return nil, stateError(err)
	}
	return d, nil
}

// UpdateApp replaces an app, or merges the given top-level fields with
// partial. A resident app's resources, volumes and host ports cannot
// change. A running deployment of the app refuses the change unless force,
// which cancels it in the same write.
func (a *appService) UpdateApp(ctx context.Context, req *connect.Request[v1.UpdateAppRequest]) (*connect.Response[v1.UpdateAppResponse], error) {
	msg := req.Msg
	switch {
	case msg.VersionToDeploy != "" && msg.App != nil:
		return nil, invalid("version_to_deploy", "may not be combined with app: a rollback redeploys the stored definition as it was")
	case msg.App == nil && msg.VersionToDeploy == "":
		return nil, invalid("app", "must be set (or version_to_deploy, to redeploy a stored version)")
	}
	id := appmodel.NormalizeID(msg.Id)
	if id == "" {
		id = appmodel.NormalizeID(msg.App.GetId())
	}
	if id == "" {
		return nil, invalid("id", "must not be empty")
	}
	return onLeaderWrite(ctx, a.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.UpdateAppResponse], error) {
		w := appWrite{requestID: msg.RequestId, appID: id, force: msg.Force, mustExist: true,
			change: func(old *v1.App, version string) (appChange, error) {
				var next *v1.App
				if msg.Partial {
					next = appmodel.MergePartial(old, msg.App)
				} else {
					next = proto.Clone(msg.App).(*v1.App)
					if next.Id != "" && appmodel.NormalizeID(next.Id) != id {
						return appChange{}, invalid("id", fmt.Sprintf("must match the app being updated (%s), got %s", id, next.Id))
					}
				}
				next.Id = id
				appmodel.Canonicalize(next)
				next.Version, next.VersionInfo = old.Version, old.VersionInfo
				if proto.Equal(old, next) {
					return appChange{}, nil // nothing to change: no new version, no deployment
				}
				appmodel.StampVersion(old, next, version, appmodel.Edit)
				return a.updateChange(old, next, "app updated")
			}}
		if msg.VersionToDeploy != "" {
			to, err := storedVersion(a.store().Snapshot(), id, msg.VersionToDeploy)
			if err != nil {
				return nil, err
			}
			w = a.rollbackWrite(msg.RequestId, id, to, msg.Force, "app rolled back to "+msg.VersionToDeploy)
		}
		res, err := a.writeApp(ctx, w)
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&v1.UpdateAppResponse{App: res.app, DeploymentId: res.deployment.GetId()}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.UpdateAppResponse], error) {
		return pc.app.UpdateApp(ctx, forwarded(ctx, msg))
	})
}

// updateChange validates next, an update of old already stamped with its
// new version, and names its deployment's action: RestartApplication when
// the instances relaunch, else ScaleApplication. Scaling to 0 is a
// ScaleApplication too: Marathon's StopApplication is only the removal of
// an app (core/deployment/DeploymentPlan.scala, DeploymentPlan.apply:
// StopApplication for apps not in the target, ScaleApplication for a
// changed instance count).
func (s *Server) updateChange(old, next *v1.App, what string) (appChange, error) {
	vs := s.validate(next)
	vs = append(vs, appmodel.ValidateUpdate(old, next)...)
	if s.taskUser(old) != s.taskUser(next) {
		vs = append(vs, s.taskUserViolations(next)...)
	}
	if len(vs) > 0 {
		return appChange{}, ViolationsError("update of app "+old.GetId(), vs)
	}
	action := ActionScale
	if appmodel.NeedsRelaunch(old, next) {
		action = ActionRestart
	}
	return appChange{command: v1.CommandType_COMMAND_TYPE_APP_UPDATE, app: next, action: action, what: what + " (" + action + ")"}, nil
}

// DeleteApp removes an app; the FSM decommissions its instances in the same
// entry, and a StopApplication deployment tracks the cleanup.
func (a *appService) DeleteApp(ctx context.Context, req *connect.Request[v1.DeleteAppRequest]) (*connect.Response[v1.DeleteAppResponse], error) {
	msg := req.Msg
	id := appmodel.NormalizeID(msg.Id)
	if id == "" {
		return nil, invalid("id", "must not be empty")
	}
	return onLeaderWrite(ctx, a.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.DeleteAppResponse], error) {
		res, err := a.writeApp(ctx, appWrite{requestID: msg.RequestId, appID: id, force: msg.Force, mustExist: true,
			change: func(old *v1.App, _ string) (appChange, error) {
				return appChange{command: v1.CommandType_COMMAND_TYPE_APP_DELETE, action: ActionStop, what: "app deleted"}, nil
			}})
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&v1.DeleteAppResponse{DeploymentId: res.deployment.GetId()}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.DeleteAppResponse], error) {
		return pc.app.DeleteApp(ctx, forwarded(ctx, msg))
	})
}

// ListAppVersions lists an app's stored versions, newest first.
func (a *appService) ListAppVersions(ctx context.Context, req *connect.Request[v1.ListAppVersionsRequest]) (*connect.Response[v1.ListAppVersionsResponse], error) {
	id := appmodel.NormalizeID(req.Msg.Id)
	if id == "" {
		return nil, invalid("id", "must not be empty")
	}
	st := a.store().Snapshot()
	if app, err := st.App(id); err != nil {
		return nil, stateError(err)
	} else if app == nil {
		return nil, notFound("app %s does not exist", id)
	}
	versions, err := st.AppVersions(id)
	if err != nil {
		return nil, stateError(err)
	}
	return connect.NewResponse(&v1.ListAppVersionsResponse{Versions: versions}), nil
}

// RestartApp relaunches every instance: the same definition under a new
// version, rolled out by a RestartApplication deployment.
func (a *appService) RestartApp(ctx context.Context, req *connect.Request[v1.RestartAppRequest]) (*connect.Response[v1.RestartAppResponse], error) {
	msg := req.Msg
	id := appmodel.NormalizeID(msg.Id)
	if id == "" {
		return nil, invalid("id", "must not be empty")
	}
	return onLeaderWrite(ctx, a.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.RestartAppResponse], error) {
		res, err := a.writeApp(ctx, appWrite{requestID: msg.RequestId, appID: id, force: msg.Force, mustExist: true,
			change: func(old *v1.App, version string) (appChange, error) {
				next := proto.Clone(old).(*v1.App)
				appmodel.StampVersion(old, next, version, appmodel.Restart)
				return appChange{command: v1.CommandType_COMMAND_TYPE_APP_UPDATE, app: next, action: ActionRestart, what: "app restarted"}, nil
			}})
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&v1.RestartAppResponse{DeploymentId: res.deployment.GetId(), Version: res.deployment.GetVersion()}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.RestartAppResponse], error) {
		return pc.app.RestartApp(ctx, forwarded(ctx, msg))
	})
}
