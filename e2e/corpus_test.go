package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMarathonCorpusCLI feeds Marathon app files with fields Berth keeps
// but does not act upon to `berth app add` on `berth dev`: each is
// accepted, `app show` names the unsupported fields on UNSUPPORTED lines,
// and `app show -o json` gives the fields back (an explicit [] included).
func TestMarathonCorpusCLI(t *testing.T) {
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr)
	waitAPI(t, api)

	for _, c := range []struct {
		file, id    string
		unsupported []string
		json        []string
	}{
		{"check-http.json", "/checks/http", []string{"check"}, []string{`"check": {`, `"scheme": "HTTP"`}},
		{"linuxinfo-seccomp-ipc.json", "/secure/worker", []string{"container.linuxInfo"}, []string{`"shmSize": 16`, `"profileName": "default.json"`}},
		{"docker-requireports.json", "/legacy/requireports", []string{"container.docker.requirePorts"}, []string{`"requirePorts": true`}},
		{"portdefinitions-empty.json", "/batch/no-ports", nil, []string{`"portDefinitions": []`}},
		{"pullconfig-mesos.json", "/private/registry-app", []string{"container.docker.forcePullImage"}, []string{`"pullConfig": {`}},
	} {
		data, err := os.ReadFile(filepath.Join("../appmodel/testdata/marathon-corpus", c.file))
		if err != nil {
			t.Fatal(err)
		}
		// No tasks: what is checked here is what the server keeps.
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		doc["instances"] = 0
		b, _ := json.Marshal(doc)
		mustCLI(t, api, "app", "add", writeFile(t, c.file, string(b)))

		table := mustCLI(t, api, "app", "show", c.id)
		var got []string
		for _, line := range strings.Split(table, "\n") {
			if rest, ok := strings.CutPrefix(line, "UNSUPPORTED"); ok {
				field, _, _ := strings.Cut(strings.TrimSpace(rest), ":")
				got = append(got, field)
			}
		}
		if strings.Join(got, ",") != strings.Join(c.unsupported, ",") {
			t.Errorf("%s: UNSUPPORTED lines for %v, want %v\n%s", c.file, got, c.unsupported, table)
		}
		out := mustCLI(t, api, "-o", "json", "app", "show", c.id)
		for _, want := range c.json {
			if !strings.Contains(out, want) {
				t.Errorf("%s: app show -o json lacks %s:\n%s", c.file, want, out)
			}
		}
	}
}
