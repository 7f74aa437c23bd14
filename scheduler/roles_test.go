package scheduler

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// describeResources renders a task's resources as "name:amount@kind",
// kind being "*" (unreserved) or "<role>/<STATIC|DYNAMIC>", sorted.
func describeResources(rs []mesos.Resource) []string {
	var out []string
	for i := range rs {
		r := &rs[i]
		kind := "*"
		if !isUnreserved(r) {
			ri := currentReservation(r)
			kind = ri.GetRole() + "/" + ri.GetType().String()
		}
		amount := formatFloat(scalarOf(r))
		if r.Ranges != nil {
			amount = fmt.Sprint(r.Ranges.Range)
		}
		out = append(out, r.Name+":"+amount+"@"+kind)
	}
	sort.Strings(out)
	return out
}

// launchedFor returns the TaskInfos launched for an app's instances.
func launchedFor(h *harness, appID string) []mesos.TaskInfo {
	prefix := appSlug(appID) + ".instance-"
	var out []mesos.TaskInfo
	for _, ti := range h.master.launched {
		if strings.HasPrefix(ti.TaskID.Value, prefix) {
			out = append(out, ti)
		}
	}
	return out
}

func withRoles(a *v1.App, roles ...string) *v1.App {
	a.AcceptedResourceRoles = roles
	return a
}

// An agent whose cpus and mem are all statically reserved for the
// framework's role: a stateless app with the default acceptedResourceRoles
// (unreserved only) waits; one that accepts ["berth"] runs there, on the
// reserved resources.
func TestStatelessAppUsesResourcesReservedForAcceptedRole(t *testing.T) {
	h := newHarness(t)
	a1 := h.master.addAgent("A1", "host1", 0, 0, 1000, 31000, 31000, nil)
	a1.addPool("berth", false, 2, 1024, 32000, 32010)
	h.store.putApp(statelessApp("/plain", "v1", 1), "d-plain")
	h.store.putApp(withRoles(statelessApp("/reserved", "v1", 1), "berth"), "d-reserved")
	h.settle()

	if live, _ := countLive(h, "/plain"); live != 0 {
		t.Fatalf("an app accepting only unreserved resources ran on reserved ones")
	}
	if deploymentStatus(h, "d-plain") != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
		t.Fatalf("d-plain %v", h.store.deployment("d-plain"))
	}
	i := h.only("/reserved")
	if i.Task.State != stRunning || deploymentStatus(h, "d-reserved") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("reserved-role app: %v, deployment %v", i, h.store.deployment("d-reserved"))
	}
	tis := launchedFor(h, "/reserved")
	want := []string{"cpus:0.25@berth/STATIC", "mem:32@berth/STATIC", "ports:[{32000 32000}]@berth/STATIC"}
	if got := describeResources(tis[0].Resources); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("task resources %v, want %v", got, want)
	}
	if i.Task.Ports[0] != 32000 || len(h.master.reservations()) != 0 {
		t.Fatalf("ports %v, reservations %v", i.Task.Ports, h.master.reservations())
	}
	// The task's end gives the reserved resources back to the pool.
	h.master.crash(i.Task.Id)
	h.deliver()
	if p := a1.pools[0]; p.cpus != 2 || p.mem != 1024 {
		t.Fatalf("pool after the task ended: %+v", p)
	}
}

// Only the roles listed are used: ["*"] never takes reserved resources,
// ["berth"] never takes unreserved ones, and ["*", "berth"] takes reserved
// ones first, then unreserved ones for the rest.
func TestAcceptedResourceRolesAreExact(t *testing.T) {
	for _, tc := range []struct {
		roles     []string
		instances int32
		want      [][]string // per launched task, in launch order
	}{
		{[]string{"*"}, 1, [][]string{{"cpus:0.25@*", "mem:32@*", "ports:[{31000 31000}]@*"}}},
		{[]string{"berth"}, 2, [][]string{{"cpus:0.25@berth/STATIC", "mem:32@berth/STATIC", "ports:[{32000 32000}]@berth/STATIC"}}},
		{[]string{"*", "berth"}, 2, [][]string{
			{"cpus:0.25@berth/STATIC", "mem:32@berth/STATIC", "ports:[{32000 32000}]@berth/STATIC"},
			{"cpus:0.05@berth/STATIC", "cpus:0.2@*", "mem:32@berth/STATIC", "ports:[{31000 31000}]@*"},
		}},
	} {
		t.Run(strings.Join(tc.roles, ","), func(t *testing.T) {
			h := newHarness(t)
			a1 := h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
			a1.addPool("berth", false, 0.3, 64, 32000, 32000)
			h.store.putApp(withRoles(statelessApp("/web", "v1", tc.instances), tc.roles...), "")
			h.settle()
			tis := launchedFor(h, "/web")
			if len(tis) != len(tc.want) {
				t.Fatalf("%d tasks launched, want %d", len(tis), len(tc.want))
			}
			for k, ti := range tis {
				if got := describeResources(ti.Resources); fmt.Sprint(got) != fmt.Sprint(tc.want[k]) {
					t.Errorf("task %d: %v, want %v", k, got, tc.want[k])
				}
			}
		})
	}
}

