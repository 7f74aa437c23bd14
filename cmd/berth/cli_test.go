package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// runCLI runs the berth command line in this process, as main does, with
// every flag back at its default first (the command tree is global).
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	resetFlags(rootCmd)
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func resetFlags(c *cobra.Command) {
	reset := func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			_ = sv.Replace(nil)
		} else {
			_ = f.Value.Set(f.DefValue)
		}
		f.Changed = false
	}
	c.Flags().VisitAll(reset)
	c.PersistentFlags().VisitAll(reset)
	for _, sub := range c.Commands() {
		resetFlags(sub)
	}
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestPositionalNegatives(t *testing.T) {
	cases := []struct{ in, want string }{
		{"app scale /s 3", "app scale /s 3"},
		{"app scale /s -1", "app scale /s -- -1"},
		{"app scale /s -1 --wait", "app scale /s --wait -- -1"},
		{"--addr h:1 app scale -o json /s -1 --force --addr h:2", "--addr h:1 app scale -o json /s --force --addr h:2 -- -1"},
		{"app start /s -2 --wait", "app start /s --wait -- -2"},
		{"app scale /s -- -1", "app scale /s -- -1"},
		// A negative number that is a flag's value stays the value.
		{"dev --agents -1", "dev --agents -1"},
		{"app scale --addr -1 /s 2", "app scale --addr -1 /s 2"},
	}
	for _, c := range cases {
		got := strings.Join(positionalNegatives(rootCmd, strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("%s\n got %s\nwant %s", c.in, got, c.want)
		}
	}
}

// `berth app scale /s -1` used to fail in flag parsing ("unknown shorthand
// flag: '1'"); now -1 is the count, sent to the server (here: nobody).
func TestNegativeCountIsAnArgument(t *testing.T) {
	addr := closedAddr(t)
	for _, args := range [][]string{
		{"app", "scale", "/s", "-1", "--addr", addr},
		{"--addr", addr, "app", "scale", "/s", "-1", "--wait"},
	} {
		_, stderr, code := runCLI(t, args...)
		if code == 0 || strings.Contains(stderr, "shorthand") || !strings.Contains(stderr, "cannot reach Berth at "+addr) {
			t.Errorf("%v: exit %d, stderr %q; want the request sent", args, code, stderr)
		}
	}
	_, stderr, code := runCLI(t, "app", "scale", "/s", "many", "--addr", addr)
	if code == 0 || !strings.Contains(stderr, `instances: "many" is not an integer`) {
		t.Errorf("scale /s many: exit %d, stderr %q", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		stdout, stderr, code := runCLI(t, args...)
		if code != 0 || !strings.HasPrefix(stdout, "berth "+version+" (commit ") || !strings.Contains(stdout, runtime.Version()) {
			t.Errorf("berth %v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	bi := &debug.BuildInfo{GoVersion: "go1.99.1", Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.modified", Value: "true"},
	}}
	if got, want := versionLine(bi), version+" (commit 0123456789abcdef0123456789abcdef01234567-dirty, go1.99.1)"; got != want {
		t.Errorf("versionLine = %q, want %q", got, want)
	}
	bi.Settings[2].Value = "false"
	if got := versionLine(bi); strings.Contains(got, "dirty") {
		t.Errorf("clean checkout: %q", got)
	}
	if got := versionLine(&debug.BuildInfo{}); !strings.Contains(got, "commit unknown") {
		t.Errorf("no VCS stamp: %q", got)
	}
}

// The daemons and local tools take no client flags; every client command does.
func TestClientFlagsOnlyOnClientCommands(t *testing.T) {
	for _, c := range rootCmd.Commands() {
		if !c.IsAvailableCommand() || c.Name() == "completion" {
			continue
		}
		daemon := slices.Contains([]string{"server", "dev", "mesos-local", "version", "tls", "volume"}, c.Name()) // no server to talk to
		for _, name := range []string{"addr", "output"} {
			has := c.PersistentFlags().Lookup(name) != nil || c.Flags().Lookup(name) != nil
			for _, sub := range c.Commands() { // operator debug's --output is its bundle file
				has = has || sub.Flags().Lookup(name) != nil
			}
			if has == daemon {
				t.Errorf("%s: has --%s = %v", c.Name(), name, has)
			}
		}
	}
	stdout, _, code := runCLI(t, "server", "--help")
	if code != 0 || strings.Contains(stdout, "--addr ") || strings.Contains(stdout, "--output") {
		t.Errorf("server --help lists client flags:\n%s", stdout)
	}
	stdout, _, _ = runCLI(t, "app", "list", "--help")
	if !strings.Contains(stdout, "--addr ") || !strings.Contains(stdout, "--output") {
		t.Errorf("app list --help lacks the client flags:\n%s", stdout)
	}
}

// Every command that takes positional arguments names a missing one.
func TestMissingArgumentsNamed(t *testing.T) {
	checked := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		words := strings.Fields(c.Use)
		if !c.Runnable() || len(words) < 2 || strings.HasPrefix(words[1], "[") {
			return
		}
		path := strings.Fields(strings.TrimPrefix(c.CommandPath(), "berth "))
		_, stderr, code := runCLI(t, path...)
		want := fmt.Sprintf("Error: %s needs %s", strings.Join(path, " "), words[1])
		if code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("berth %s: exit %d, stderr %q, want %q", strings.Join(path, " "), code, stderr, want)
		}
		checked++
	}
	walk(rootCmd)
	if checked < 10 {
		t.Fatalf("checked %d commands with arguments, want them all", checked)
	}
	_, stderr, _ := runCLI(t, "app", "show")
	if !strings.Contains(stderr, "app show needs APP_ID") {
		t.Errorf("app show: %q", stderr)
	}
	_, stderr, _ = runCLI(t, "app", "start", "/a", "1", "2")
	if !strings.Contains(stderr, `app start takes at most 2 arguments, not ["2"]`) {
		t.Errorf("app start with 3 args: %q", stderr)
	}
	_, stderr, _ = runCLI(t, "task", "list", "x")
	if !strings.Contains(stderr, `task list takes no arguments, not ["x"]`) {
		t.Errorf("task list x: %q", stderr)
	}
}

