package e2e

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// The nemesis suite, after etcd's robustness tests: three servers and
// mesos-local on loopback run resident apps while a client keeps scaling
// and restarting them, and a nemesis injects one fault per round, chosen
// by a seeded random generator:
//
//   - kill -9 of the leader, or of a follower, then a restart;
//   - a partition of one server's Raft traffic, both ways (raftNet);
//   - SIGSTOP of a server beyond the election timeout, then SIGCONT;
//   - a restart of mesos-local, by SIGTERM or kill -9 (its tasks keep
//     running and are adopted: mesoslocal/recover.go);
//   - a full disk on the leader or a follower (nemesis_disk_test.go): each
//     server's data dir is a tmpfs of its own, which needs root; elsewhere
//     the fault is left out with a logged reason (under CI, which runs as
//     root, not being root is a failure).
//
// After each fault is healed, with the client stopped, the cluster must
// converge within a generous deadline: one leader, every app's instance
// count the last acknowledged one on every server, that many tasks
// running. Throughout and after each round:
//
//   - no instance ever runs twice: a sampler scans /proc for the tasks'
//     processes (they carry the test's mark in their environment) and
//     counts live processes per instance;
//   - every instance keeps its agent and its persistence id, and the file
//     its first task wrote into its volume is still there;
//
// where PostgreSQL is installed (and the test runs as root), every row a
// writer committed to a PostgreSQL app on a persistent volume is still
// there (nemesis_pg_test.go); and after the final removal of every app, no
// reservation or volume is left on any agent and no task process runs.
//
// The test command (go test ./..., hence CI) runs a short version of 4
// rounds; run the long version with, e.g.:
//
//	go test ./e2e/ -run TestNemesis -timeout 6h -nemesis.rounds 100 -v
//
// and reproduce a failure's sequence of faults with -nemesis.seed (printed
// at the start).
var (
	nemesisRounds = flag.Int("nemesis.rounds", 4, "rounds of the nemesis suite (TestNemesis), one fault each (0: skip the suite); the default is the short run of the test command and CI")
	nemesisSeed   = flag.Uint64("nemesis.seed", 0, "seed of the nemesis' choices (0: random, printed)")
	nemesisOnly   = flag.String("nemesis.faults", "", "comma-separated fault names the nemesis draws from (empty: all it can run here)")
)

const (
	nemesisApps     = 3
	nemesisMaxInst  = 3
	nemesisConverge = 4 * time.Minute // per round, after the heal
	nemesisOpWait   = 10 * time.Second
)

// nemesisServer is one server with its API clients.
type nemesisServer = linServer

// nemesisApp is the resident app the suite runs: its task writes, once per
// volume, the id of the task that first used it (the instance id is a
// prefix of it), then records each start and sleeps.
func nemesisApp(t *testing.T, id string, instances int) *v1.App {
	t.Helper()
	js := fmt.Sprintf(`{
  "id": %q, "instances": %d, "cpus": 0.05, "mem": 16,
  "cmd": "[ -f data/born ] || echo $MESOS_EXECUTOR_ID > data/born; echo $$ >> data/starts; exec sleep 100000",
  "container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 1}}]},
  "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0}
}`, id, instances)
	app, err := appmodel.Parse([]byte(js))
	if err != nil {
		t.Fatalf("nemesis app: %v", err)
	}
	return app
}

// instanceOfTask is the instance part of a task id
// (<app>.instance-<uuid>._app.<incarnation>).
func instanceOfTask(taskID string) string {
	if i := strings.Index(taskID, "._app."); i >= 0 {
		return taskID[:i]
	}
	return taskID
}

// nemesis holds the suite's cluster and what it has observed.
type nemesis struct {
	t         *testing.T
	rng       *rand.Rand
	servers   []*nemesisServer
	net       *raftNet
	mesos     *proc
	mesosAddr string
	mesosDir  string
	runID     string

	mu        sync.Mutex
	want      map[string]int    // app → last acknowledged instance count
	agentOf   map[string]string // instance → its agent, first seen
	volumeOf  map[string]string // instance → its persistence id, first seen
	twice     []string          // instances seen running twice
	okOps     int
	failedOps int
	unknown   int
	opSeq     int
	// late holds, per app, the counts written with an unknown outcome
	// since the last convergence: they may apply at any time.
	late       map[string]map[int]bool
	lateWrites int
	// disks is true when each server's data dir is a small file system
	// of its own that the disk-full fault can fill.
	disks bool
}