// Another principal's dynamic reservation for the role, without Berth
// labels, is usable too; Berth's own labelled berths never are, even
// stopped ones, and they stay untouched.
func TestReservedRoleResourcesExcludeBerths(t *testing.T) {
	h := newHarness(t)
	// A1 holds exactly one resident berth and nothing else.
	h.master.addAgent("A1", "host1", 0.5, 64, 110, 31000, 31000, nil)
	pg := residentApp("/pg", "v1", 1)
	h.store.putApp(pg, "")
	h.settle()
	berth := h.only("/pg")
	h.store.putApp(withInstances(pg, "v2", 0), "")
	h.settle()
	if goalOf(h.only("/pg")) != v1.Goal_GOAL_STOPPED || len(h.master.reservations()) != 1 {
		t.Fatalf("berth not kept on stop: %v", h.master.reservations())
	}
	h.store.putApp(withRoles(statelessApp("/web", "v1", 1), "berth"), "d-web")
	h.settle()
	if n := len(launchedFor(h, "/web")); n != 0 {
		t.Fatalf("stateless app launched on a berth's labelled resources")
	}
	if r := h.master.reservations(); len(r) != 1 || !strings.HasPrefix(r[0], berth.Id+"@A1") {
		t.Fatalf("berth disturbed: %v", r)
	}
	// An operator's dynamic reservation for the role on a second agent.
	a2 := h.master.addAgent("A2", "host2", 0, 0, 0, 31000, 31000, nil)
	a2.addPool("berth", true, 1, 256, 33000, 33005)
	h.settle()
	tis := launchedFor(h, "/web")
	if len(tis) != 1 || tis[0].AgentID.Value != "A2" {
		t.Fatalf("launched %v", tis)
	}
	want := []string{"cpus:0.25@berth/DYNAMIC", "mem:32@berth/DYNAMIC", "ports:[{33000 33000}]@berth/DYNAMIC"}
	if got := describeResources(tis[0].Resources); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("task resources %v, want %v", got, want)
	}
	if ri := currentReservation(&tis[0].Resources[0]); ri.GetPrincipal() != "ops" {
		t.Fatalf("reservation not passed through unchanged: %v", ri)
	}
	if deploymentStatus(h, "d-web") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("d-web %v", h.store.deployment("d-web"))
	}
}

// Resident apps reserve from unreserved resources only, whatever is
// reserved for the role.
func TestResidentAppIgnoresRoleReservations(t *testing.T) {
	h := newHarness(t)
	a1 := h.master.addAgent("A1", "host1", 0.1, 64, 1000, 31000, 31010, nil)
	a1.addPool("berth", false, 4, 1024, 32000, 32010)
	h.store.putApp(residentApp("/pg", "v1", 1), "d1")
	h.settle()
	if n := len(launchedFor(h, "/pg")); n != 0 || len(h.master.reservations()) != 0 {
		t.Fatalf("resident app used role-reserved resources: %d launches, %v", n, h.master.reservations())
	}
	h.master.addAgent("A2", "host2", 4, 1024, 1000, 31000, 31010, nil)
	h.settle()
	if i := h.only("/pg"); i.Reservation.AgentId != "A2" || i.Task.State != stRunning {
		t.Fatalf("resident instance %v", i)
	}
}

// An app.role other than the framework's is refused at placement: the
// deployment fails with a message naming the role, and nothing launches.
// So is an acceptedResourceRoles list naming no role the framework is
// offered.
func TestUnservableRolesFailTheDeployment(t *testing.T) {
	for _, tc := range []struct {
		name string
		app  func() *v1.App
		want []string
	}{
		{"app role", func() *v1.App {
			a := statelessApp("/web", "v1", 1)
			a.Role = proto.String("analytics")
			return a
		}, []string{`role "analytics"`, `framework's role "berth"`}},
		{"accepted roles", func() *v1.App { return withRoles(statelessApp("/web", "v1", 1), "slave_public") }, []string{"acceptedResourceRoles", "slave_public"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			a1 := h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
			a1.addPool("berth", false, 1, 256, 32000, 32010)
			h.store.putApp(tc.app(), "d1")
			h.settle()
			d := h.store.deployment("d1")
			if d.GetStatus() != v1.DeploymentStatus_DEPLOYMENT_STATUS_FAILED {
				t.Fatalf("deployment %v", d)
			}
			for _, w := range tc.want {
				if !strings.Contains(d.GetMessage(), w) {
					t.Fatalf("deployment message %q does not name %q", d.GetMessage(), w)
				}
			}
			if n := len(launchedFor(h, "/web")); n != 0 {
				t.Fatalf("%d tasks launched", n)
			}
			found := false
			for _, e := range h.events {
				if strings.HasPrefix(e.Message, "cannot place: ") && strings.Contains(e.Message, tc.want[0]) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no cannot-place event: %v", h.eventTypes())
			}
		})
	}
	// The framework's own role is fine.
	h := newHarness(t)
	h.master.addAgent("A1", "host1", 4, 1024, 1000, 31000, 31010, nil)
	a := statelessApp("/web", "v1", 1)
	a.Role = proto.String("berth")
	h.store.putApp(a, "d1")
	h.settle()
	if deploymentStatus(h, "d1") != v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED {
		t.Fatalf("app with the framework's role: %v", h.store.deployment("d1"))
	}
}
