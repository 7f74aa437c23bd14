package marathon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// embeds reads the embed query parameters (repeatable; prefixes app.,
// apps. and group.apps. accepted, unknown values ignored).
func embeds(r *http.Request) map[string]bool {
	out := map[string]bool{}
	for _, v := range r.URL.Query()["embed"] {
		for _, e := range strings.Split(v, ",") {
			for _, p := range []string{"group.apps.", "apps.", "app."} {
				e = strings.TrimPrefix(e, p)
			}
			out[e] = true
		}
	}
	if out["failures"] { // deprecated: tasks + lastTaskFailure + deployments
		out["tasks"] = true
	}
	return out
}

// appInfos renders apps as Marathon's AppInfo objects; with tasks, each
// carries its "tasks" (tasks maps an app id to its task JSON).
func appInfos(apps []*v1.App, sums []*v1.AppSummary, tasks map[string][]Task) ([][]byte, error) {
	return appInfosWith(apps, sums, tasks, nil)
}

// appInfosWith is appInfos with, when readiness is not nil, each app's
// "readinessCheckResults" (readiness maps an app id to them).
func appInfosWith(apps []*v1.App, sums []*v1.AppSummary, tasks map[string][]Task, readiness map[string][]readinessJSON) ([][]byte, error) {
	out := make([][]byte, 0, len(apps))
	for i, app := range apps {
		var sum *v1.AppSummary
		if i < len(sums) {
			sum = sums[i]
		}
		var extra []appmodel.Field
		if tasks != nil {
			ts := tasks[app.GetId()]
			if ts == nil {
				ts = []Task{}
			}
			raw, err := json.Marshal(ts)
			if err != nil {
				return nil, err
			}
			extra = append(extra, appmodel.Field{Key: "tasks", Value: raw})
		}
		if readiness != nil {
			rs := readiness[app.GetId()]
			if rs == nil {
				rs = []readinessJSON{}
			}
			raw, err := json.Marshal(rs)
			if err != nil {
				return nil, err
			}
			extra = append(extra, appmodel.Field{Key: "readinessCheckResults", Value: raw})
		}
		b, err := appmodel.AppInfoJSON(app, sum, extra...)
		if err != nil {
			return nil, fmt.Errorf("render app %s: %w", app.GetId(), err)
		}
		out = append(out, compact(b))
	}
	return out, nil
}

