package marathon_test

import (
	"net/http"
	"strings"
	"testing"
)

// An app's life through /v2/apps: create (201, Location, deployment
// header, the AppInfo), list with filters and label selectors, show, the
// 409 of a locked app (with its deployments) and of a duplicate, an
// update with force, PUT that creates, PATCH that does not, versions,
// restart and delete.
func TestAppsLifecycle(t *testing.T) {
	s := startCluster(t, 1)[0]
	r := want(t, do(t, s, "POST", "/v2/apps", `{"id": "/db/pg", "cmd": "sleep 100", "instances": 1, "labels": {"tier": "db"}}`), 201, "create")
	if loc := r.header.Get("Location"); loc != "/v2/apps/db/pg" {
		t.Errorf("Location = %q", loc)
	}
	dep := r.header.Get("Marathon-Deployment-Id")
	created := r.obj(t)
	if created["id"] != "/db/pg" || created["tasksRunning"] != 0.0 || created["versionInfo"] != nil || created["version"] == nil {
		t.Errorf("created app = %v", created)
	}
	if deps, _ := created["deployments"].([]any); len(deps) != 1 || deps[0].(map[string]any)["id"] != dep || dep == "" {
		t.Errorf("created deployments = %v, header %q", created["deployments"], dep)
	}
	want(t, do(t, s, "POST", "/v2/apps", `{"id": "/web", "cmd": "python3 -m http.server", "labels": {"tier": "front"}}`), 201, "create web")

	var list struct {
		Apps []map[string]any
	}
	want(t, do(t, s, "GET", "/v2/apps", nil), 200, "list").json(t, &list)
	if len(list.Apps) != 2 {
		t.Fatalf("apps = %v", list.Apps)
	}
	for _, q := range []struct{ query, want string }{
		{"label=tier==db", "/db/pg"},
		{"label=tier!=db", "/web"},
		{"label=tier+in+(front,x)", "/web"},
		{"id=db", "/db/pg"},
		{"cmd=http", "/web"},
	} {
		want(t, do(t, s, "GET", "/v2/apps?"+q.query, nil), 200, q.query).json(t, &list)
		if len(list.Apps) != 1 || list.Apps[0]["id"] != q.want {
			t.Errorf("%s: apps = %v, want %s", q.query, list.Apps, q.want)
		}
	}
	want(t, do(t, s, "GET", "/v2/apps?embed=apps.tasks&embed=apps.counts", nil), 200, "embed").json(t, &list)
	if list.Apps[0]["tasks"] == nil || list.Apps[0]["tasksStaged"] == nil {
		t.Errorf("embedded tasks and counts missing: %v", list.Apps[0])
	}
	want(t, do(t, s, "GET", "/v2/apps?label=tier+in+(", nil), 422, "bad selector")

	var one struct{ App map[string]any }
	want(t, do(t, s, "GET", "/v2/apps/db/pg", nil), 200, "get").json(t, &one)
	if one.App["id"] != "/db/pg" || one.App["tasks"] == nil || one.App["deployments"] == nil || one.App["versionInfo"] == nil {
		t.Errorf("app = %v", one.App)
	}
	r = want(t, do(t, s, "GET", "/v2/apps/nope", nil), 404, "get missing")
	if m := r.obj(t)["message"]; m != "App '/nope' does not exist" {
		t.Errorf("404 message = %v", m)
	}

	// The create deployment still runs (no scheduler): the app is locked.
	r = want(t, do(t, s, "PUT", "/v2/apps/db/pg", `{"instances": 2}`), 409, "locked update")
	locked := r.obj(t)
	if deps, _ := locked["deployments"].([]any); len(deps) != 1 || deps[0].(map[string]any)["id"] != dep ||
		!strings.Contains(locked["message"].(string), "locked") {
		t.Errorf("409 body = %v", locked)
	}
	r = want(t, do(t, s, "POST", "/v2/apps", `{"id": "/db/pg", "cmd": "sleep 1"}`), 409, "duplicate")
	if m := r.obj(t)["message"]; m != "An app with id [/db/pg] already exists." {
		t.Errorf("duplicate message = %v", m)
	}
	r = want(t, do(t, s, "PUT", "/v2/apps/db/pg?force=true", `{"instances": 2}`), 200, "forced update")
	res := r.obj(t)
	if res["deploymentId"] == "" || res["version"] == "" || r.header.Get("Marathon-Deployment-Id") != res["deploymentId"] {
		t.Errorf("deployment result = %v, header %q", res, r.header.Get("Marathon-Deployment-Id"))
	}
	want(t, do(t, s, "GET", "/v2/apps/db/pg", nil), 200, "get").json(t, &one)
	if one.App["instances"] != 2.0 || one.App["cmd"] != "sleep 100" {
		t.Errorf("partial update: %v", one.App)
	}

	// PUT creates a missing app (201 + Location); PATCH does not.
	r = want(t, do(t, s, "PUT", "/v2/apps/new", `{"cmd": "sleep 5"}`), 201, "put creates")
	if r.header.Get("Location") != "/v2/apps/new" || r.obj(t)["deploymentId"] == "" {
		t.Errorf("put-create: %v %s", r.header, r.body)
	}
	want(t, do(t, s, "PATCH", "/v2/apps/absent", `{"instances": 1}`), 404, "patch missing")

	var versions struct{ Versions []string }
	want(t, do(t, s, "GET", "/v2/apps/db/pg/versions", nil), 200, "versions").json(t, &versions)
	if len(versions.Versions) != 2 {
		t.Fatalf("versions = %v", versions.Versions)
	}
	var old map[string]any
	want(t, do(t, s, "GET", "/v2/apps/db/pg/versions/"+versions.Versions[1], nil), 200, "old version").json(t, &old)
	if old["instances"] != 1.0 || old["tasksRunning"] != nil {
		t.Errorf("version %s = %v (want the bare app with 1 instance)", versions.Versions[1], old)
	}
	want(t, do(t, s, "GET", "/v2/apps/db/pg/versions/2001-01-01T00:00:00Z", nil), 404, "unknown version")
	// Rollback: {"version": v} restores that version; version with other
	// fields is refused.
	want(t, do(t, s, "PUT", "/v2/apps/db/pg?force=true", `{"version": "`+versions.Versions[1]+`"}`), 200, "rollback")
	want(t, do(t, s, "GET", "/v2/apps/db/pg", nil), 200, "get").json(t, &one)
	if one.App["instances"] != 1.0 {
		t.Errorf("after rollback instances = %v", one.App["instances"])
	}
	want(t, do(t, s, "PUT", "/v2/apps/db/pg?force=true", `{"version": "x", "cmd": "y"}`), 422, "version with cmd")

	want(t, do(t, s, "POST", "/v2/apps/db/pg/restart", nil), 409, "restart while locked")
	want(t, do(t, s, "POST", "/v2/apps/db/pg/restart?force=true", nil), 200, "restart")
	want(t, do(t, s, "POST", "/v2/apps/nope/restart", nil), 404, "restart missing")
	want(t, do(t, s, "POST", "/v2/apps/db/pg/restart?force=maybe", nil), 400, "bad bool")

	// Batch update: one app updated, one created.
	want(t, do(t, s, "PUT", "/v2/apps?force=true", `[{"id": "/web", "instances": 3}, {"id": "/batch", "cmd": "sleep 1"}]`), 200, "batch")
	want(t, do(t, s, "GET", "/v2/apps/batch", nil), 200, "batch-created app")
	want(t, do(t, s, "PATCH", "/v2/apps", `[{"instances": 3}]`), 422, "batch without id")

	// DELETE defaults to force=true.
	r = want(t, do(t, s, "DELETE", "/v2/apps/db/pg", nil), 200, "delete")
	if res := r.obj(t); res["deploymentId"] == "" || res["version"] == "" {
		t.Errorf("delete result = %v", res)
	}
	want(t, do(t, s, "GET", "/v2/apps/db/pg", nil), 404, "deleted")
	want(t, do(t, s, "DELETE", "/v2/apps/db/pg", nil), 404, "delete again")
}

