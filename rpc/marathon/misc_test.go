package marathon_test

import (
	"testing"
)

// Deployments: listed as Marathon's array; DELETE with force stops one
// (202), without force rolls it back (the app returns to its previous
// version, or is removed if the deployment created it).
func TestDeployments(t *testing.T) {
	s := startCluster(t, 1)[0]
	want(t, do(t, s, "POST", "/v2/apps", `{"id": "/a", "cmd": "sleep 1", "instances": 1}`), 201, "create")
	var deps []struct {
		ID, Version  string
		AffectedApps []string
		Steps        []struct {
			Actions []struct{ Action, App string }
		}
		TotalSteps int
	}
	want(t, do(t, s, "GET", "/v2/deployments", nil), 200, "list").json(t, &deps)
	if len(deps) != 1 || deps[0].AffectedApps[0] != "/a" || deps[0].TotalSteps != 1 || deps[0].Steps[0].Actions[0].Action != "StartApplication" {
		t.Fatalf("deployments = %+v", deps)
	}
	created := deps[0].ID
	r := want(t, do(t, s, "DELETE", "/v2/deployments/nope", nil), 404, "unknown")
	if m := r.obj(t)["message"]; m != "DeploymentPlan nope does not exist" {
		t.Errorf("404 = %v", m)
	}
	// Update (forced), then roll the update back: instances return to 1.
	want(t, do(t, s, "PUT", "/v2/apps/a?force=true", `{"instances": 3}`), 200, "update")
	want(t, do(t, s, "GET", "/v2/deployments", nil), 200, "list").json(t, &deps)
	if len(deps) != 1 || deps[0].ID == created {
		t.Fatalf("deployments after forced update = %+v", deps)
	}
	r = want(t, do(t, s, "DELETE", "/v2/deployments/"+deps[0].ID, nil), 200, "rollback")
	if res := r.obj(t); res["deploymentId"] == "" || res["deploymentId"] == deps[0].ID {
		t.Errorf("rollback result = %v", res)
	}
	var one struct{ App map[string]any }
	want(t, do(t, s, "GET", "/v2/apps/a", nil), 200, "get").json(t, &one)
	if one.App["instances"] != 1.0 {
		t.Errorf("after rollback instances = %v", one.App["instances"])
	}
	want(t, do(t, s, "GET", "/v2/deployments", nil), 200, "list").json(t, &deps)
	if len(deps) != 1 {
		t.Fatalf("deployments = %+v", deps)
	}
	r = want(t, do(t, s, "DELETE", "/v2/deployments/"+deps[0].ID+"?force=true", nil), 202, "cancel")
	if len(r.body) != 0 {
		t.Errorf("202 with a body: %s", r.body)
	}
	want(t, do(t, s, "GET", "/v2/deployments", nil), 200, "list").json(t, &deps)
	if len(deps) != 0 {
		t.Errorf("deployments after cancel = %+v", deps)
	}
	// A rollback of the create deployment removes the app.
	want(t, do(t, s, "POST", "/v2/apps", `{"id": "/b", "cmd": "sleep 1"}`), 201, "create b")
	want(t, do(t, s, "GET", "/v2/deployments", nil), 200, "list").json(t, &deps)
	want(t, do(t, s, "DELETE", "/v2/deployments/"+deps[0].ID, nil), 200, "rollback create")
	want(t, do(t, s, "GET", "/v2/apps/b", nil), 404, "rolled-back create")
}

