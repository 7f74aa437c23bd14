package mesoslocal

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

func smallTask(id string, o mesos.Offer, cmd string) mesos.TaskInfo {
	return shellTask(id, o, cmd, allocated(o.GetAllocationInfo().GetRole(), scalar("cpus", 0.1), scalar("mem", 32)))
}

func launch(s *sched, o mesos.Offer, tasks ...mesos.TaskInfo) {
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpLaunch(tasks...)}.WithOffers(o.ID)).With(calls.RefuseSeconds(0)))
}

func TestCommandTaskStates(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("any", nil)
	nonShell := smallTask("argv", o, "")
	nonShell.Command = &mesos.CommandInfo{Shell: proto.Bool(false), Value: proto.String("sh"),
		Arguments:   []string{"sh", "-c", `test "$FOO" = bar && test "$0" = sh`},
		Environment: &mesos.Environment{Variables: []mesos.Environment_Variable{{Name: "FOO", Value: proto.String("bar")}}}}
	launch(s, o, smallTask("ok", o, "exit 0"), smallTask("fail", o, "exit 3"), nonShell,
		smallTask("missing", o, "/no/such/binary"))
	s.awaitUpdate("ok", mesos.TASK_FINISHED)
	st := s.awaitUpdate("fail", mesos.TASK_FAILED)
	if st.GetMessage() != "Command exited with status 3" {
		t.Fatalf("failed message %q", st.GetMessage())
	}
	s.awaitUpdate("argv", mesos.TASK_FINISHED)
	s.awaitUpdate("missing", mesos.TASK_FAILED)
}

// TestKillSIGTERMThenSIGKILL: a task ignoring SIGTERM is SIGKILLed after
// the grace period, and its whole process group dies.
func TestKillSIGTERMThenSIGKILL(t *testing.T) {
	c := startCluster(t, nil)
	info := frameworkInfo("*", mesos.FrameworkInfo_Capability_TASK_KILLING_STATE)
	s := subscribe(t, c, info)
	o := s.awaitOffer("any", nil)
	stubborn := smallTask("stubborn", o, `trap "" TERM; sleep 1000 & echo $! > child; wait`)
	stubborn.KillPolicy = &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{Nanoseconds: int64(300 * time.Millisecond)}}
	polite := smallTask("polite", o, "sleep 1000")
	launch(s, o, stubborn, polite)
	s.awaitUpdate("stubborn", mesos.TASK_RUNNING)
	s.awaitUpdate("polite", mesos.TASK_RUNNING)
	sandbox := c.taskSandbox(t, s.fwID, "stubborn")
	var child int
	eventually(t, "child pid written", func() bool {
		b, err := os.ReadFile(filepath.Join(sandbox, "child"))
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && child > 0
	})
	start := time.Now()
	s.mustCall(calls.Kill("stubborn", o.AgentID.Value))
	s.mustCall(calls.Kill("polite", o.AgentID.Value))
	s.awaitUpdate("stubborn", mesos.TASK_KILLING)
	st := s.awaitUpdate("stubborn", mesos.TASK_KILLED)
	if time.Since(start) < 250*time.Millisecond || !strings.Contains(st.GetMessage(), "killed") {
		t.Fatalf("killed after %v: %q", time.Since(start), st.GetMessage())
	}
	s.awaitUpdate("polite", mesos.TASK_KILLED)
	eventually(t, "process group gone", func() bool { return !processAlive(child) })
	var kills int
	for _, op := range c.Operations() {
		if op.Op == "KILL" {
			kills++
		}
	}
	if kills != 2 {
		t.Fatalf("%d KILL operations logged", kills)
	}
	// Killing an unknown task is answered through reconciliation.
	s.mustCall(calls.Kill("nope", o.AgentID.Value))
	if st := s.awaitUpdate("nope", mesos.TASK_LOST); st.GetReason() != mesos.REASON_RECONCILIATION {
		t.Fatalf("kill of unknown task: %v", st)
	}
}

func TestDockerTaskFailsFast(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("any", nil)
	task := smallTask("pg", o, "")
	task.Command = &mesos.CommandInfo{Shell: proto.Bool(false)}
	task.Container = &mesos.ContainerInfo{Type: mesos.ContainerInfo_DOCKER.Enum(), Docker: &mesos.ContainerInfo_DockerInfo{Image: "postgres:16"}}
	launch(s, o, task)
	st := s.awaitUpdate("pg", mesos.TASK_FAILED)
	if !strings.Contains(st.GetMessage(), "Docker") || st.GetReason() != mesos.REASON_CONTAINER_LAUNCH_FAILED {
		t.Fatalf("docker task: %v", st)
	}
}

