package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serverArgs returns the flags of a single-node server with fresh ports. The
// Mesos master address points at a port nobody listens on: the API must work
// without a reachable master.
func serverArgs(t *testing.T, dataDir string) (api string, args []string) {
	api = freePort(t)
	return api, []string{"server",
		"--node-name", "solo",
		"--data-dir", dataDir,
		"--api-addr", api,
		"--raft-addr", freePort(t),
		"--gossip-addr", freePort(t),
		"--mesos-master", "http://" + freePort(t),
	}
}

type appJSON struct {
	ID        string  `json:"id"`
	Instances int     `json:"instances"`
	Version   string  `json:"version"`
	Cpus      float64 `json:"cpus"`
	Cmd       string  `json:"cmd"`
	Env       map[string]string
}

// TestServerKeepsAcknowledgedWritesAcrossKill9 is issue 2's durability
// promise: every write the CLI saw succeed is there after kill -9 and a
// restart on the same data directory.
func TestServerKeepsAcknowledgedWritesAcrossKill9(t *testing.T) {
	dataDir := t.TempDir()
	api, args := serverArgs(t, dataDir)
	srv := startProc(t, "server", args...)
	waitAPI(t, api)

	valid := []string{
		"seed/postgres.marathon.json",
		"marathon/docker-http-server.json",
		"marathon/healthcheck-and-volume.json",
		"marathon/ipv6-healthcheck.json",
		"marathon/persistent-volume-app.json",
		"marathon/readiness-and-health-app.json",
		"marathon/resident-docker-app.json",
		"marathon/sleep-app.json",
	}
	for _, f := range valid {
		mustCLI(t, api, "app", "add", testdata(t, f))
	}
	// The API docs' example sets both cmd and args: refused, naming the field.
	r := cli(t, api, "app", "add", testdata(t, "marathon/api-example-app.json"))
	if r.err == nil || !strings.Contains(r.stderr, "cmd") {
		t.Fatalf("api-example-app.json: want a refusal naming cmd, got err=%v stderr=%q", r.err, r.stderr)
	}

	mustCLI(t, api, "app", "scale", "/sleep", "3", "--force")
	mustCLI(t, api, "app", "update", "/docker-http-server", "--force", writeFile(t, "dhs.json",
		`{"id":"/docker-http-server","cmd":"python3 -m http.server 9090","cpus":0.25,"mem":32}`))
	mustCLI(t, api, "app", "stop", "/readiness-and-health-app", "--force")

	var before struct{ Apps []appJSON }
	cliJSON(t, api, &before, "app", "list")
	if len(before.Apps) != len(valid) {
		t.Fatalf("listed %d apps before the crash, want %d", len(before.Apps), len(valid))
	}
	var versionsBefore struct{ Versions []string }
	cliJSON(t, api, &versionsBefore, "app", "versions", "/docker-http-server")
	if len(versionsBefore.Versions) != 2 {
		t.Fatalf("versions of /docker-http-server = %v, want 2", versionsBefore.Versions)
	}

	srv.kill9()
	srv.restart()
	waitAPI(t, api)

	var after struct{ Apps []appJSON }
	cliJSON(t, api, &after, "app", "list")
	if len(after.Apps) != len(before.Apps) {
		t.Fatalf("after restart: %d apps, want %d", len(after.Apps), len(before.Apps))
	}
	for i := range before.Apps {
		b, a := before.Apps[i], after.Apps[i]
		if a.ID != b.ID || a.Version != b.Version || a.Instances != b.Instances || a.Cmd != b.Cmd || a.Cpus != b.Cpus {
			t.Errorf("app %s changed across restart: before %+v, after %+v", b.ID, b, a)
		}
	}
	var sleep appJSON
	cliJSON(t, api, &sleep, "app", "show", "/sleep")
	if sleep.Instances != 3 {
		t.Errorf("/sleep instances after restart = %d, want 3", sleep.Instances)
	}
	var versionsAfter struct{ Versions []string }
	cliJSON(t, api, &versionsAfter, "app", "versions", "/docker-http-server")
	if strings.Join(versionsAfter.Versions, ",") != strings.Join(versionsBefore.Versions, ",") {
		t.Errorf("versions after restart = %v, want %v", versionsAfter.Versions, versionsBefore.Versions)
	}

	// Writes keep working after the restart and survive a second crash.
	mustCLI(t, api, "app", "remove", "/sleep", "--force")
	srv.kill9()
	srv.restart()
	waitAPI(t, api)
	if r := cli(t, api, "app", "show", "/sleep"); r.err == nil {
		t.Fatal("removed app /sleep came back after a restart")
	}
	if _, err := filepath.Glob(filepath.Join(dataDir, "*")); err != nil {
		t.Fatal(err)
	}
}

