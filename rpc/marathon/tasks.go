package marathon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Task is Marathon's task JSON. Arrays are always written; stagedAt,
// startedAt and version only while the task is active.
type Task struct {
	ID                 string         `json:"id"`
	AppID              string         `json:"appId"`
	Host               string         `json:"host"`
	SlaveID            string         `json:"slaveId,omitempty"`
	State              string         `json:"state"`
	StagedAt           string         `json:"stagedAt,omitempty"`
	StartedAt          string         `json:"startedAt,omitempty"`
	Version            string         `json:"version,omitempty"`
	Ports              []uint32       `json:"ports"`
	ServicePorts       []uint32       `json:"servicePorts"`
	IPAddresses        []IPAddress    `json:"ipAddresses"`
	HealthCheckResults []HealthResult `json:"healthCheckResults"`
	LocalVolumes       []LocalVolume  `json:"localVolumes"`
	Role               string         `json:"role,omitempty"`
}

// IPAddress is one address of a task.
type IPAddress struct {
	IPAddress string `json:"ipAddress"`
	Protocol  string `json:"protocol"`
}

// HealthResult is Marathon's health of an instance, per health check.
// The times and the cause are left out when unknown (Marathon's Option
// fields).
type HealthResult struct {
	Alive               bool   `json:"alive"`
	ConsecutiveFailures int    `json:"consecutiveFailures"`
	FirstSuccess        string `json:"firstSuccess,omitempty"`
	LastSuccess         string `json:"lastSuccess,omitempty"`
	LastFailure         string `json:"lastFailure,omitempty"`
	LastFailureCause    string `json:"lastFailureCause,omitempty"`
	InstanceID          string `json:"instanceId"`
}

// LocalVolume is a persistent volume of a resident task.
type LocalVolume struct {
	RunSpecID     string `json:"runSpecId"`
	ContainerPath string `json:"containerPath"`
	PersistenceID string `json:"persistenceId"`
}

// taskOf renders a task view as Marathon's task JSON. An instance without
// a task (never launched) has none: Marathon lists no task for it. A
// stopped resident instance keeps its last task, without startedAt.
func taskOf(tv *v1.TaskView) (Task, bool) {
	if tv.GetState() == "" {
		return Task{}, false
	}
	t := Task{
		ID: tv.GetId(), AppID: tv.GetAppId(), Host: tv.GetHost(), SlaveID: tv.GetAgentId(), State: tv.GetState(),
		StagedAt: tv.GetStagedAt(), StartedAt: tv.GetStartedAt(), Version: tv.GetVersion(), Role: tv.GetRole(),
		Ports: tv.GetPorts(), ServicePorts: []uint32{}, IPAddresses: []IPAddress{},
		HealthCheckResults: []HealthResult{}, LocalVolumes: []LocalVolume{},
	}
	if t.Ports == nil {
		t.Ports = []uint32{}
	}
	for _, h := range tv.GetHealthCheckResults() {
		t.HealthCheckResults = append(t.HealthCheckResults, HealthResult{
			Alive: h.GetAlive(), ConsecutiveFailures: int(h.GetConsecutiveFailures()),
			FirstSuccess: h.GetFirstSuccess(), LastSuccess: h.GetLastSuccess(),
			LastFailure: h.GetLastFailure(), LastFailureCause: h.GetLastFailureCause(),
			InstanceID: tv.GetInstanceId(),
		})
	}
	if tv.Healthy != nil && len(tv.GetHealthCheckResults()) == 0 {
		// No per-check results from the leader (a Mesos check, or none
		// answered): the committed aggregate health.
		hr := HealthResult{Alive: tv.GetHealthy(), InstanceID: tv.GetInstanceId()}
		if !hr.Alive {
			hr.ConsecutiveFailures = 1
		}
		t.HealthCheckResults = append(t.HealthCheckResults, hr)
	}
	for _, v := range tv.GetLocalVolumes() {
		t.LocalVolumes = append(t.LocalVolumes, LocalVolume{RunSpecID: tv.GetAppId(), ContainerPath: v.GetContainerPath(), PersistenceID: v.GetPersistenceId()})
	}
	return t, true
}

func isNotFound(err error) bool { return connect.CodeOf(err) == connect.CodeNotFound }