func (n *nemesis) leader(among []*nemesisServer) *nemesisServer {
	n.t.Helper()
	return agreedLeaderOf(n.t, among)
}

func (n *nemesis) others(not *nemesisServer) []*nemesisServer {
	var out []*nemesisServer
	for _, s := range n.servers {
		if s != not {
			out = append(out, s)
		}
	}
	return out
}

// write runs one client write with a request id, retried while its outcome
// is unknown; it reports whether it was acknowledged.
func (n *nemesis) write(ctx context.Context, s *nemesisServer, call func(ctx context.Context, reqID string) error) bool {
	ok, _ := n.writeOutcome(ctx, s, call)
	return ok
}

// writeOutcome is write, also reporting whether the outcome is unknown (the
// write may still apply, at any later time).
func (n *nemesis) writeOutcome(ctx context.Context, s *nemesisServer, call func(ctx context.Context, reqID string) error) (ok, unknown bool) {
	n.mu.Lock()
	n.opSeq++
	reqID := fmt.Sprintf("nemesis-%s-%d", n.runID, n.opSeq)
	n.mu.Unlock()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		actx, cancel := context.WithTimeout(ctx, nemesisOpWait)
		err = call(actx, reqID)
		cancel()
		if err == nil || definiteFailure(err) || ctx.Err() != nil {
			break
		}
		linSleep(ctx, time.Duration(attempt+1)*200*time.Millisecond)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case err == nil:
		n.okOps++
	case definiteFailure(err):
		n.failedOps++
	default:
		n.unknown++
	}
	return err == nil, err != nil && !definiteFailure(err)
}

// scale sets app's instance count; a write of unknown outcome is
// remembered as one that may still apply (n.late).
func (n *nemesis) scale(ctx context.Context, s *nemesisServer, app string, count int) bool {
	ok, unknown := n.writeOutcome(ctx, s, func(ctx context.Context, reqID string) error {
		_, err := s.apps.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{
			Id: app, App: &v1.App{Instances: ptr(int32(count))}, Partial: true, Force: true, RequestId: reqID}))
		return err
	})
	if unknown {
		n.mu.Lock()
		if n.late[app] == nil {
			n.late[app] = map[int]bool{}
		}
		n.late[app][count] = true
		n.mu.Unlock()
	}
	return ok
}

// lateWrite handles a stored count that differs from the wanted one: if a
// write of unknown outcome set it (it applied after the settling write:
// a client cancelled as the clients stopped, or a request held by a paused
// server), the wanted count is written again and true returned; any other
// count is an acknowledged write lost or a phantom one, and fails the test.
func (n *nemesis) lateWrite(round int, app string, stored, want int) bool {
	n.mu.Lock()
	late := n.late[app][stored]
	if late {
		n.lateWrites++
	}
	n.mu.Unlock()
	if !late {
		n.t.Errorf("round %d: %s stores %d instances: neither the acknowledged %d nor a write of unknown outcome", round, app, stored, want)
		return false
	}
	n.t.Logf("round %d: %s: a write of unknown outcome (%d instances) applied after the settling write; writing %d again", round, app, stored, want)
	n.scale(context.Background(), n.servers[n.rng.IntN(len(n.servers))], app, want)
	return true
}

// client scales and restarts app through server s until ctx ends. A scale
// that is acknowledged becomes the app's wanted count; one of unknown
// outcome leaves it uncertain until the settle step writes it again.
func (n *nemesis) client(ctx context.Context, app string, s *nemesisServer, rng *rand.Rand) {
	for ctx.Err() == nil {
		if rng.IntN(4) == 0 {
			n.write(ctx, s, func(ctx context.Context, reqID string) error {
				_, err := s.apps.RestartApp(ctx, connect.NewRequest(&v1.RestartAppRequest{Id: app, Force: true, RequestId: reqID}))
				return err
			})
		} else {
			count := 1 + rng.IntN(nemesisMaxInst)
			if n.scale(ctx, s, app, count) {
				n.mu.Lock()
				n.want[app] = count
				n.mu.Unlock()
			}
		}
		linSleep(ctx, time.Duration(500+rng.IntN(1000))*time.Millisecond)
	}
}

