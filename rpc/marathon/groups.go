package marathon

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"path"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Berth has no group objects: a group is the set of apps under a path, as
// their ids say. GET builds the tree from the apps; POST and PUT write
// each app of the body through the app write path; DELETE removes every
// app under the path.

// groupJSON is Marathon's GroupInfo.
type groupJSON struct {
	ID           string      `json:"id"`
	Apps         []rawJSON   `json:"apps"`
	Groups       []groupJSON `json:"groups"`
	Pods         []rawJSON   `json:"pods"`
	Dependencies []string    `json:"dependencies"`
}

func groupNotFound(id string) string { return fmt.Sprintf("Group '%s' does not exist", id) }

// routeGroups routes /v2/groups[/{id}].
func (a *API) routeGroups(w http.ResponseWriter, r *http.Request, rest string) {
	id := appmodel.NormalizeID(rest)
	if id == "" {
		id = "/"
	}
	switch r.Method {
	case http.MethodGet:
		a.getGroup(w, r, id)
	case http.MethodPost:
		a.writeGroup(w, r, id, true)
	case http.MethodPut:
		a.writeGroup(w, r, id, false)
	case http.MethodDelete:
		a.deleteGroup(w, r, id)
	default:
		methodNotAllowed(w, r)
	}
}

// groupApps lists the apps under group gid with their summaries; it answers
// the request itself (and returns ok false) on an error or, for a group
// other than the root, when there are none.
func (a *API) groupApps(w http.ResponseWriter, r *http.Request, gid string) (apps []*v1.App, sums []*v1.AppSummary, ok bool) {
	res, err := a.apps.ListApps(r.Context(), call(r, &v1.ListAppsRequest{}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return nil, nil, false
	}
	for i, app := range res.Msg.GetApps() {
		if appmodel.UnderGroup(app.GetId(), gid) {
			apps = append(apps, app)
			sums = append(sums, res.Msg.GetSummaries()[i])
		}
	}
	if len(apps) == 0 && gid != "/" {
		writeMessage(w, http.StatusNotFound, groupNotFound(gid))
		return nil, nil, false
	}
	return apps, sums, true
}

// getGroup serves GET /v2/groups[/{id}]: the tree of the apps under id.
func (a *API) getGroup(w http.ResponseWriter, r *http.Request, gid string) {
	apps, sums, ok := a.groupApps(w, r, gid)
	if !ok {
		return
	}
	infos, err := appInfos(apps, sums, nil)
	if err != nil {
		writeMessage(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, buildGroup(gid, apps, infos))
}

// buildGroup nests apps (sorted by id) into groups by their paths.
func buildGroup(gid string, apps []*v1.App, infos [][]byte) groupJSON {
	g := groupJSON{ID: gid, Apps: []rawJSON{}, Groups: []groupJSON{}, Pods: []rawJSON{}, Dependencies: []string{}}
	children := map[string][]int{}
	var order []string
	for i, app := range apps {
		parent := path.Dir(app.GetId())
		if parent == gid {
			g.Apps = append(g.Apps, infos[i])
			continue
		}
		// The child group of gid that holds the app.
		rel := strings.TrimPrefix(strings.TrimPrefix(app.GetId(), gid), "/")
		child := path.Join(gid, strings.SplitN(rel, "/", 2)[0])
		if _, ok := children[child]; !ok {
			order = append(order, child)
		}
		children[child] = append(children[child], i)
	}
	sort.Strings(order)
	for _, child := range order {
		var capps []*v1.App
		var cinfos [][]byte
		for _, i := range children[child] {
			capps = append(capps, apps[i])
			cinfos = append(cinfos, infos[i])
		}
		g.Groups = append(g.Groups, buildGroup(child, capps, cinfos))
	}
	return g
}

// writeGroup serves POST (create) and PUT (create or replace) of a group:
// each app of the body is written through the app write path, in
// dependency order (dependencies first). Berth starts one deployment per
// app; the scheduler starts a dependent app's instances only once the apps
// it depends on run all theirs healthy and ready, as Marathon's plan puts
// it in a later step. The answer names the last deployment. PUT with
// scaleBy scales every app under the group (rounding up).
func (a *API) writeGroup(w http.ResponseWriter, r *http.Request, pathID string, create bool) {
	params, ok := boolParams(w, r, map[string]bool{"force": false})
	if !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var g appmodel.GroupDef
	if err := json.Unmarshal(body, &g); err != nil {
		writeJSON(w, http.StatusBadRequest, struct {
			Message string `json:"message"`
			Details string `json:"details"`
		}{"Invalid JSON", err.Error()})
		return
	}
	gid := pathID
	if g.ID != "" {
		gid = appmodel.ResolveID(pathID, g.ID)
	}
	if g.Version != nil {
		writeMessage(w, http.StatusNotImplemented, "Berth keeps versions of apps, not of groups: roll back each app with PUT /v2/apps/{id} {\"version\": ...}")
		return
	}
	if g.ScaleBy != nil && !create {
		a.scaleGroup(w, r, gid, *g.ScaleBy, params["force"])
		return
	}
	answered := errors.New("answered")
	apps, err := appmodel.FlattenGroup(g, gid, func(raw []byte, p string) (*v1.App, error) {
		if app := parseApp(w, raw, p); app != nil {
			return app, nil
		}
		return nil, answered // parseApp answered with the error
	})
	var ge *appmodel.GroupError
	switch {
	case errors.As(err, &ge) && len(ge.Violations) > 0:
		writeViolations(w, ge.Path, ge.Violations)
		return
	case err != nil:
		return
	}
	if len(apps) == 0 {
		writeMessage(w, http.StatusUnprocessableEntity, "Berth has no empty groups: a group exists through the apps in it; give at least one app")
		return
	}
	apps, ok = appmodel.DependencyOrder(apps)
	if !ok {
		writeMessage(w, http.StatusUnprocessableEntity, "Dependency graph has cyclic dependencies.")
		return
	}
	if create {
		existing, err := a.apps.ListApps(r.Context(), call(r, &v1.ListAppsRequest{}))
		if err != nil {
			a.writeError(w, r, err, failure{})
			return
		}
		for _, app := range existing.Msg.GetApps() {
			if appmodel.UnderGroup(app.GetId(), gid) {
				writeMessage(w, http.StatusConflict, fmt.Sprintf("Group %s is already created. Use PUT to change this group.", gid))
				return
			}
		}
	}
	var depID, version string
	for _, ga := range apps {
		id := ga.App.GetId()
		fail := failure{notFound: appNotFound(id), apps: []string{id}, prefix: ga.Path}
		if !create {
			res, err := a.apps.UpdateApp(r.Context(), call(r, &v1.UpdateAppRequest{Id: id, App: ga.App, Force: params["force"]}))
			if err == nil {
				depID, version = res.Msg.GetDeploymentId(), res.Msg.GetApp().GetVersion()
				continue
			}
			if !isNotFound(err) {
				a.writeError(w, r, err, fail)
				return
			}
		}
		res, err := a.apps.CreateApp(r.Context(), call(r, &v1.CreateAppRequest{App: ga.App}))
		if err != nil {
			a.writeError(w, r, err, fail)
			return
		}
		depID, version = res.Msg.GetDeploymentId(), res.Msg.GetApp().GetVersion()
	}
	status := http.StatusOK
	if create {
		status = http.StatusCreated
		w.Header().Set("Location", "/v2/groups"+gid)
	}
	a.writeDeployment(w, r, status, depID, version)
}

// appsUnder lists the apps under a group; it answers 404 itself when
// there are none.
func (a *API) appsUnder(w http.ResponseWriter, r *http.Request, gid string) ([]*v1.App, bool) {
	res, err := a.apps.ListApps(r.Context(), call(r, &v1.ListAppsRequest{}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return nil, false
	}
	var out []*v1.App
	for _, app := range res.Msg.GetApps() {
		if appmodel.UnderGroup(app.GetId(), gid) {
			out = append(out, app)
		}
	}
	if len(out) == 0 {
		writeMessage(w, http.StatusNotFound, groupNotFound(gid))
		return nil, false
	}
	return out, true
}

// scaleGroup multiplies the instances of every app under gid by factor,
// rounding up.
func (a *API) scaleGroup(w http.ResponseWriter, r *http.Request, gid string, factor float64, force bool) {
	if factor < 0 || math.IsNaN(factor) || math.IsInf(factor, 0) {
		writeViolations(w, "", []appmodel.Violation{{Field: "scaleBy", Description: "must be a number >= 0"}})
		return
	}
	apps, ok := a.appsUnder(w, r, gid)
	if !ok {
		return
	}
	var depID, version string
	for _, app := range apps {
		n := int32(math.Ceil(float64(appmodel.Instances(app)) * factor))
		res, err := a.apps.UpdateApp(r.Context(), call(r, &v1.UpdateAppRequest{Id: app.GetId(), App: &v1.App{Instances: proto.Int32(n)}, Partial: true, Force: force}))
		if err != nil {
			a.writeError(w, r, err, failure{notFound: appNotFound(app.GetId()), apps: []string{app.GetId()}})
			return
		}
		if res.Msg.GetDeploymentId() != "" {
			depID, version = res.Msg.GetDeploymentId(), res.Msg.GetApp().GetVersion()
		}
	}
	a.writeDeployment(w, r, http.StatusOK, depID, version)
}

// deleteGroup serves DELETE /v2/groups/{id}: every app under it is
// removed (force defaults to false, as Marathon's).
func (a *API) deleteGroup(w http.ResponseWriter, r *http.Request, gid string) {
	params, ok := boolParams(w, r, map[string]bool{"force": false})
	if !ok {
		return
	}
	apps, ok := a.appsUnder(w, r, gid)
	if !ok {
		return
	}
	var depID string
	for _, app := range apps {
		res, err := a.apps.DeleteApp(r.Context(), call(r, &v1.DeleteAppRequest{Id: app.GetId(), Force: params["force"]}))
		if err != nil {
			a.writeError(w, r, err, failure{notFound: appNotFound(app.GetId()), apps: []string{app.GetId()}})
			return
		}
		depID = res.Msg.GetDeploymentId()
	}
	a.writeDeployment(w, r, http.StatusOK, depID, "")
}

// getGroupApps serves GET /v2/apps/{group}/*: {"*": [AppInfo...]} of every
// app under the group, with their tasks.
func (a *API) getGroupApps(w http.ResponseWriter, r *http.Request, gid string) {
	if gid == "" {
		gid = "/"
	}
	apps, sums, ok := a.groupApps(w, r, gid)
	if !ok {
		return
	}
	tasks, err := a.tasksByApp(r, "", false)
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	infos, err := appInfos(apps, sums, tasks)
	if err != nil {
		writeMessage(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeRaw(w, http.StatusOK, wrapList("*", infos))
}

// groupTasks serves GET /v2/apps/{group}/*/tasks: the tasks of every app
// under the group.
func (a *API) groupTasks(w http.ResponseWriter, r *http.Request, gid string) {
	if gid == "" {
		gid = "/"
	}
	if _, ok := a.appsUnder(w, r, gid); !ok {
		return
	}
	byApp, err := a.tasksByApp(r, "", false)
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	tasks := []Task{}
	for appID, ts := range byApp {
		if appmodel.UnderGroup(appID, gid) {
			tasks = append(tasks, ts...)
		}
	}
	sort.Slice(tasks, func(i, j int) bool { return tasks[i].ID < tasks[j].ID })
	writeJSON(w, http.StatusOK, map[string][]Task{"tasks": tasks})
}