// TestCLIErrors checks that the CLI reports the server's refusals clearly and
// exits non-zero.
func TestCLIErrors(t *testing.T) {
	api, args := serverArgs(t, t.TempDir())
	startProc(t, "server", args...)
	waitAPI(t, api)

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"missing app", []string{"app", "show", "/nope"}, []string{"not_found", "/nope"}},
		{"malformed JSON", []string{"app", "add", writeFile(t, "bad.json", "{\n  \"id\": \"/x\",\n  \"cpus\": ,\n}")}, []string{"line 3"}},
		{"unknown field", []string{"app", "add", writeFile(t, "unk.json", `{"id":"/x","cmd":"true","bogus":1}`)}, []string{"bogus"}},
		{"bad volume", []string{"app", "add", writeFile(t, "vol.json",
			`{"id":"/v","cmd":"true","container":{"type":"MESOS","volumes":[{"containerPath":"data","mode":"RW","persistent":{"size":0}}]}}`)},
			[]string{"invalid_argument", "container.volumes[0].persistent.size"}},
		{"bad scale", []string{"app", "scale", "/x", "many"}, []string{"instances", `"many"`}},
		{"bad output", []string{"-o", "yaml", "app", "list"}, []string{"--output"}},
	}
	for _, c := range cases {
		r := cli(t, api, c.args...)
		if r.err == nil {
			t.Errorf("%s: exit 0, want an error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr %q does not mention %q", c.name, r.stderr, w)
			}
		}
	}

	mustCLI(t, api, "app", "add", testdata(t, "marathon/sleep-app.json"))
	r := cli(t, api, "app", "add", testdata(t, "marathon/sleep-app.json"))
	if r.err == nil || !strings.Contains(r.stderr, "already_exists") {
		t.Errorf("duplicate add: err=%v stderr=%q, want already_exists", r.err, r.stderr)
	}
	// A Raft timing a server cannot keep is refused, naming the flags; the
	// three raised together are accepted (slow or overloaded machines).
	_, bad := serverArgs(t, t.TempDir())
	lease := startProc(t, "lease", append(bad, "--raft-leader-lease-timeout", "2s")...)
	if code := lease.exitCode(t, time.Minute); code == 0 || !strings.Contains(lease.out.String(), "--raft-leader-lease-timeout 2s: must not be negative nor exceed --raft-heartbeat-timeout 500ms") {
		t.Errorf("a lease over the heartbeat timeout: exit %d, output %q", code, lease.out.String())
	}
	slowAPI, slow := serverArgs(t, t.TempDir())
	startProc(t, "slow", append(slow, "--raft-heartbeat-timeout", "2s", "--raft-election-timeout", "2s", "--raft-leader-lease-timeout", "1s")...)
	waitAPI(t, slowAPI)
	mustCLI(t, slowAPI, "app", "add", testdata(t, "marathon/sleep-app.json"))
	// An unreachable server is a clear error too.
	r = cli(t, freePort(t), "app", "list")
	if r.err == nil || !strings.Contains(r.stderr, "Error:") {
		t.Errorf("unreachable server: err=%v stderr=%q", r.err, r.stderr)
	}
}