// taskProcesses maps each instance to the pids of its live task processes
// (taskProcessesOf mesos-local's).
func (n *nemesis) taskProcesses() map[string][]int {
	out := map[string][]int{}
	for taskID, pids := range taskProcessesOf(n.mesos.owner) {
		inst := instanceOfTask(taskID)
		out[inst] = append(out[inst], pids...)
	}
	return out
}

// taskProcessesOf maps each task to the pids of its live processes:
// processes carrying the owner mark of the process that runs the agents
// (mesos-local, or berth dev) in their environment (tasks inherit it)
// whose parent is not a process of the same task (PostgreSQL's backends,
// each in a session of its own, are children of the postmaster; a task's
// own process has mesos-local or, adopted after a restart, init as its
// parent).
func taskProcessesOf(owner string) map[string][]int {
	mark := "\x00" + ownerEnv + "=" + owner + "\x00"
	type proc struct{ pid, ppid int }
	byTask := map[string][]proc{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !strings.Contains("\x00"+string(env), mark) {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:])) // state ppid ...
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "MESOS_EXECUTOR_ID="); ok {
				byTask[v] = append(byTask[v], proc{pid, ppid})
			}
		}
	}
	out := map[string][]int{}
	for taskID, ps := range byTask {
		own := map[int]bool{}
		for _, p := range ps {
			own[p.pid] = true
		}
		for _, p := range ps {
			if !own[p.ppid] {
				out[taskID] = append(out[taskID], p.pid)
			}
		}
	}
	return out
}

// sampleTwice records instances with more than one live process.
func (n *nemesis) sampleTwice() {
	for inst, pids := range n.taskProcesses() {
		if len(pids) > 1 {
			n.mu.Lock()
			n.twice = append(n.twice, fmt.Sprintf("%s runs as pids %v", inst, pids))
			n.mu.Unlock()
		}
	}
}

// listTasks lists an app's tasks through s (nil on error).
func (n *nemesis) listTasks(s *nemesisServer, app string) []*v1.TaskView {
	ctx, cancel := context.WithTimeout(context.Background(), nemesisOpWait)
	defer cancel()
	res, err := s.tasks.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{AppId: app}))
	if err != nil {
		return nil
	}
	return res.Msg.GetTasks()
}

// appInstances is the app's instance count as s stores it (-1 on error).
func (n *nemesis) appInstances(s *nemesisServer, app string) int {
	ctx, cancel := context.WithTimeout(context.Background(), nemesisOpWait)
	defer cancel()
	res, err := s.apps.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: app}))
	if err != nil {
		return -1
	}
	return int(res.Msg.GetApp().GetInstances())
}

// volumeDir finds the host directory of a persistence id under the work dir.
func (n *nemesis) volumeDir(persistenceID string) string {
	for _, d := range volumeDirs(n.t, n.mesosDir) {
		if filepath.Base(d) == persistenceID {
			return d
		}
	}
	return ""
}

