// Package e2e holds Berth's multi-process end-to-end tests: they build the
// berth binary once, start real server, dev and mesos-local processes on
// loopback, and drive them through the CLI and the API.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// berthBin is the binary built once for all tests.
var berthBin string

// testAgentResources are the resources of every test agent. The port range is
// drawn once per test binary, so that two test runs on one machine (CI and
// a developer's, or -count runs of two packages) do not hand their tasks
// the same ports.
var testAgentResources = func() string {
	base := 20000 + 200*rand.IntN(60) // below the kernel's ephemeral range
	return fmt.Sprintf("cpus:8;mem:8192;disk:20000;ports:[%d-%d]", base, base+199)
}()

// withAgentResources adds --agent-resources to `dev` and `mesos-local`
// arguments that do not set them.
func withAgentResources(args []string) []string {
	if len(args) == 0 || (args[0] != "dev" && args[0] != "mesos-local") || slices.Contains(args, "--agent-resources") {
		return args
	}
	return append(append([]string(nil), args...), "--agent-resources", testAgentResources)
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	berthBin = filepath.Join(dir, "berth")
	// -buildvcs=auto: stamp the commit (for `berth version`) where the
	// checkout allows it, whatever GOFLAGS says.
	build := exec.Command("go", "build", "-buildvcs=auto", "-o", berthBin, "../cmd/berth")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build berth:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// handedOut are the ports freePort has returned in this test binary: two
// servers of one cluster must never be given the same one.
var (
	handedOutMu sync.Mutex
	handedOut   = map[string]bool{}
)

// freePort returns a loopback address with a free port below the kernel's
// ephemeral range (32768 and up), never one it returned before in this test
// binary. A port the kernel handed out for ":0" and that was closed again
// is soon reused as the source port of some outgoing connection, or by
// another test binary on the machine, before the server that was meant to
// listen on it starts: "address already in use" under load.
func freePort(t testing.TB) string {
	t.Helper()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for range 1000 {
		addr := fmt.Sprintf("127.0.0.1:%d", 10000+rand.IntN(10000))
		if handedOut[addr] {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // in use
		}
		l.Close()
		handedOut[addr] = true
		return addr
	}
	t.Fatal("no free port found in 127.0.0.1:10000-19999")
	return ""
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a berth process started by a test.
type proc struct {
	t    testing.TB
	name string
	args []string
	dir  string // working directory; "" is the test's
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	// owner marks the process's environment (BERTH_E2E_OWNER), which the
	// tasks it runs inherit: mesos-local leaves tasks running when it
	// stops, in sessions of their own, and the test kills them by it.
	owner string
}

// ownerEnv is the environment variable that marks what a test started.
const ownerEnv = "BERTH_E2E_OWNER"

// startProc starts `berth args...`; it is killed at the end of the test.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	return startProcIn(t, "", name, args...)
}

// startProcIn is startProc with dir as the working directory.
func startProcIn(t testing.TB, dir, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, args: withAgentResources(args), dir: dir, owner: fmt.Sprintf("%s-%x", name, rand.Uint64())}
	p.start()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM, 30*time.Second)
		if n := killOwned(p.owner); n > 0 {
			t.Logf("killed %d process(es) %s left running (its tasks)", n, p.name)
		}
		if t.Failed() {
			t.Logf("---- output of %s ----\n%s", p.name, tail(p.out.String(), 200))
		}
	})
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.out = &syncBuffer{}
	p.cmd = exec.Command(berthBin, p.args...)
	p.cmd.Dir = p.dir
	p.cmd.Env = append(os.Environ(), ownerEnv+"="+p.owner)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Own process group, so stopping the process also stops what it runs.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
}

// stop signals the process and waits up to grace, then kills its group.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// killOwned kills, with their process groups, every process whose
// environment carries the owner mark, and returns how many it found.
func killOwned(owner string) int {
	mark := []byte("\x00" + ownerEnv + "=" + owner + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(append([]byte{0}, env...), mark) {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != syscall.Getpgrp() {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		n++
	}
	return n
}

// kill9 kills the process at once, as a crash would.
func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// restart starts the process again with the same arguments.
func (p *proc) restart() { p.start() }

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// cliResult is the outcome of one CLI invocation.
type cliResult struct {
	stdout, stderr string
	err            error
}

// cli runs `berth --addr addr args...` and returns its output.
func cli(t *testing.T, addr string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, berthBin, append([]string{"--addr", addr}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// mustCLI runs the CLI and fails the test if it exits non-zero.
func mustCLI(t *testing.T, addr string, args ...string) string {
	t.Helper()
	r := cli(t, addr, args...)
	if r.err != nil {
		t.Fatalf("berth %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return r.stdout
}

// cliJSON runs the CLI with -o json and decodes its output into v.
func cliJSON(t *testing.T, addr string, v any, args ...string) {
	t.Helper()
	out := mustCLI(t, addr, append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("berth %s: decode JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// eventually polls cond until it returns true or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitAPI waits until a server answers the API at addr.
func waitAPI(t *testing.T, addr string) {
	t.Helper()
	eventually(t, 2*time.Minute, "the API at "+addr, func() bool {
		// With ACLs on and no token, an API that refuses the call is up.
		r := cli(t, addr, "app", "list")
		return r.err == nil || strings.Contains(r.stderr, "unauthenticated")
	})
}

// testdata returns the path of a shared test data file.
func testdata(t *testing.T, rel string) string {
	t.Helper()
	for _, base := range []string{"../../shared/testdata", "../shared/testdata"} {
		p := filepath.Join(base, rel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("shared test data %s not found", rel)
	return ""
}

// writeFile writes content to a new file in the test's temp dir.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// mesosStateOrNil returns GET_STATE from mesos-local, or nil if it does not
// answer yet.
func mesosStateOrNil(addr string) map[string]any {
	resp, err := http.Post("http://"+addr+"/api/v1", "application/json", strings.NewReader(`{"type":"GET_STATE"}`))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st map[string]any
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	return st
}