func TestTaskRunsAsUserWithVolume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	c := startCluster(t, nil)
	// The work dir must be reachable by the task user (t.TempDir is 0700).
	for d := c.cfg.WorkDir; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	info := berthInfo()
	info.User = "nobody"
	s := subscribe(t, c, info)
	o := s.awaitOffer("any", nil)
	disk := reserved(scalar("disk", 10), "berth", "berth", nil)
	vol := volume(disk, "v", "data")
	task := shellTask("w", o, `test "$(id -u)" = `+nobody.Uid+` && echo x > data/f`, append(allocated("berth", scalar("cpus", 0.1)), vol))
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpReserve(disk), calls.OpCreate(vol), calls.OpLaunch(task)}.WithOffers(o.ID)))
	if st := s.awaitUpdate("w", mesos.TASK_FINISHED); st.GetState() != mesos.TASK_FINISHED {
		t.Fatalf("task as nobody: %v", st)
	}
	fi, err := os.Stat(filepath.Join(c.cfg.WorkDir, "agents", o.AgentID.Value, "volumes", "roles", "berth", "v", "f"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; strconv.Itoa(int(uid)) != nobody.Uid {
		t.Fatalf("file owned by %d", uid)
	}
	// An unknown user fails with a clear message.
	o = s.awaitOffer("again", nil)
	bad := smallTask("bad", o, "true")
	bad.Command.User = proto.String("no-such-user-xyz")
	launch(s, o, bad)
	if st := s.awaitUpdate("bad", mesos.TASK_FAILED); !strings.Contains(st.GetMessage(), "no-such-user-xyz") {
		t.Fatalf("unknown user: %q", st.GetMessage())
	}
}

func TestHealthChecks(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("any", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tcpPort := uint32(ln.Addr().(*net.TCPAddr).Port)
	fast := func(hc *mesos.HealthCheck) *mesos.HealthCheck {
		hc.DelaySeconds = proto.Float64(0)
		hc.IntervalSeconds = proto.Float64(0.1)
		hc.GracePeriodSeconds = proto.Float64(0)
		hc.TimeoutSeconds = proto.Float64(5)
		hc.ConsecutiveFailures = proto.Uint32(2)
		return hc
	}
	good := smallTask("tcp-ok", o, "sleep 1000")
	good.HealthCheck = fast(&mesos.HealthCheck{Type: mesos.HealthCheck_TCP, TCP: &mesos.HealthCheck_TCPCheckInfo{Port: tcpPort}})
	cmdOK := smallTask("cmd-ok", o, "sleep 1000")
	cmdOK.HealthCheck = fast(&mesos.HealthCheck{Command: &mesos.CommandInfo{Value: proto.String("true")}}) // type inferred
	bad := smallTask("http-bad", o, "sleep 1000")
	bad.HealthCheck = fast(&mesos.HealthCheck{Type: mesos.HealthCheck_HTTP, HTTP: &mesos.HealthCheck_HTTPCheckInfo{Port: 1, Path: proto.String("/health")}})
	// A MESOS_HTTP check (Marathon's, as the executor runs it) of a server
	// that answers 200 on its path.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	httpPort := uint32(srv.Listener.Addr().(*net.TCPAddr).Port)
	httpOK := smallTask("http-ok", o, "sleep 1000")
	httpOK.HealthCheck = fast(&mesos.HealthCheck{Type: mesos.HealthCheck_HTTP, HTTP: &mesos.HealthCheck_HTTPCheckInfo{Port: httpPort, Path: proto.String("/health")}})
	launch(s, o, good, cmdOK, bad, httpOK)
	for _, id := range []string{"tcp-ok", "cmd-ok", "http-ok"} {
		ev := s.await(id+" healthy", func(e *scheduler.Event) bool {
			return e.Type == scheduler.Event_UPDATE && e.Update.Status.TaskID.Value == id && e.Update.Status.Healthy != nil
		})
		st := ev.Update.Status
		s.ack(st)
		if !st.GetHealthy() || st.GetState() != mesos.TASK_RUNNING || st.GetReason() != mesos.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED {
			t.Fatalf("%s: %v", id, st)
		}
	}
	unhealthy := 0
	st := s.await("http-bad killed", func(e *scheduler.Event) bool {
		if e.Type != scheduler.Event_UPDATE || e.Update.Status.TaskID.Value != "http-bad" {
			return false
		}
		s.ack(e.Update.Status)
		if e.Update.Status.GetState() == mesos.TASK_RUNNING && e.Update.Status.Healthy != nil && !e.Update.Status.GetHealthy() {
			unhealthy++
		}
		return e.Update.Status.GetState() == mesos.TASK_KILLED
	}).Update.Status
	if st.Healthy == nil || st.GetHealthy() || unhealthy < 2 {
		t.Fatalf("health kill: %v after %d unhealthy updates", st, unhealthy)
	}
}

func TestLaunchGroup(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("any", nil)
	ex := mesos.ExecutorInfo{Type: mesos.ExecutorInfo_DEFAULT, ExecutorID: mesos.ExecutorID{Value: "ex"},
		Resources: allocated("*", scalar("cpus", 0.1), scalar("mem", 32))}
	a, b := smallTask("a", o, "sleep 1000"), smallTask("b", o, "sleep 0.2; exit 1")
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpLaunchGroup(ex, a, b)}.WithOffers(o.ID)).With(calls.RefuseSeconds(0)))
	s.awaitUpdate("a", mesos.TASK_RUNNING)
	s.awaitUpdate("b", mesos.TASK_FAILED)
	// The default executor kills the rest of the group when a task fails.
	if st := s.awaitUpdate("a", mesos.TASK_KILLED); st.GetExecutorID().GetValue() != "ex" {
		t.Fatalf("executor id %v", st.GetExecutorID())
	}
	ops := c.Operations()
	if last := ops[len(ops)-1]; last.Op != "LAUNCH_GROUP" || strings.Join(last.TaskIDs, ",") != "a,b" {
		t.Fatalf("operation %+v", last)
	}
}