// converge waits until the cluster is quiet and right after round: every
// server agrees on the leader and stores each app's wanted count, and
// that many of its tasks run; then it checks identity and data.
func (n *nemesis) converge(round int, apps []string) {
	t := n.t
	t.Helper()
	lead := n.leader(n.servers)
	n.mu.Lock()
	want := map[string]int{}
	for k, v := range n.want {
		want[k] = v
	}
	n.mu.Unlock()
	for _, app := range apps {
		n.await(nemesisConverge, fmt.Sprintf("round %d: %s to run %d tasks on every server's view", round, app, want[app]), func() bool {
			if got := n.appInstances(lead, app); got >= 0 && got != want[app] {
				// Settled, yet another count: a late write, or a failure.
				if !n.lateWrite(round, app, got, want[app]) {
					n.dump()
					t.FailNow()
				}
				return false
			}
			for _, s := range n.servers {
				if n.appInstances(s, app) != want[app] {
					return false
				}
			}
			running := 0
			for _, tk := range n.listTasks(lead, app) {
				if tk.GetState() == "TASK_RUNNING" {
					running++
				}
			}
			return running == want[app]
		})
		for _, tk := range n.listTasks(lead, app) {
			inst := tk.GetInstanceId()
			var pid string
			for _, v := range tk.GetLocalVolumes() {
				pid = v.GetPersistenceId()
			}
			n.mu.Lock()
			if a, ok := n.agentOf[inst]; ok && tk.GetAgentId() != "" && a != tk.GetAgentId() {
				t.Errorf("round %d: instance %s moved from agent %s to %s", round, inst, a, tk.GetAgentId())
			} else if !ok && tk.GetAgentId() != "" {
				n.agentOf[inst] = tk.GetAgentId()
			}
			if v, ok := n.volumeOf[inst]; ok && pid != "" && v != pid {
				t.Errorf("round %d: instance %s changed volume from %s to %s", round, inst, v, pid)
			} else if !ok && pid != "" {
				n.volumeOf[inst] = pid
			}
			n.mu.Unlock()
			if tk.GetState() != "TASK_RUNNING" || app == nemesisPG {
				continue // PostgreSQL's data is checked by its rows
			}
			dir := n.volumeDir(pid)
			// TASK_RUNNING comes as the task's shell starts, which on a busy
			// machine can be before its first line wrote the file.
			var b []byte
			var err error
			for deadline := time.Now().Add(nemesisOpWait * 3); ; time.Sleep(200 * time.Millisecond) {
				b, err = os.ReadFile(filepath.Join(dir, "born"))
				if (err == nil && len(b) > 0) || time.Now().After(deadline) {
					break
				}
			}
			if err != nil || !strings.HasPrefix(strings.TrimSpace(string(b)), inst) {
				t.Errorf("round %d: instance %s: the file its first task wrote in volume %s is gone or foreign: %q %v", round, inst, dir, b, err)
			}
		}
	}
	// The processes agree with Berth: one per running instance, once the
	// tasks being killed have ended.
	wantTotal := 0
	for _, app := range apps {
		wantTotal += want[app]
	}
	var procs map[string][]int
	n.await(nemesisConverge, fmt.Sprintf("round %d: %d task processes, one per running instance", round, wantTotal), func() bool {
		procs = n.taskProcesses()
		total := 0
		for _, pids := range procs {
			total += len(pids)
		}
		return total == wantTotal
	})
	for inst, pids := range procs {
		if len(pids) > 1 {
			t.Errorf("round %d: instance %s runs twice: pids %v", round, inst, pids)
		}
	}
	n.mu.Lock()
	clear(n.late)
	n.mu.Unlock()
}

// keepLogs writes every process's whole output to a directory that
// outlives the test, when it failed.
func (n *nemesis) keepLogs() {
	if !n.t.Failed() {
		return
	}
	dir, err := os.MkdirTemp("", "berth-nemesis-")
	if err != nil {
		n.t.Logf("cannot keep the logs: %v", err)
		return
	}
	procs := []*proc{n.mesos}
	for _, s := range n.servers {
		procs = append(procs, s.p)
	}
	for _, p := range procs {
		_ = os.WriteFile(filepath.Join(dir, p.name+".log"), []byte(p.out.String()), 0o644)
	}
	n.t.Logf("the processes' logs are in %s", dir)
}

// await is eventually with a dump of what Berth and mesos-local think when
// it times out.
func (n *nemesis) await(timeout time.Duration, what string, cond func() bool) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			n.dump()
			n.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dump logs every server's view of the leader, tasks and deployments, and