// Groups: a group body's apps are created in dependency order, relative
// ids resolved; GET builds the tree; a cycle is refused.
func TestGroups(t *testing.T) {
	s := startCluster(t, 1)[0]
	r := want(t, do(t, s, "POST", "/v2/groups", `{"id": "/shop", "apps": [
		{"id": "web", "cmd": "sleep 1", "dependencies": ["db"]},
		{"id": "db", "cmd": "sleep 1"}],
		"groups": [{"id": "cache", "apps": [{"id": "redis", "cmd": "sleep 1"}]}]}`), 201, "create group")
	if r.header.Get("Location") != "/v2/groups/shop" || r.obj(t)["deploymentId"] == "" {
		t.Errorf("create group: %v %s", r.header, r.body)
	}
	var versions struct{ Versions []string }
	want(t, do(t, s, "GET", "/v2/apps/shop/db/versions", nil), 200, "db").json(t, &versions)
	db := versions.Versions[0]
	want(t, do(t, s, "GET", "/v2/apps/shop/web/versions", nil), 200, "web").json(t, &versions)
	if web := versions.Versions[0]; !(db < web) {
		t.Errorf("db (%s) should be created before web (%s), its dependent", db, web)
	}
	type group struct {
		ID     string
		Apps   []struct{ ID string }
		Groups []group
	}
	var root group
	want(t, do(t, s, "GET", "/v2/groups", nil), 200, "root").json(t, &root)
	if root.ID != "/" || len(root.Groups) != 1 || root.Groups[0].ID != "/shop" || len(root.Groups[0].Apps) != 2 ||
		len(root.Groups[0].Groups) != 1 || root.Groups[0].Groups[0].ID != "/shop/cache" || root.Groups[0].Groups[0].Apps[0].ID != "/shop/cache/redis" {
		t.Errorf("tree = %+v", root)
	}
	var sub group
	want(t, do(t, s, "GET", "/v2/groups/shop/cache", nil), 200, "sub").json(t, &sub)
	if sub.ID != "/shop/cache" || len(sub.Apps) != 1 {
		t.Errorf("subgroup = %+v", sub)
	}
	r = want(t, do(t, s, "GET", "/v2/groups/none", nil), 404, "missing group")
	if m := r.obj(t)["message"]; m != "Group '/none' does not exist" {
		t.Errorf("404 = %v", m)
	}
	want(t, do(t, s, "POST", "/v2/groups", `{"id": "/shop", "apps": [{"id": "x", "cmd": "sleep 1"}]}`), 409, "group exists")
	var star map[string][]struct{ ID string }
	want(t, do(t, s, "GET", "/v2/apps/shop/cache/*", nil), 200, "apps of a group").json(t, &star)
	if len(star["*"]) != 1 || star["*"][0].ID != "/shop/cache/redis" {
		t.Errorf("/v2/apps/shop/cache/* = %+v", star)
	}
	want(t, do(t, s, "GET", "/v2/apps/shop/*/tasks", nil), 200, "tasks of a group")
	want(t, do(t, s, "GET", "/v2/apps/none/*", nil), 404, "apps of a missing group")
	r = want(t, do(t, s, "POST", "/v2/groups", `{"id": "/loop", "apps": [{"id": "a", "cmd": "c", "dependencies": ["b"]}, {"id": "b", "cmd": "c", "dependencies": ["a"]}]}`), 422, "cycle")
	if m := r.obj(t)["message"]; m != "Dependency graph has cyclic dependencies." {
		t.Errorf("cycle = %v", m)
	}
	var d struct{ Details []struct{ Path string } }
	want(t, do(t, s, "POST", "/v2/groups", `{"id": "/bad", "apps": [{"id": "ok", "cmd": "c"}, {"id": "x", "cmd": "c", "mem": "lots"}]}`), 422, "bad app").json(t, &d)
	if len(d.Details) != 1 || d.Details[0].Path != "/apps(1)/mem" {
		t.Errorf("bad app in group: %+v", d)
	}
	// PUT updates (force: the create deployments still run) and creates.
	want(t, do(t, s, "PUT", "/v2/groups/shop?force=true", `{"apps": [{"id": "db", "cmd": "sleep 2"}, {"id": "new", "cmd": "sleep 1"}]}`), 200, "put group")
	want(t, do(t, s, "GET", "/v2/apps/shop/new", nil), 200, "created by PUT")
	want(t, do(t, s, "PUT", "/v2/groups/shop?force=true", `{"scaleBy": 2}`), 200, "scaleBy")
	var one struct{ App struct{ Instances int } }
	want(t, do(t, s, "GET", "/v2/apps/shop/db", nil), 200, "db").json(t, &one)
	if one.App.Instances != 2 {
		t.Errorf("scaled db instances = %d", one.App.Instances)
	}
	want(t, do(t, s, "DELETE", "/v2/groups/shop?force=true", nil), 200, "delete group")
	want(t, do(t, s, "GET", "/v2/groups/shop", nil), 404, "deleted group")
}

// Info, leader and ping on a 3-server cluster: every server names the
// leader; DELETE /v2/leader moves leadership.
func TestInfoLeaderPing(t *testing.T) {
	servers := startCluster(t, 3)
	leader, follower := leaderOf(servers), followerOf(servers)
	r := want(t, do(t, follower, "GET", "/ping", nil), 200, "ping")
	if string(r.body) != "pong\n" {
		t.Errorf("ping = %q", r.body)
	}
	var info struct {
		Name, Leader string
		Elected      bool
	}
	want(t, do(t, follower, "GET", "/v2/info", nil), 200, "info").json(t, &info)
	if info.Name != "berth" || info.Leader != leader.addr || info.Elected {
		t.Errorf("follower info = %+v", info)
	}
	want(t, do(t, leader, "GET", "/v2/info", nil), 200, "info").json(t, &info)
	if !info.Elected {
		t.Errorf("leader info = %+v", info)
	}
	var l struct{ Leader string }
	want(t, do(t, follower, "GET", "/v2/leader", nil), 200, "leader").json(t, &l)
	if l.Leader != leader.addr {
		t.Errorf("leader = %q, want %s", l.Leader, leader.addr)
	}
	r = want(t, do(t, follower, "DELETE", "/v2/leader", nil), 200, "abdicate")
	if m := r.obj(t)["message"]; m != "Leadership abdicated" {
		t.Errorf("abdicate = %v", m)
	}
	waitFor(t, 20e9, "a new leader", func() error {
		if nl := leaderOf(servers); nl == nil || nl == leader {
			return errorf("leader still %s", leader.name)
		}
		return nil
	})
}
