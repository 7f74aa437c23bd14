package marathon_test

import (
	"strings"
	"testing"
)

// Through /v2: a Marathon file with an app check, linuxInfo and an empty
// portDefinitions is created and given back whole; PATCH with [] clears a
// list; a broken check is a 422 naming its path; an external volume is
// refused with its path.
func TestAppFieldGroupsREST(t *testing.T) {
	s := startCluster(t, 1)[0]
	want(t, do(t, s, "POST", "/v2/apps", `{"id": "/checked", "cmd": "sleep 100", "instances": 0,
		"portDefinitions": [{"port": 0, "name": "http"}],
		"check": {"http": {"portIndex": 0, "path": "/", "scheme": "HTTP"}, "intervalSeconds": 10, "timeoutSeconds": 5, "delaySeconds": 15},
		"container": {"type": "MESOS", "linuxInfo": {"seccomp": {"profileName": "x", "unconfined": false}, "ipcInfo": {"mode": "PRIVATE", "shmSize": 16}}}}`), 201, "create")

	var one struct{ App map[string]any }
	want(t, do(t, s, "GET", "/v2/apps/checked", nil), 200, "get").json(t, &one)
	check, _ := one.App["check"].(map[string]any)
	linux, _ := one.App["container"].(map[string]any)["linuxInfo"].(map[string]any)
	if check["intervalSeconds"] != 10.0 || check["http"] == nil || linux["ipcInfo"].(map[string]any)["shmSize"] != 16.0 {
		t.Fatalf("app = %v", one.App)
	}

	want(t, do(t, s, "PATCH", "/v2/apps/checked?force=true", `{"portDefinitions": [], "check": {"exec": {"command": {"shell": "true"}}}}`), 200, "patch")
	want(t, do(t, s, "GET", "/v2/apps/checked", nil), 200, "get patched").json(t, &one)
	if pds, ok := one.App["portDefinitions"].([]any); !ok || len(pds) != 0 {
		t.Errorf("portDefinitions after PATCH with [] = %v, want []", one.App["portDefinitions"])
	}

	type details struct {
		Details []struct {
			Path   string
			Errors []string
		}
	}
	var d details
	want(t, do(t, s, "POST", "/v2/apps", `{"id": "/bad", "cmd": "c", "check": {"http": {"portIndex": 0}, "tcp": {"portIndex": 0}}}`), 422, "two check kinds").json(t, &d)
	if len(d.Details) != 1 || d.Details[0].Path != "/check" {
		t.Errorf("two check kinds: %+v", d)
	}
	want(t, do(t, s, "POST", "/v2/apps", `{"id": "/ext", "cmd": "c", "container": {"type": "MESOS",
		"volumes": [{"containerPath": "d", "mode": "RW", "external": {"name": "v", "provider": "dvdi", "options": {"dvdi/driver": "rexray"}}}]}}`), 422, "external volume").json(t, &d)
	if len(d.Details) != 1 || d.Details[0].Path != "/container/volumes(0)/external" || !strings.Contains(d.Details[0].Errors[0], "not supported") {
		t.Errorf("external volume: %+v", d)
	}
}