func TestCannotReachBerth(t *testing.T) {
	refused := closedAddr(t)
	page := httptest.NewServer(http.NotFoundHandler())
	defer page.Close()
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html>hello</html>")
	}))
	defer html.Close()
	for _, c := range []struct{ name, addr, want string }{
		{"refused", refused, "connection refused"},
		{"404 page", page.Listener.Addr().String(), "no Berth API answers there"},
		{"HTML page", html.URL, "no Berth API answers there"},
	} {
		for _, args := range [][]string{{"app", "list"}, {"events"}, {"deployment", "watch", "d1"}, {"cluster", "members"}} {
			_, stderr, code := runCLI(t, append(args, "--addr", c.addr)...)
			want := "Error: cannot reach Berth at " + c.addr + ": "
			if code == 0 || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, c.want) {
				t.Errorf("%s, %v: exit %d, stderr %q, want %q ... %q", c.name, args, code, stderr, want, c.want)
			}
		}
	}
	// A name that does not resolve (the error as the transport returns it;
	// no resolver is asked in the test).
	flagAddr = "nosuch.invalid:7070"
	dnsErr := connect.NewError(connect.CodeUnavailable, &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "no such host", Name: "nosuch.invalid", IsNotFound: true}})
	if got := describeError(dnsErr); !strings.HasPrefix(got, "cannot reach Berth at nosuch.invalid:7070: ") || !strings.Contains(got, "no such host") {
		t.Errorf("DNS error: %q", got)
	}
}

func TestServerMessagesNameCLIFlags(t *testing.T) {
	err := connect.NewError(connect.CodeFailedPrecondition, errors.New("app /db is locked by deployment d1; use force to cancel it"))
	if got := describeError(err); got != "failed_precondition: app /db is locked by deployment d1; use --force to cancel it" {
		t.Errorf("locked: %q", got)
	}
	err = connect.NewError(connect.CodeInvalidArgument, errors.New("invalid request:\n  types: unknown event type \"x\" (known types: a, b)"))
	if got := describeError(err); !strings.Contains(got, `--type: unknown event type "x"`) {
		t.Errorf("unknown type: %q", got)
	}
}

func TestProgressSummary(t *testing.T) {
	task := func(goal, state string, healthy *bool) *v1.TaskView {
		return &v1.TaskView{Goal: goal, State: state, Healthy: healthy}
	}
	yes := true
	cases := []struct {
		tasks  []*v1.TaskView
		target int
		want   string
	}{
		{nil, -1, "no instances"},
		{nil, 0, "no instances"},
		// Not even created yet: pending.
		{nil, 2, "2 pending"},
		{[]*v1.TaskView{task("Running", "TASK_RUNNING", nil)}, 3, "2 pending, 1 running"},
		{[]*v1.TaskView{task("Running", "TASK_RUNNING", nil), task("Stopped", "", nil)}, 1, "1 running, 1 stopped"},
		// Never launched: pending, not stopped.
		{[]*v1.TaskView{task("Running", "", nil), task("Running", "", nil)}, 2, "2 pending"},
		{[]*v1.TaskView{task("Running", "", nil), task("Running", "TASK_STAGING", nil), task("Running", "TASK_RUNNING", &yes)}, 3,
			"1 pending, 1 staging, 1 running, 1 healthy"},
		// A task that ended and waits to be relaunched says how it ended.
		{[]*v1.TaskView{task("Running", "TASK_FAILED", nil), task("Running", "TASK_RUNNING", nil)}, 2, "1 running, 1 failed"},
		{[]*v1.TaskView{task("Stopped", "TASK_KILLED", nil), task("Stopped", "", nil), task("Stopped", "TASK_KILLING", nil)}, 0, "1 killing, 2 stopped"},
		{[]*v1.TaskView{task("Decommissioned", "TASK_KILLED", nil)}, -1, "1 removing"},
	}
	for _, c := range cases {
		if got := progressSummary(c.tasks, c.target); got != c.want {
			t.Errorf("progressSummary(%v) = %q, want %q", c.tasks, got, c.want)
		}
	}
}