// mesos-local's tasks.
func (n *nemesis) dump() {
	t := n.t
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range n.servers {
		t.Logf("dump: %s says the leader is %q", s.name, s.leaderSeen())
	}
	lead := n.servers[0]
	for _, s := range n.servers {
		if s.leaderSeen() == s.name {
			lead = s
		}
	}
	n.mu.Lock()
	want := fmt.Sprint(n.want)
	n.mu.Unlock()
	t.Logf("dump: wanted counts %s; asking %s", want, lead.name)
	if res, err := lead.tasks.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{})); err == nil {
		for _, tk := range res.Msg.GetTasks() {
			t.Logf("dump: task %s instance %s agent %s state %s goal %s version %s message %q reason %s launchNotBefore %s",
				tk.GetId(), tk.GetInstanceId(), tk.GetAgentId(), tk.GetState(), tk.GetGoal(), tk.GetVersion(), tk.GetMessage(), tk.GetReason(), tk.GetLaunchNotBefore())
		}
	} else {
		t.Logf("dump: list tasks: %v", err)
	}
	deps := berthv1connect.NewDeploymentServiceClient(http.DefaultClient, "http://"+lead.api)
	if res, err := deps.ListDeployments(ctx, connect.NewRequest(&v1.ListDeploymentsRequest{})); err == nil {
		for _, d := range res.Msg.GetDeployments() {
			t.Logf("dump: deployment %s version %s apps %v steps %v at %d status %s message %q created %s finished %s", d.GetId(), d.GetVersion(), d.GetAffectedApps(),
				d.GetSteps(), d.GetCurrentStep(), d.GetStatus(), d.GetMessage(), d.GetCreatedAt().AsTime().Format(time.RFC3339Nano), d.GetFinishedAt().AsTime().Format(time.RFC3339Nano))
		}
	} else {
		t.Logf("dump: list deployments: %v", err)
	}
	for _, s := range n.servers {
		for app := range n.want {
			if res, err := s.apps.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: app})); err == nil {
				t.Logf("dump: %s: app %s instances %d version %s summary %v", s.name, app, res.Msg.GetApp().GetInstances(),
					res.Msg.GetApp().GetVersion(), res.Msg.GetSummary())
			}
		}
	}
	// Each app's version history on the leader, newest first, with the
	// instance count of each version: which write set the count, and
	// whether a later version (a restart) carried an older count.
	for app := range n.want {
		res, err := lead.apps.ListAppVersions(ctx, connect.NewRequest(&v1.ListAppVersionsRequest{Id: app}))
		if err != nil {
			t.Logf("dump: versions of %s: %v", app, err)
			continue
		}
		var hist []string
		for _, ver := range res.Msg.GetVersions() {
			count := "?"
			if r, err := lead.apps.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: app, Version: ver})); err == nil {
				count = strconv.Itoa(int(r.Msg.GetApp().GetInstances()))
			}
			hist = append(hist, ver+"="+count)
		}
		t.Logf("dump: %s versions (newest first, =instances): %s", app, strings.Join(hist, " "))
	}
	st := mesosStateOrNil(n.mesosAddr)
	tasks, _ := dig(st, "get_state", "get_tasks", "tasks").([]any)
	for _, tk := range tasks {
		t.Logf("dump: mesos-local task %v state %v", dig(tk, "task_id", "value"), dig(tk, "state"))
	}
	fws, _ := dig(st, "get_state", "get_frameworks", "frameworks").([]any)
	for _, fw := range fws {
		offers, _ := dig(fw, "offers").([]any)
		t.Logf("dump: mesos-local framework %v active %v connected %v offers %d", dig(fw, "framework_info", "id", "value"), dig(fw, "active"), dig(fw, "connected"), len(offers))
	}
	// The leader's goroutines, in its log (SIGQUIT ends it with a dump).
	_ = syscall.Kill(lead.p.cmd.Process.Pid, syscall.SIGQUIT)
	select {
	case <-lead.p.done:
	case <-time.After(10 * time.Second):
	}
}

// settle writes each app's wanted count once more until it is
// acknowledged, so that the count to converge to is known after writes of
// unknown outcome.
func (n *nemesis) settle(apps []string) {
	n.t.Helper()
	for _, app := range apps {
		n.mu.Lock()
		count := n.want[app]
		n.mu.Unlock()
		eventually(n.t, 3*time.Minute, "the settling write of "+app, func() bool {
			return n.scale(context.Background(), n.servers[n.rng.IntN(len(n.servers))], app, count)
		})
	}
}

// target picks the server a fault hits: the leader or a follower, evenly.
func (n *nemesis) target() (*nemesisServer, string) {
	lead := n.leader(n.servers)
	if n.rng.IntN(2) == 0 {
		return lead, "leader"
	}
	return n.others(lead)[n.rng.IntN(2)], "follower"
}

// fault is one kind of fault: inject returns what heals it and a description.
type fault struct {
	name   string
	inject func(n *nemesis) (heal func(), desc string)
}