// Errors name the JSON path in Marathon's shape: 400 for text that is
// not JSON, 422 with details[].path for fields that do not fit the schema
// and for validation.
func TestAppErrors(t *testing.T) {
	s := startCluster(t, 1)[0]
	r := want(t, do(t, s, "POST", "/v2/apps", `{"id": "/x", "cmd": `), 400, "not JSON")
	if m := r.obj(t); m["message"] != "Invalid JSON" || m["details"] == "" {
		t.Errorf("400 body = %v", m)
	}
	type details struct {
		Message string
		Details []struct {
			Path   string
			Errors []string
		}
	}
	var d details
	want(t, do(t, s, "POST", "/v2/apps", `{"id": "/x", "cmd": "c", "instaces": 2}`), 422, "unknown field").json(t, &d)
	if d.Message != "Invalid JSON" || len(d.Details) != 1 || d.Details[0].Path != "/instaces" || !strings.Contains(d.Details[0].Errors[0], "instances") {
		t.Errorf("unknown field: %+v", d)
	}
	want(t, do(t, s, "POST", "/v2/apps", `{"id": "/x", "cmd": "c", "container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": "big"}}]}}`), 422, "mistyped").json(t, &d)
	if len(d.Details) != 1 || d.Details[0].Path != "/container/volumes(0)/persistent/size" {
		t.Errorf("mistyped field: %+v", d)
	}
	want(t, do(t, s, "POST", "/v2/apps", `{"id": "/x", "cmd": "c", "upgradeStrategy": {"minimumHealthCapacity": 1.5}}`), 422, "invalid").json(t, &d)
	if d.Message != "Object is not valid" || len(d.Details) != 1 || d.Details[0].Path != "/upgradeStrategy/minimumHealthCapacity" || len(d.Details[0].Errors) == 0 {
		t.Errorf("validation: %+v", d)
	}
	want(t, do(t, s, "POST", "/v2/apps", `{"cmd": "c"}`), 422, "no id")
	want(t, do(t, s, "GET", "/v2/nothing", nil), 404, "unknown route")
	want(t, do(t, s, "DELETE", "/v2/apps", nil), http.StatusMethodNotAllowed, "method")
}
