package e2e

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// exitCode waits (bounded) for a process started with startProc to exit on
// its own and returns its exit code.
func (p *proc) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s still running after %s; output:\n%s", p.name, timeout, p.out.String())
		return 0
	}
}

// TestCLIPapercuts drives the CLI against a server without a reachable
// Mesos master (so deployments stay running and instances pending) and
// checks the papercuts of issue 8 one by one.
func TestCLIPapercuts(t *testing.T) {
	api, args := serverArgs(t, t.TempDir())
	srv := startProc(t, "server", args...)
	waitAPI(t, api)
	events := startProc(t, "events", "events", "--addr", api)
	eventually(t, time.Minute, "the event stream to attach", func() bool {
		return strings.Contains(events.out.String(), "event_stream_attached")
	})

	out := mustCLI(t, api, "app", "add", testdata(t, "marathon/sleep-app.json"))
	m := regexp.MustCompile(`\(deployment ([0-9a-f-]+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("app add printed no deployment id: %q", out)
	}
	deployment := m[1]

	// A negative count reaches the server's validator.
	r := cli(t, api, "app", "scale", "/sleep", "-1")
	if r.err == nil || strings.Contains(r.stderr, "shorthand") || !strings.Contains(r.stderr, "instances: must be greater than or equal to 0") {
		t.Errorf("app scale /sleep -1: err=%v stderr=%q", r.err, r.stderr)
	}
	// The lock is explained with the CLI's flag.
	r = cli(t, api, "app", "scale", "/sleep", "2")
	if r.err == nil || !strings.Contains(r.stderr, "use --force") {
		t.Errorf("scale of a locked app: err=%v stderr=%q, want 'use --force'", r.err, r.stderr)
	}

	// Label selectors: `=` works like `==`; what cannot parse is refused.
	mustCLI(t, api, "app", "add", writeFile(t, "labelled.json", `{"id":"/labelled","cmd":"sleep 100","cpus":0.01,"mem":8,"labels":{"team":"b"}}`))
	for sel, want := range map[string]string{
		"team=b": "/labelled", "team==b": "/labelled", "team": "/labelled", "team in (a, b)": "/labelled",
		"team!=b": "", "team=c": "", "team notin (b)": "",
	} {
		var list struct{ Apps []appJSON }
		cliJSON(t, api, &list, "app", "list", "--label", sel)
		var ids []string
		for _, a := range list.Apps {
			ids = append(ids, a.ID)
		}
		if strings.Join(ids, ",") != want {
			t.Errorf("app list --label %q = %v, want %q", sel, ids, want)
		}
	}
	if r := cli(t, api, "app", "list", "--label", "team in b"); r.err == nil || !strings.Contains(r.stderr, "label") {
		t.Errorf("bad label selector: err=%v stderr=%q", r.err, r.stderr)
	}
	// An unknown event type is refused, naming the known ones.
	r = cli(t, api, "events", "--type", "status_update")
	if r.err == nil || !strings.Contains(r.stderr, `--type: unknown event type "status_update"`) || !strings.Contains(r.stderr, "status_update_event") {
		t.Errorf("events --type status_update: err=%v stderr=%q", r.err, r.stderr)
	}

	// app versions has a header.
	if lines := strings.Split(strings.TrimSpace(mustCLI(t, api, "app", "versions", "/sleep")), "\n"); len(lines) != 2 || strings.TrimSpace(lines[0]) != "VERSION" {
		t.Errorf("app versions: %q, want a VERSION header and one version", lines)
	}

	// deployment watch: the instance that could not launch is pending;
	// with -o json each state is one JSON object per line.
	watch := startProc(t, "watch", "deployment", "watch", deployment, "--addr", api)
	watchJSON := startProc(t, "watch-json", "deployment", "watch", deployment, "--addr", api, "-o", "json")
	eventually(t, time.Minute, "the progress line", func() bool {
		return strings.Contains(watch.out.String(), "[/sleep: 1 pending]")
	})
	eventually(t, time.Minute, "a JSON line", func() bool {
		line, _, ok := strings.Cut(watchJSON.out.String(), "\n")
		var d struct{ ID, Status string }
		return ok && json.Unmarshal([]byte(line), &d) == nil && d.ID == deployment && d.Status == "DEPLOYMENT_STATUS_RUNNING"
	})
	if out := watch.out.String(); strings.Contains(out, "stopped") {
		t.Errorf("never launched instance shown as stopped: %q", out)
	}
	watch.stop(syscall.SIGTERM, 10*time.Second)
	watchJSON.stop(syscall.SIGTERM, 10*time.Second)

	// Errors say what failed once.
	r = cli(t, api, "cluster", "snapshot", "restore", writeFile(t, "garbage.snap", "garbage"))
	if r.err == nil || strings.Count(r.stderr, "restore snapshot") != 1 {
		t.Errorf("restore of garbage: err=%v stderr=%q, want 'restore snapshot' once", r.err, r.stderr)
	}

	// berth version: version, commit and Go version.
	vout, err := exec.Command(berthBin, "version").Output()
	v := string(vout)
	if err != nil || !strings.HasPrefix(v, "berth ") || !strings.Contains(v, "(commit ") || !strings.Contains(v, runtime.Version()) {
		t.Errorf("berth version = %q, %v", v, err)
	}
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil && !strings.Contains(v, "commit unknown") &&
		!strings.Contains(v, "commit "+strings.TrimSpace(string(head))) {
		t.Errorf("berth version = %q, want commit %s", v, head)
	}

	// The server goes away: the event stream fails instead of ending
	// quietly.
	srv.stop(syscall.SIGTERM, 30*time.Second)
	if code := events.exitCode(t, time.Minute); code == 0 || !strings.Contains(events.out.String(), "Error:") {
		t.Errorf("events exited %d when the server stopped; output:\n%s", code, events.out.String())
	}
}

// TestServerRestartOnNewRaftAddress: a lone server restarted on another
// Raft address lists that address in its Raft configuration (as gossip
// does), and writes still commit.
func TestServerRestartOnNewRaftAddress(t *testing.T) {
	dataDir := t.TempDir()
	api, args := serverArgs(t, dataDir)
	srv := startProc(t, "server", args...)
	waitAPI(t, api)
	mustCLI(t, api, "app", "add", testdata(t, "marathon/sleep-app.json"))
	srv.stop(syscall.SIGTERM, 30*time.Second)

	newRaft := freePort(t)
	for i := range args {
		if args[i] == "--raft-addr" {
			args[i+1] = newRaft
		}
	}
	startProc(t, "server-moved", args...)
	waitAPI(t, api)
	eventually(t, time.Minute, "list-peers and members to agree on "+newRaft, func() bool {
		var peers struct {
			Peers []struct{ ID, Address string }
		}
		var members struct {
			Members []struct{ Name, RaftAddr string }
		}
		cliJSON(t, api, &peers, "cluster", "raft", "list-peers")
		cliJSON(t, api, &members, "cluster", "members")
		return len(peers.Peers) == 1 && peers.Peers[0].Address == newRaft &&
			len(members.Members) == 1 && members.Members[0].RaftAddr == newRaft
	})
	mustCLI(t, api, "app", "add", writeFile(t, "after.json", `{"id":"/after","cmd":"sleep 100","cpus":0.01,"mem":8}`))
	mustCLI(t, api, "app", "show", "/sleep")
}