// kill9 kills s and holds its ports while it is down: other test binaries
// on the machine draw ports from the same range, and one that took a down
// server's port kept it from coming back ("address already in use"). The
// returned func releases them and restarts s.
func (n *nemesis) kill9(s *nemesisServer) (restart func()) {
	s.p.kill9()
	var held []int
	for _, a := range []struct {
		typ  int
		addr string
	}{{syscall.SOCK_STREAM, s.api}, {syscall.SOCK_STREAM, s.raft}, {syscall.SOCK_STREAM, s.gossip}, {syscall.SOCK_DGRAM, s.gossip}} {
		if fd, err := bindOnly(a.typ, a.addr); err == nil {
			held = append(held, fd)
		}
	}
	return func() {
		for _, fd := range held {
			_ = syscall.Close(fd)
		}
		n.restart(s)
	}
}

// bindOnly binds a socket to addr without listening and without
// SO_REUSEADDR: no other socket can bind the port, and a connection to it
// is refused, as to a server that is down.
func bindOnly(typ int, addr string) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return -1, err
	}
	sa := &syscall.SockaddrInet4{}
	if sa.Port, err = strconv.Atoi(port); err != nil {
		return -1, err
	}
	copy(sa.Addr[:], net.ParseIP(host).To4())
	fd, err := syscall.Socket(syscall.AF_INET, typ|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Bind(fd, sa); err != nil {
		_ = syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// restart starts s again, retrying while another process holds one of its
// ports (the window between releasing and binding them is short, not
// empty).
func (n *nemesis) restart(s *nemesisServer) {
	n.t.Helper()
	for attempt := 1; ; attempt++ {
		s.p.restart()
		select {
		case <-s.p.done:
			out := tail(s.p.out.String(), 5)
			if attempt >= 30 || !strings.Contains(out, "address already in use") {
				n.t.Fatalf("restart %s: it exited:\n%s", s.name, out)
			}
			n.t.Logf("restart %s: a port of its is taken (attempt %d); trying again", s.name, attempt)
			time.Sleep(2 * time.Second)
		case <-time.After(3 * time.Second):
			return
		}
	}
}

var nemesisFaults = []fault{
	{"kill-leader", func(n *nemesis) (func(), string) {
		lead := n.leader(n.servers)
		restart := n.kill9(lead)
		n.leader(n.others(lead))
		return restart, "kill -9 leader " + lead.name
	}},
	{"kill-follower", func(n *nemesis) (func(), string) {
		lead := n.leader(n.servers)
		f := n.others(lead)[n.rng.IntN(2)]
		return n.kill9(f), "kill -9 follower " + f.name
	}},
	{"partition", func(n *nemesis) (func(), string) {
		s, role := n.target()
		n.net.isolate(s.name)
		// The cut is real: the other two have (or elect) a leader
		// among themselves.
		lead := n.leader(n.others(s))
		return n.net.heal, fmt.Sprintf("partition %s %s (Raft, both ways; %s leads the rest)", role, s.name, lead.name)
	}},
	{"pause", func(n *nemesis) (func(), string) {
		s, role := n.target()
		_ = syscall.Kill(s.p.cmd.Process.Pid, syscall.SIGSTOP)
		return func() { _ = syscall.Kill(s.p.cmd.Process.Pid, syscall.SIGCONT) }, "SIGSTOP " + role + " " + s.name
	}},
	{"restart-mesos-local", func(n *nemesis) (func(), string) {
		how := "SIGTERM"
		if n.rng.IntN(2) == 0 {
			how = "kill -9"
			n.mesos.kill9()
		} else {
			n.mesos.stop(syscall.SIGTERM, 30*time.Second)
		}
		return func() {
			n.mesos.restart()
			eventually(n.t, time.Minute, "mesos-local to answer", func() bool { return len(mesosStateOrNil(n.mesosAddr)) > 0 })
		}, "restart mesos-local (" + how + ")"
	}},
}

// faults lists the faults this run draws from: every kind, the full disk
// only where the test can mount a file system (as root; under CI, which
// runs as root, not being root is a failure), narrowed to
// -nemesis.faults when given.
func (n *nemesis) faults() []fault {
	t := n.t
	all := append([]fault(nil), nemesisFaults...)
	if why := diskFaultUnavailable(t); why != "" {
		if os.Getenv("CI") != "" && os.Geteuid() != 0 {
			// CI installs packages, so it runs as root; a machine whose
			// root may not mount (no CAP_SYS_ADMIN in a container) only
			// loses this one fault, said in the log.
			t.Fatalf("nemesis: CI runs as root and must run the disk-full fault, but: %s", why)
		}
		t.Logf("nemesis: no disk-full fault here: %s", why)
	} else {
		n.disks = true
		all = append(all, diskFullFault)
	}
	if *nemesisOnly == "" {
		return all
	}
	var out []fault
	for _, name := range strings.Split(*nemesisOnly, ",") {
		found := false
		for _, f := range all {
			if f.name == strings.TrimSpace(name) {
				out = append(out, f)
				found = true
			}
		}
		if !found {
			var names []string
			for _, f := range all {
				names = append(names, f.name)
			}
			t.Fatalf("-nemesis.faults: no fault %q here (this run can draw from %s)", name, strings.Join(names, ", "))
		}
	}
	return out
}

// TestNemesis runs the suite for -nemesis.rounds rounds.
func TestNemesis(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process fault suite")
	}
	if *nemesisRounds <= 0 {
		t.Skip("-nemesis.rounds 0: the nemesis suite is skipped")
	}
	seed := *nemesisSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("nemesis: %d rounds, seed %d (rerun with -nemesis.seed %d)", *nemesisRounds, seed, seed)
	n := &nemesis{t: t, rng: rand.New(rand.NewPCG(seed, 0x6e656d65)), runID: fmt.Sprintf("%x", rand.Uint64()),
		want: map[string]int{}, agentOf: map[string]string{}, volumeOf: map[string]string{}, late: map[string]map[int]bool{}}

	// Kill what mesos-local leaves running after everything else stopped.
	faults := n.faults()
	n.mesos, n.mesosAddr, n.mesosDir = startMesosLocal(t, 2)
	names := []string{"nemesis-a", "nemesis-b", "nemesis-c"}
	n.net = newRaftNet()
	for _, name := range names {
		dataDir := t.TempDir()
		if n.disks {
			dataDir = mountDataDir(t)
		}
		s := &nemesisServer{server: server{name: name, api: freePort(t), raft: freePort(t), gossip: freePort(t), dataDir: dataDir}}
		hc := &http.Client{Transport: &http.Transport{}}
		t.Cleanup(hc.CloseIdleConnections)
		s.apps = berthv1connect.NewAppServiceClient(hc, "http://"+s.api)
		s.tasks = berthv1connect.NewTaskServiceClient(hc, "http://"+s.api)
		s.cluster = berthv1connect.NewClusterServiceClient(hc, "http://"+s.api)
		n.servers = append(n.servers, s)
	}
	proxies := map[string]string{}
	for _, s := range n.servers {
		proxies[s.name] = freePort(t)
		n.net.proxy(t, s.name, proxies[s.name], s.raft)
	}
	for _, s := range n.servers {
		args := []string{"server", "--node-name", s.name, "--data-dir", s.dataDir,
			"--api-addr", s.api, "--raft-addr", s.raft, "--raft-advertise", proxies[s.name], "--gossip-addr", s.gossip,
			"--bootstrap-expect", "3", "--mesos-master", "http://" + n.mesosAddr,
			"--task-users", "*"} // PostgreSQL runs as postgres
		for _, o := range n.servers {
			if o != s {
				args = append(args, "--join", o.gossip)
			}
		}
		s.p = startProc(t, s.name, args...)
	}
	n.leader(n.servers)
	t.Cleanup(n.keepLogs)

	var apps []string
	for i := 0; i < nemesisApps; i++ {
		app := fmt.Sprintf("/nemesis/app-%d", i)
		apps = append(apps, app)
		def := nemesisApp(t, app, 1)
		eventually(t, 2*time.Minute, "create "+app, func() bool {
			return n.write(context.Background(), n.servers[0], func(ctx context.Context, reqID string) error {
				_, err := n.servers[0].apps.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: def, RequestId: "create-" + app}))
				if connect.CodeOf(err) == connect.CodeAlreadyExists {
					return nil
				}
				return err
			})
		})
		n.want[app] = 1
	}
	all := apps // every app the checks cover; the client writes to apps
	var pg *pgWriter
	if havePostgres() {
		var stopPG func()
		pg, stopPG = n.startPostgres()
		defer stopPG()
		all = append(append([]string(nil), apps...), nemesisPG)
	} else {
		t.Log("nemesis: no PostgreSQL here (needs it in /usr/lib/postgresql, a postgres user and root); running without it")
	}
	n.converge(0, all)
	if pg != nil {
		pg.awaitRows(10)
		pg.check(0)
	}

	// The sampler looks for an instance running twice throughout.
	sampleCtx, stopSampler := context.WithCancel(context.Background())
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for sampleCtx.Err() == nil {
			n.sampleTwice()
			linSleep(sampleCtx, 300*time.Millisecond)
		}
	}()
	defer func() { stopSampler(); sampler.Wait() }()

	counts := map[string]int{}
	for round := 1; round <= *nemesisRounds; round++ {
		f := faults[n.rng.IntN(len(faults))]
		hold := time.Duration(3000+n.rng.IntN(5000)) * time.Millisecond
		ctx, stopClients := context.WithCancel(context.Background())
		var clients sync.WaitGroup
		for i, app := range apps {
			clients.Add(1)
			crng := rand.New(rand.NewPCG(seed+uint64(round), uint64(i)))
			go func() {
				defer clients.Done()
				n.client(ctx, app, n.servers[(i+round)%len(n.servers)], crng)
			}()
		}
		linSleep(context.Background(), 2*time.Second) // traffic before the fault
		began := time.Now()
		heal, desc := f.inject(n)
		t.Logf("round %d: %s", round, desc)
		linSleep(context.Background(), hold) // the fault's duration
		heal()
		linSleep(context.Background(), 2*time.Second) // traffic after the heal
		stopClients()
		clients.Wait()
		n.settle(apps)
		n.converge(round, all)
		if pg != nil {
			pg.check(round)
		}
		counts[f.name]++
		n.mu.Lock()
		ok, failed, unknown := n.okOps, n.failedOps, n.unknown
		n.mu.Unlock()
		t.Logf("round %d: %s for %s; converged and checked %s after the fault began; ops ok %d, failed %d, unknown %d",
			round, desc, hold, time.Since(began).Round(time.Second), ok, failed, unknown)
		if t.Failed() {
			t.Fatalf("round %d broke an invariant (seed %d)", round, seed)
		}
	}

	// Remove everything: no task, reservation or volume may remain.
	for _, app := range all {
		eventually(t, 2*time.Minute, "delete "+app, func() bool {
			return n.write(context.Background(), n.servers[0], func(ctx context.Context, reqID string) error {
				_, err := n.servers[0].apps.DeleteApp(ctx, connect.NewRequest(&v1.DeleteAppRequest{Id: app, Force: true, RequestId: reqID}))
				if connect.CodeOf(err) == connect.CodeNotFound {
					return nil
				}
				return err
			})
		})
	}
	eventually(t, nemesisConverge, "every reservation and volume released and every task process gone", func() bool {
		return len(reservedResources(t, n.mesosAddr)) == 0 && len(n.taskProcesses()) == 0
	})
	stopSampler()
	sampler.Wait()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.twice) > 0 {
		t.Errorf("instances ran twice:\n%s", strings.Join(n.twice, "\n"))
	}
	n.net.mu.Lock()
	untagged := n.net.untagged
	n.net.mu.Unlock()
	if untagged > 0 {
		t.Errorf("%d Raft connections could not be attributed to a server: the partitions were not complete", untagged)
	}
	var kinds []string
	for k, v := range counts {
		kinds = append(kinds, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(kinds)
	t.Logf("nemesis: %d rounds (%s), seed %d; ops ok %d, failed %d, unknown %d (%d applied after the settling write); %d instances; %d seen running twice; nothing leaked",
		*nemesisRounds, strings.Join(kinds, ", "), seed, n.okOps, n.failedOps, n.unknown, n.lateWrites, len(n.agentOf), len(n.twice))
}
