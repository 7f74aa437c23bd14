package scheduler

import (
	"testing"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestDependenciesOrderStart: deployed together (a group written through
// /v2/groups), an app that depends on another starts only once that one
// runs all its instances healthy, as Marathon's deployment plan puts a
// dependent app's StartApplication in a step after its dependencies'
// (docs/docs/application-groups.md, "Dependencies").
func TestDependenciesOrderStart(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	db := residentApp("/shop/db", "v1", 1)
	db.HealthChecks = []*v1.HealthCheck{{Protocol: proto.String("TCP"), PortIndex: proto.Int32(0)}}
	web := statelessApp("/shop/web", "v1", 2)
	web.Dependencies = []string{"/shop/db"}
	h.store.putApp(db, "d-db")
	h.store.putApp(web, "d-web")
	h.settle()
	if n := len(h.instancesOf("/shop/web")); n != 0 {
		t.Fatalf("/shop/web has %d instances before /shop/db is healthy", n)
	}
	dbTask := h.only("/shop/db").GetTask()
	if dbTask.GetState() != stRunning {
		t.Fatalf("db task %v", dbTask)
	}
	h.decide(HealthResult{TaskID: dbTask.GetId(), Healthy: true})
	h.settle()
	if n := len(h.instancesOf("/shop/web")); n != 2 {
		t.Fatalf("/shop/web has %d instances once /shop/db is healthy, want 2", n)
	}
	// Once deployed, a dependency going down does not stop its dependents
	// (dependencies order deployments only).
	h.decide(HealthResult{TaskID: dbTask.GetId(), Healthy: false})
	h.settle()
	for _, i := range h.instancesOf("/shop/web") {
		if goalOf(i) != v1.Goal_GOAL_RUNNING || !taskLive(i.GetTask()) {
			t.Fatalf("web instance after db unhealthy: %v", i)
		}
	}
}

// A dependency on a group waits for every app under it; a dependency on an
// app Berth does not know is taken to exist.
func TestDependencyOnGroupAndUnknown(t *testing.T) {
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	cache := statelessApp("/infra/cache", "v1", 1)
	cache.Cmd = proto.String("sleep 1000")
	api := statelessApp("/api", "v1", 1)
	api.Dependencies = []string{"/infra", "/elsewhere/ldap"}
	h.store.putApp(cache, "d-cache")
	h.store.putApp(api, "d-api")
	h.tick()
	if n := len(h.instancesOf("/api")); n != 0 {
		t.Fatalf("/api created before /infra runs: %d", n)
	}
	h.settle()
	if n := len(h.instancesOf("/api")); n != 1 {
		t.Fatalf("/api has %d instances once /infra/cache runs", n)
	}
}