// compact removes the indentation of rendered JSON.
func compact(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

// wrapList writes {"key":[items...]}.
func wrapList(key string, items [][]byte) []byte {
	b := fmt.Appendf(nil, `{%q:[`, key)
	b = append(b, bytes.Join(items, []byte(","))...)
	return append(b, "]}"...)
}

// tasksByApp lists the tasks of every app (or of appID) as Marathon's task
// JSON, grouped by app.
func (a *API) tasksByApp(r *http.Request, appID string, servicePorts bool) (map[string][]Task, error) {
	res, err := a.tasks.ListTasks(r.Context(), call(r, &v1.ListTasksRequest{AppId: appID}))
	if err != nil {
		return nil, err
	}
	out := map[string][]Task{}
	for _, tv := range res.Msg.GetTasks() {
		if t, ok := taskOf(tv); ok {
			out[tv.GetAppId()] = append(out[tv.GetAppId()], t)
		}
	}
	return out, nil
}

// listApps serves GET /v2/apps.
func (a *API) listApps(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	res, err := a.apps.ListApps(r.Context(), call(r, &v1.ListAppsRequest{
		IdContains: q.Get("id"), CmdContains: q.Get("cmd"), Label: q.Get("label"),
	}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	var tasks map[string][]Task
	if embeds(r)["tasks"] {
		if tasks, err = a.tasksByApp(r, "", false); err != nil {
			a.writeError(w, r, err, failure{})
			return
		}
	}
	readiness, err := a.readinessByApp(r, "")
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	infos, err := appInfosWith(res.Msg.GetApps(), res.Msg.GetSummaries(), tasks, readiness)
	if err != nil {
		writeMessage(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeRaw(w, http.StatusOK, wrapList("apps", infos))
}

// getApp serves GET /v2/apps/{id}: the app with its counts, deployments,
// last task failure and tasks.
func (a *API) getApp(w http.ResponseWriter, r *http.Request, id string) {
	res, err := a.apps.GetApp(r.Context(), call(r, &v1.GetAppRequest{Id: id}))
	if err != nil {
		a.writeError(w, r, err, failure{notFound: appNotFound(id)})
		return
	}
	tasks, err := a.tasksByApp(r, id, false)
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	readiness, err := a.readinessByApp(r, id)
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	infos, err := appInfosWith([]*v1.App{res.Msg.GetApp()}, []*v1.AppSummary{res.Msg.GetSummary()}, tasks, readiness)
	if err != nil {
		writeMessage(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeRaw(w, http.StatusOK, append(append([]byte(`{"app":`), infos[0]...), '}'))
}

// createApp serves POST /v2/apps: 201 with the app, its deployment and
// Location.
func (a *API) createApp(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	app := parseApp(w, body, "")
	if app == nil {
		return
	}
	if app.GetId() == "" {
		writeViolations(w, "", []appmodel.Violation{{Field: "id", Description: "must be set"}})
		return
	}
	id := appmodel.NormalizeID(app.GetId())
	res, err := a.apps.CreateApp(r.Context(), call(r, &v1.CreateAppRequest{App: app}))
	if err != nil {
		a.writeError(w, r, err, failure{apps: []string{id}})
		return
	}
	created := proto.Clone(res.Msg.GetApp()).(*v1.App)
	created.VersionInfo = nil // not stored yet, as Marathon's 201 body
	dep := res.Msg.GetDeploymentId()
	infos, err := appInfos([]*v1.App{created}, []*v1.AppSummary{{Deployments: []string{dep}}}, nil)
	if err != nil {
		writeMessage(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Location", "/v2/apps"+created.GetId())
	w.Header().Set("Marathon-Deployment-Id", dep)
	writeRaw(w, http.StatusCreated, infos[0])
}

// onlyIDAndVersion reports whether app sets nothing but id and version
// (Marathon's rollback body).
func onlyIDAndVersion(app *v1.App) bool {
	c := proto.Clone(app).(*v1.App)
	c.Id, c.Version = "", nil
	return proto.Size(c) == 0
}

// putApp serves PUT (create if missing, partial by default) and PATCH
// (partial, never creates) of /v2/apps/{id}.
func (a *API) putApp(w http.ResponseWriter, r *http.Request, id string, patch bool) {
	params, ok := boolParams(w, r, map[string]bool{"force": false, "partialUpdate": true})
	if !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	app := parseApp(w, body, "")
	if app == nil {
		return
	}
	partial := patch || params["partialUpdate"]
	if app.Version != nil {
		// A rollback: {"version": "<ts>"} restores that stored version.
		if !onlyIDAndVersion(app) {
			writeMessage(w, http.StatusUnprocessableEntity, "The 'version' field may only be combined with the 'id' field.")
			return
		}
		res, err := a.apps.UpdateApp(r.Context(), call(r, &v1.UpdateAppRequest{Id: id, VersionToDeploy: app.GetVersion(), Force: params["force"]}))
		if err != nil {
			a.writeError(w, r, err, failure{notFound: appNotFound(id) + " in version " + app.GetVersion(), apps: []string{id}})
			return
		}
		a.writeDeployment(w, r, http.StatusOK, res.Msg.GetDeploymentId(), res.Msg.GetApp().GetVersion())
		return
	}
	if patch {
		app.Id = "" // PATCH ignores the body's id
	}
	res, err := a.apps.UpdateApp(r.Context(), call(r, &v1.UpdateAppRequest{Id: id, App: app, Partial: partial, Force: params["force"]}))
	if err == nil {
		a.writeDeployment(w, r, http.StatusOK, res.Msg.GetDeploymentId(), res.Msg.GetApp().GetVersion())
		return
	}
	if patch || !isNotFound(err) {
		a.writeError(w, r, err, failure{notFound: appNotFound(id), apps: []string{id}})
		return
	}
	// PUT of a missing app creates it (as Marathon does).
	app.Id = id
	created, err := a.apps.CreateApp(r.Context(), call(r, &v1.CreateAppRequest{App: app}))
	if err != nil {
		a.writeError(w, r, err, failure{apps: []string{id}})
		return
	}
	w.Header().Set("Location", "/v2/apps"+id)
	a.writeDeployment(w, r, http.StatusCreated, created.Msg.GetDeploymentId(), created.Msg.GetApp().GetVersion())
}

// updateApps serves PUT and PATCH /v2/apps: a list of apps, each updated
// (PUT: or created) in turn. Berth runs one deployment per app; the
// answer names the last one.
func (a *API) updateApps(w http.ResponseWriter, r *http.Request) {
	params, ok := boolParams(w, r, map[string]bool{"force": false, "partialUpdate": true})
	if !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		writeJSON(w, http.StatusBadRequest, struct {
			Message string `json:"message"`
			Details string `json:"details"`
		}{"Invalid JSON", "expected an array of apps: " + err.Error()})
		return
	}
	patch := r.Method == http.MethodPatch
	apps := make([]*v1.App, len(raws))
	for i, raw := range raws {
		prefix := fmt.Sprintf("/(%d)", i)
		if apps[i] = parseApp(w, raw, prefix); apps[i] == nil {
			return
		}
		if apps[i].GetId() == "" {
			writeMessage(w, http.StatusUnprocessableEntity, "requirement failed: App Update must have app id set")
			return
		}
	}
	var depID, version string
	for i, app := range apps {
		id := appmodel.NormalizeID(app.GetId())
		fail := failure{notFound: appNotFound(id), apps: []string{id}, prefix: fmt.Sprintf("/(%d)", i)}
		res, err := a.apps.UpdateApp(r.Context(), call(r, &v1.UpdateAppRequest{Id: id, App: app, Partial: patch || params["partialUpdate"], Force: params["force"]}))
		switch {
		case err == nil:
			depID, version = res.Msg.GetDeploymentId(), res.Msg.GetApp().GetVersion()
		case !patch && isNotFound(err):
			created, cerr := a.apps.CreateApp(r.Context(), call(r, &v1.CreateAppRequest{App: app}))
			if cerr != nil {
				a.writeError(w, r, cerr, fail)
				return
			}
			depID, version = created.Msg.GetDeploymentId(), created.Msg.GetApp().GetVersion()
		default:
			a.writeError(w, r, err, fail)
			return
		}
	}
	a.writeDeployment(w, r, http.StatusOK, depID, version)
}

// deleteApp serves DELETE /v2/apps/{id} (force defaults to true).
func (a *API) deleteApp(w http.ResponseWriter, r *http.Request, id string) {
	params, ok := boolParams(w, r, map[string]bool{"force": true})
	if !ok {
		return
	}
	res, err := a.apps.DeleteApp(r.Context(), call(r, &v1.DeleteAppRequest{Id: id, Force: params["force"]}))
	if err != nil {
		a.writeError(w, r, err, failure{notFound: appNotFound(id), apps: []string{id}})
		return
	}
	a.writeDeployment(w, r, http.StatusOK, res.Msg.GetDeploymentId(), "")
}

// restartApp serves POST /v2/apps/{id}/restart.
func (a *API) restartApp(w http.ResponseWriter, r *http.Request, id string) {
	params, ok := boolParams(w, r, map[string]bool{"force": false})
	if !ok {
		return
	}
	res, err := a.apps.RestartApp(r.Context(), call(r, &v1.RestartAppRequest{Id: id, Force: params["force"]}))
	if err != nil {
		a.writeError(w, r, err, failure{notFound: appNotFound(id), apps: []string{id}})
		return
	}
	a.writeDeployment(w, r, http.StatusOK, res.Msg.GetDeploymentId(), res.Msg.GetVersion())
}

// appVersions serves GET /v2/apps/{id}/versions.
func (a *API) appVersions(w http.ResponseWriter, r *http.Request, id string) {
	res, err := a.apps.ListAppVersions(r.Context(), call(r, &v1.ListAppVersionsRequest{Id: id}))
	if err != nil {
		a.writeError(w, r, err, failure{notFound: appNotFound(id)})
		return
	}
	versions := res.Msg.GetVersions()
	if versions == nil {
		versions = []string{}
	}
	writeJSON(w, http.StatusOK, map[string][]string{"versions": versions})
}

// appVersion serves GET /v2/apps/{id}/versions/{version}: the bare app.
func (a *API) appVersion(w http.ResponseWriter, r *http.Request, id, version string) {
	res, err := a.apps.GetApp(r.Context(), call(r, &v1.GetAppRequest{Id: id, Version: version}))
	if err != nil {
		a.writeError(w, r, err, failure{notFound: appNotFound(id) + " in version " + version})
		return
	}
	b, err := appmodel.Render(res.Msg.GetApp())
	if err != nil {
		writeMessage(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeRaw(w, http.StatusOK, compact(b))
}

// readinessByApp returns, with embed=apps.readiness, the readiness check
// results the leader holds, by app (nil without the embed).
func (a *API) readinessByApp(r *http.Request, appID string) (map[string][]readinessJSON, error) {
	if !embeds(r)["readiness"] {
		return nil, nil
	}
	res, err := a.tasks.ListCheckResults(r.Context(), call(r, &v1.ListCheckResultsRequest{AppId: appID}))
	if err != nil {
		return nil, err
	}
	out := map[string][]readinessJSON{}
	for _, tr := range res.Msg.GetResults() {
		out[tr.GetAppId()] = append(out[tr.GetAppId()], readinessOf(tr.GetReadinessCheckResults())...)
	}
	return out, nil
}
