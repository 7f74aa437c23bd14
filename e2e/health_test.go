package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMixedHealthChecksDev: on `berth dev`, an app with a Marathon-level
// HTTP check (probed by the leader) and a COMMAND check (run by
// mesos-local, reported in status updates) becomes healthy once both pass;
// /v2/apps/{id}/tasks shows one healthCheckResults entry per check, and
// `berth task show` each check's result.
func TestMixedHealthChecksDev(t *testing.T) {
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "1")
	waitAPI(t, api)
	mustCLI(t, api, "app", "add", writeFile(t, "web.json", `{"id": "/web", "cmd": "exec python3 -m http.server $PORT0", "cpus": 0.05, "mem": 32,
		"portDefinitions": [{"port": 0}],
		"healthChecks": [
			{"protocol": "HTTP", "path": "/", "portIndex": 0, "intervalSeconds": 1, "gracePeriodSeconds": 30},
			{"protocol": "COMMAND", "command": {"value": "test -d ."}, "intervalSeconds": 1, "gracePeriodSeconds": 30, "delaySeconds": 0}
		]}`), "--wait")

	var tasks struct {
		Tasks []struct {
			ID                 string `json:"id"`
			HealthCheckResults []struct {
				Alive       bool   `json:"alive"`
				LastSuccess string `json:"lastSuccess"`
			} `json:"healthCheckResults"`
		} `json:"tasks"`
	}
	eventually(t, 2*time.Minute, "both checks' results alive", func() bool {
		resp, err := http.Get("http://" + api + "/v2/apps/web/tasks")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if json.Unmarshal(body, &tasks) != nil || len(tasks.Tasks) != 1 {
			return false
		}
		hr := tasks.Tasks[0].HealthCheckResults
		return len(hr) == 2 && hr[0].Alive && hr[0].LastSuccess != "" && hr[1].Alive
	})
	out := mustCLI(t, api, "task", "show", tasks.Tasks[0].ID)
	healthy := false
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "HEALTHY" && f[1] == "true" {
			healthy = true
		}
	}
	if !healthy || !strings.Contains(out, "HEALTH CHECK 0") || !strings.Contains(out, "HEALTH CHECK 1") {
		t.Errorf("task show:\n%s", out)
	}
	if list := mustCLI(t, api, "app", "list"); !strings.Contains(list, "1/1") {
		t.Errorf("app list:\n%s", list)
	}
}