// appTaskViews checks that the app exists (404 otherwise) and lists its
// instances.
func (a *API) appTaskViews(w http.ResponseWriter, r *http.Request, id string) (*v1.App, []*v1.TaskView, bool) {
	app, err := a.apps.GetApp(r.Context(), call(r, &v1.GetAppRequest{Id: id}))
	if err != nil {
		a.writeError(w, r, err, failure{notFound: appNotFound(id)})
		return nil, nil, false
	}
	res, err := a.tasks.ListTasks(r.Context(), call(r, &v1.ListTasksRequest{AppId: id}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return nil, nil, false
	}
	return app.Msg.GetApp(), res.Msg.GetTasks(), true
}

// appTasks serves GET /v2/apps/{id}/tasks.
func (a *API) appTasks(w http.ResponseWriter, r *http.Request, id string) {
	_, views, ok := a.appTaskViews(w, r, id)
	if !ok {
		return
	}
	tasks := []Task{}
	for _, tv := range views {
		if t, ok := taskOf(tv); ok {
			tasks = append(tasks, t)
		}
	}
	writeJSON(w, http.StatusOK, map[string][]Task{"tasks": tasks})
}

// killParams reads scale, wipe and force; scale with wipe is a 400.
func killParams(w http.ResponseWriter, r *http.Request) (scale, wipe, force bool, ok bool) {
	p, ok := boolParams(w, r, map[string]bool{"scale": false, "wipe": false, "force": false})
	if !ok {
		return false, false, false, false
	}
	if p["scale"] && p["wipe"] {
		writeMessage(w, http.StatusBadRequest, "You cannot use scale and wipe at the same time.")
		return false, false, false, false
	}
	return p["scale"], p["wipe"], p["force"], true
}

// isActive reports whether an instance is meant to run (not stopped or
// decommissioned): only those get a kill.
func isActive(tv *v1.TaskView) bool { return tv.GetGoal() == "Running" }

// kill kills the given instances of one app. Without scale it answers
// {"tasks": [...]} (each task as it was before the kill); with scale one
// deployment lowers the app's instances by the number of active ones.
func (a *API) kill(w http.ResponseWriter, r *http.Request, app *v1.App, views []*v1.TaskView, scale, wipe, force bool, one bool) {
	if scale {
		var active []*v1.TaskView
		for _, tv := range views {
			if isActive(tv) {
				active = append(active, tv)
			}
		}
		a.scaleDown(w, r, app, active, force)
		return
	}
	tasks := []Task{}
	for _, tv := range views {
		if t, ok := taskOf(tv); ok {
			tasks = append(tasks, t)
		} else if one {
			tasks = append(tasks, Task{ID: tv.GetId(), AppID: tv.GetAppId(), State: "TASK_STAGING",
				Ports: []uint32{}, ServicePorts: []uint32{}, IPAddresses: []IPAddress{}, HealthCheckResults: []HealthResult{}, LocalVolumes: []LocalVolume{}})
		}
		if !wipe && !isActive(tv) {
			continue
		}
		if _, err := a.tasks.KillTask(r.Context(), call(r, &v1.KillTaskRequest{Id: tv.GetInstanceId(), Wipe: wipe})); err != nil && !isNotFound(err) {
			a.writeError(w, r, err, failure{notFound: fmt.Sprintf("Task '%s' does not exist", tv.GetId()), apps: []string{app.GetId()}})
			return
		}
	}
	if one {
		writeJSON(w, http.StatusOK, map[string]Task{"task": tasks[0]})
		return
	}
	writeJSON(w, http.StatusOK, map[string][]Task{"tasks": tasks})
}

// scaleDown stops the given active instances and lowers the app's
// instances accordingly, in one deployment: one instance through
// KillTask (that very instance stops), several through an update of
// instances (the app's killSelection picks which stop).
func (a *API) scaleDown(w http.ResponseWriter, r *http.Request, app *v1.App, active []*v1.TaskView, force bool) {
	id := app.GetId()
	switch len(active) {
	case 0:
		a.writeDeployment(w, r, http.StatusOK, "", app.GetVersion())
	case 1:
		res, err := a.tasks.KillTask(r.Context(), call(r, &v1.KillTaskRequest{Id: active[0].GetInstanceId(), Scale: true}))
		if err != nil {
			a.writeError(w, r, err, failure{notFound: fmt.Sprintf("Task '%s' does not exist", active[0].GetId()), apps: []string{id}})
			return
		}
		a.writeDeployment(w, r, http.StatusOK, res.Msg.GetDeploymentId(), "")
	default:
		n := max(0, appmodel.Instances(app)-len(active))
		res, err := a.apps.UpdateApp(r.Context(), call(r, &v1.UpdateAppRequest{Id: id, App: &v1.App{Instances: proto.Int32(int32(n))}, Partial: true, Force: force}))
		if err != nil {
			a.writeError(w, r, err, failure{notFound: appNotFound(id), apps: []string{id}})
			return
		}
		a.writeDeployment(w, r, http.StatusOK, res.Msg.GetDeploymentId(), res.Msg.GetApp().GetVersion())
	}
}

// killAppTasks serves DELETE /v2/apps/{id}/tasks (host: only tasks on
// that agent; "*" or empty: all).
func (a *API) killAppTasks(w http.ResponseWriter, r *http.Request, id string) {
	scale, wipe, force, ok := killParams(w, r)
	if !ok {
		return
	}
	app, views, ok := a.appTaskViews(w, r, id)
	if !ok {
		return
	}
	host := r.URL.Query().Get("host")
	var selected []*v1.TaskView
	for _, tv := range views {
		if host == "" || host == "*" || tv.GetHost() == host {
			selected = append(selected, tv)
		}
	}
	a.kill(w, r, app, selected, scale, wipe, force, false)
}

// killAppTask serves DELETE /v2/apps/{id}/tasks/{taskId}: the instance
// owning the task (or named by an instance id) is killed.
func (a *API) killAppTask(w http.ResponseWriter, r *http.Request, id, taskID string) {
	scale, wipe, force, ok := killParams(w, r)
	if !ok {
		return
	}
	app, views, ok := a.appTaskViews(w, r, id)
	if !ok {
		return
	}
	for _, tv := range views {
		if tv.GetId() == taskID || tv.GetInstanceId() == taskID {
			a.kill(w, r, app, []*v1.TaskView{tv}, scale, wipe, force, true)
			return
		}
	}
	writeMessage(w, http.StatusNotFound, fmt.Sprintf("Task '%s' does not exist", taskID))
}

// statusStates maps /v2/tasks?status= values to the task states they keep.
var statusStates = map[string][]string{
	"running": {"TASK_RUNNING"},
	"staging": {"TASK_STAGING", "TASK_STARTING"},
}

// listAllTasks serves GET /v2/tasks (status=running|staging, repeatable,
// also as status[]; other values filter nothing), with servicePorts.
func (a *API) listAllTasks(w http.ResponseWriter, r *http.Request) {
	var states []string
	q := r.URL.Query()
	for _, s := range append(q["status"], q["status[]"]...) {
		states = append(states, statusStates[strings.ToLower(s)]...)
	}
	filtered := len(states) > 0
	apps, err := a.apps.ListApps(r.Context(), call(r, &v1.ListAppsRequest{}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	servicePorts := map[string][]uint32{}
	for _, app := range apps.Msg.GetApps() {
		ports := []uint32{}
		for _, p := range appmodel.Ports(app) {
			ports = append(ports, p.ServicePort)
		}
		servicePorts[app.GetId()] = ports
	}
	res, err := a.tasks.ListTasks(r.Context(), call(r, &v1.ListTasksRequest{}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	tasks := []Task{}
	for _, tv := range res.Msg.GetTasks() {
		t, ok := taskOf(tv)
		if !ok || filtered && !contains(states, t.State) {
			continue
		}
		if sp := servicePorts[t.AppID]; sp != nil {
			t.ServicePorts = sp
		}
		tasks = append(tasks, t)
	}
	writeJSON(w, http.StatusOK, map[string][]Task{"tasks": tasks})
}

// deleteTasks serves POST /v2/tasks/delete {"ids": [...]}: ids that match
// no instance are skipped (as Marathon does). With scale, each affected
// app gets one deployment; the answer names the last.
func (a *API) deleteTasks(w http.ResponseWriter, r *http.Request) {
	scale, wipe, force, ok := killParams(w, r)
	if !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, struct {
			Message string `json:"message"`
			Details string `json:"details"`
		}{"Invalid JSON", `expected {"ids": ["<task id>", ...]}: ` + err.Error()})
		return
	}
	res, err := a.tasks.ListTasks(r.Context(), call(r, &v1.ListTasksRequest{}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	byApp := map[string][]*v1.TaskView{}
	var order []string
	for _, tv := range res.Msg.GetTasks() {
		if !contains(req.IDs, tv.GetId()) && !contains(req.IDs, tv.GetInstanceId()) {
			continue
		}
		if byApp[tv.GetAppId()] == nil {
			order = append(order, tv.GetAppId())
		}
		byApp[tv.GetAppId()] = append(byApp[tv.GetAppId()], tv)
	}
	if !scale {
		tasks := []Task{}
		for _, appID := range order {
			rec := &recorder{header: http.Header{}}
			a.kill(rec, r, &v1.App{Id: appID}, byApp[appID], false, wipe, force, false)
			if rec.status != http.StatusOK {
				copyRecorded(w, rec)
				return
			}
			var got struct{ Tasks []Task }
			_ = json.Unmarshal(rec.body, &got)
			tasks = append(tasks, got.Tasks...)
		}
		writeJSON(w, http.StatusOK, map[string][]Task{"tasks": tasks})
		return
	}
	var last *recorder
	for _, appID := range order {
		app, err := a.apps.GetApp(r.Context(), call(r, &v1.GetAppRequest{Id: appID}))
		if err != nil {
			a.writeError(w, r, err, failure{notFound: appNotFound(appID)})
			return
		}
		rec := &recorder{header: http.Header{}}
		a.kill(rec, r, app.Msg.GetApp(), byApp[appID], true, false, force, false)
		if rec.status != http.StatusOK {
			copyRecorded(w, rec)
			return
		}
		last = rec
	}
	if last == nil {
		writeJSON(w, http.StatusOK, deploymentResult{})
		return
	}
	copyRecorded(w, last)
}

// recorder keeps a sub-answer (one app's part of a multi-app request).
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (rec *recorder) Header() http.Header { return rec.header }
func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 {
		rec.status = code
	}
}
func (rec *recorder) Write(p []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	rec.body = append(rec.body, p...)
	return len(p), nil
}

func copyRecorded(w http.ResponseWriter, rec *recorder) {
	for k, vs := range rec.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(rec.body)
}
