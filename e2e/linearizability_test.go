package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// Linearizability under faults, after etcd's robustness tests: a real
// 3-server cluster under traffic from concurrent clients, one fault at a
// time (kill -9 of the leader then restart; SIGSTOP of the leader then
// SIGCONT), every request recorded with its call and return times, and the
// history checked with porcupine against a single-register model.
//
// The register is the label "k" of one app with no instances (no Mesos work;
// the servers' Mesos master is unreachable). A write is a partial UpdateApp
// setting labels {"k": unique value} with force and a client-chosen
// request_id; a read is GetApp with READ_CONSISTENCY_CONSISTENT.

const (
	linApp     = "/lin-register"
	linKey     = "k"
	linInit    = "init"
	linClients = 4
	// linRounds is the test's budget: each round kills the leader (and
	// restarts it) and pauses the leader, each under traffic that gets
	// through. Traffic runs until every round is done, however long a busy
	// machine takes; the clients' pacing bounds the history's size.
	linRounds   = 2
	linOpGap    = 15 * time.Millisecond // each client's pause between operations
	linHardStop = 8 * time.Minute       // safety net: a hung cluster fails the test
	linOpWait   = 10 * time.Second      // per attempt
	linPause    = 3 * time.Second       // how long a SIGSTOPped leader stays paused
)

// linInput is a register operation: a read, or a write of value.
type linInput struct {
	write bool
	value string
}

// linOutput is what an operation returned: the value read, or for a write
// whose outcome is unknown, unknown=true (the model accepts it anyway).
type linOutput struct {
	value   string
	unknown bool
}

// registerModel is a single register holding a string.
var registerModel = porcupine.Model{
	Init: func() interface{} { return linInit },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in, out := input.(linInput), output.(linOutput)
		if in.write {
			return true, in.value
		}
		return out.value == state.(string), state
	},
	DescribeOperation: func(input, output interface{}) string {
		in, _ := input.(linInput)
		out, _ := output.(linOutput)
		switch {
		case in.write && out.unknown:
			return fmt.Sprintf("put(%q) -> unknown", in.value)
		case in.write:
			return fmt.Sprintf("put(%q)", in.value)
		}
		return fmt.Sprintf("get() -> %q", out.value)
	},
	DescribeState: func(state interface{}) string { return fmt.Sprintf("%q", state) },
}

// linServer is one server of the cluster with its API clients.
type linServer struct {
	server
	apps    berthv1connect.AppServiceClient
	tasks   berthv1connect.TaskServiceClient // the nemesis suite's
	cluster berthv1connect.ClusterServiceClient
}

// leaderSeen is the leader's name as s reports it ("" if unknown).
func (s *linServer) leaderSeen() string { return leaderNamedBy(s.cluster) }

// agreedLeaderOf waits until every listed server names the same leader
// among them, and returns it.
func agreedLeaderOf(t *testing.T, among []*linServer) *linServer {
	t.Helper()
	var lead *linServer
	eventually(t, 3*time.Minute, "an agreed leader", func() bool {
		var ok bool
		lead, ok = agreedAmong(among, func(s *linServer) string { return s.name }, (*linServer).leaderSeen)
		return ok
	})
	return lead
}

// linRecorder collects the history of every client.
type linRecorder struct {
	origin time.Time
	mu     sync.Mutex
	ops    []porcupine.Operation
	// counts by outcome
	okWrites, okReads, unknownWrites, failedWrites, failedReads int
	// errSamples counts failures by kind and code; lastErr keeps the
	// newest message of each.
	errSamples map[string]int
	lastErr    map[string]string
}

func (r *linRecorder) now() int64 { return int64(time.Since(r.origin)) }

func (r *linRecorder) record(op porcupine.Operation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
}

func (r *linRecorder) count(f func(r *linRecorder)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *linRecorder) sampleErr(kind string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := kind + " " + connect.CodeOf(err).String()
	r.errSamples[k]++
	r.lastErr[k] = err.Error()
}

// definiteFailure reports whether a failed write certainly did not apply.
func definiteFailure(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodeAlreadyExists,
		connect.CodeAborted, connect.CodeFailedPrecondition, connect.CodePermissionDenied:
		return true
	}
	return false
}

// linClient issues random reads and writes against one server, one every
// linOpGap at most, until ctx ends.
func linClient(ctx context.Context, id int, s *linServer, rec *linRecorder, runID string) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	backoff := time.Duration(0)
	for n := 0; ctx.Err() == nil; n++ {
		var ok bool
		if rng.IntN(2) == 0 {
			ok = linRead(ctx, id, s, rec)
		} else {
			ok = linWrite(ctx, id, n, s, rec, runID)
		}
		// Pace a client whose server is down or has no leader, so that it
		// neither spins through its budget of operations nor floods the
		// history with writes of unknown outcome.
		if ok {
			backoff = 0
			linSleep(ctx, linOpGap)
			continue
		}
		backoff = min(max(2*backoff, 50*time.Millisecond), 500*time.Millisecond)
		linSleep(ctx, backoff)
	}
}

// linSleep waits d or until ctx ends.
func linSleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// linRead reads the register; it reports whether the read succeeded.
func linRead(ctx context.Context, id int, s *linServer, rec *linRecorder) bool {
	call := rec.now()
	actx, cancel := context.WithTimeout(ctx, linOpWait)
	res, err := s.apps.GetApp(actx, connect.NewRequest(&v1.GetAppRequest{
		Id: linApp, Consistency: v1.ReadConsistency_READ_CONSISTENCY_CONSISTENT,
	}))
	cancel()
	ret := rec.now()
	if err != nil {
		// A failed read changes nothing: leave it out of the history.
		rec.count(func(r *linRecorder) { r.failedReads++ })
		if ctx.Err() == nil {
			rec.sampleErr("read", err)
		}
		return false
	}
	v, ok := res.Msg.GetApp().GetLabels()[linKey]
	if !ok {
		v = "<no label k>"
	}
	rec.record(porcupine.Operation{ClientId: id, Input: linInput{}, Call: call, Output: linOutput{value: v}, Return: ret,
		Metadata: s.name})
	rec.count(func(r *linRecorder) { r.okReads++ })
	return true
}

// linWrite sets the register to a unique value. After an unknown outcome it
// retries with the same request_id (the server must apply it once); if the
// outcome stays unknown the write is recorded as possibly applied. It
// reports whether the write succeeded.
func linWrite(ctx context.Context, id, n int, s *linServer, rec *linRecorder, runID string) bool {
	value := fmt.Sprintf("c%d-%d", id, n)
	req := &v1.UpdateAppRequest{
		Id:        linApp,
		App:       &v1.App{Labels: map[string]string{linKey: value}},
		Partial:   true,
		Force:     true,
		RequestId: fmt.Sprintf("lin-%s-%s", runID, value),
	}
	call := rec.now()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		actx, cancel := context.WithTimeout(ctx, linOpWait)
		_, err = s.apps.UpdateApp(actx, connect.NewRequest(req))
		cancel()
		if err == nil || definiteFailure(err) || ctx.Err() != nil {
			break
		}
		rec.sampleErr("write attempt", err)
		linSleep(ctx, time.Duration(attempt+1)*100*time.Millisecond)
	}
	ret := rec.now()
	in := linInput{write: true, value: value}
	switch {
	case err == nil:
		rec.record(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: linOutput{}, Return: ret, Metadata: s.name})
		rec.count(func(r *linRecorder) { r.okWrites++ })
	case definiteFailure(err):
		rec.sampleErr("write", err)
		rec.count(func(r *linRecorder) { r.failedWrites++ })
	default:
		// Unknown outcome: it may apply at any time after the call. Its
		// return time is fixed to the end of the history once known; a
		// client id of its own keeps it from overlapping this client's
		// later operations in the visualization.
		rec.count(func(r *linRecorder) {
			r.unknownWrites++
			r.ops = append(r.ops, porcupine.Operation{ClientId: -1, Input: in, Call: call,
				Output: linOutput{unknown: true}, Return: -1, Metadata: fmt.Sprintf("%s: %v", s.name, err)})
		})
	}
	return err == nil
}

// linHistory prepares the recorded operations for the checker. A write of
// unknown outcome may take effect any time after its call, so it returns
// after everything else. One whose value no read returned is left out:
// a history with it is linearizable exactly when the history without it
// is (place it last), and such writes, concurrent with everything, are
// what makes the search expensive. end is the latest time in the history.
func linHistory(all []porcupine.Operation) (ops []porcupine.Operation, end int64, dropped int) {
	read := map[string]bool{}
	for _, op := range all {
		end = max(end, op.Call, op.Return)
		if !op.Input.(linInput).write {
			read[op.Output.(linOutput).value] = true
		}
	}
	nextID := linClients
	for _, op := range all {
		if op.Output.(linOutput).unknown {
			if !read[op.Input.(linInput).value] {
				dropped++
				continue
			}
			op.Return = end + 1
			op.ClientId = nextID
			nextID++
		}
		ops = append(ops, op)
	}
	return ops, end, dropped
}

// startLinCluster starts three servers whose Mesos master does not exist
// (no Mesos work: instances stay waiting), joined by gossip with
// bootstrap-expect 3. The test's cleanup stops them.
func startLinCluster(t *testing.T) []*linServer {
	t.Helper()
	mesos := "http://" + freePort(t)
	var servers []*linServer
	for i := 0; i < 3; i++ {
		s := &linServer{server: server{name: fmt.Sprintf("s%d", i+1), api: freePort(t), raft: freePort(t), gossip: freePort(t)}}
		// A client of its own per server, so a paused server does not hold
		// connections another client needs.
		hc := &http.Client{Transport: &http.Transport{}}
		t.Cleanup(hc.CloseIdleConnections)
		s.apps = berthv1connect.NewAppServiceClient(hc, "http://"+s.api)
		s.cluster = berthv1connect.NewClusterServiceClient(hc, "http://"+s.api)
		servers = append(servers, s)
	}
	for _, s := range servers {
		args := []string{"server", "--node-name", s.name, "--data-dir", t.TempDir(),
			"--api-addr", s.api, "--raft-addr", s.raft, "--gossip-addr", s.gossip,
			"--bootstrap-expect", "3", "--mesos-master", mesos}
		for _, o := range servers {
			if o != s {
				args = append(args, "--join", o.gossip)
			}
		}
		s.p = startProc(t, s.name, args...)
	}
	return servers
}

// othersThan is servers without not.
func othersThan(servers []*linServer, not *linServer) []*linServer {
	var out []*linServer
	for _, s := range servers {
		if s != not {
			out = append(out, s)
		}
	}
	return out
}

// TestLinearizableRegisterUnderFaults checks that consistent reads and
// forwarded, deduplicated writes of one app stay linearizable while the
// leader is killed and restarted, and while it is paused and resumed.
func TestLinearizableRegisterUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process fault test")
	}
	servers := startLinCluster(t)
	others := func(not *linServer) []*linServer { return othersThan(servers, not) }
	agreedLeader := func(among []*linServer) *linServer {
		t.Helper()
		return agreedLeaderOf(t, among)
	}
	agreedLeader(servers)

	// The register: an app with no instances and label k = init.
	eventually(t, 2*time.Minute, "the register app to be created", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), linOpWait)
		defer cancel()
		_, err := servers[0].apps.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{
			RequestId: "lin-create",
			App: &v1.App{Id: linApp, Cmd: proto.String("sleep 100000"), Instances: proto.Int32(0),
				Cpus: proto.Float64(0.01), Mem: proto.Float64(8), Labels: map[string]string{linKey: linInit}},
		}))
		if err != nil && connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("create the register app: %v", err)
		}
		return err == nil
	})

	rec := &linRecorder{origin: time.Now(), errSamples: map[string]int{}, lastErr: map[string]string{}}
	runID := fmt.Sprintf("%x", rand.Uint64())
	ctx, stopTraffic := context.WithTimeout(context.Background(), linHardStop)
	var wg sync.WaitGroup
	for i := 0; i < linClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			linClient(ctx, i, servers[i%len(servers)], rec, runID)
		}()
	}
	clientsDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(clientsDone)
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopTraffic()
			wg.Wait()
		}
	}
	t.Cleanup(stop)

	// progress waits until the clients have recorded n more successful
	// operations, so every phase runs under traffic that gets through.
	progress := func(n int, what string) {
		t.Helper()
		var base int
		rec.count(func(r *linRecorder) { base = r.okReads + r.okWrites })
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var now int
			var summary string
			rec.count(func(r *linRecorder) {
				now = r.okReads + r.okWrites
				summary = fmt.Sprintf("writes ok %d, unknown %d, failed %d; reads ok %d, failed %d; errors %v",
					r.okWrites, r.unknownWrites, r.failedWrites, r.okReads, r.failedReads, r.errSamples)
				summary += fmt.Sprintf("; last errors %q", r.lastErr)
			})
			if now >= base+n {
				return
			}
			select {
			case <-clientsDone:
				t.Fatalf("the clients stopped (hard stop after %s) before %s (%s)", linHardStop, what, summary)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (%s)", what, summary)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	var faults []porcupine.Annotation
	annotate := func(start int64, desc string) {
		faults = append(faults, porcupine.Annotation{Tag: "faults", Start: start, End: rec.now(), Description: desc,
			BackgroundColor: "#f4c7c3"})
		t.Logf("%s (%.1fs..%.1fs)", desc, time.Duration(start).Seconds(), time.Duration(rec.now()).Seconds())
	}
	progress(20, "traffic before the first fault")
	kills, pauses := 0, 0
	for round := 0; round < linRounds; round++ {
		// Fault 1: kill -9 the leader, wait for a new one under traffic,
		// restart the old one and wait until it follows.
		lead := agreedLeader(servers)
		start := rec.now()
		lead.p.kill9()
		newLead := agreedLeader(others(lead))
		progress(10, "operations after the leader was killed")
		lead.p.restart()
		eventually(t, 2*time.Minute, lead.name+" to rejoin as a follower", func() bool {
			return lead.leaderSeen() == newLead.name
		})
		kills++
		annotate(start, fmt.Sprintf("kill -9 leader %s; %s leads; %s restarted", lead.name, newLead.name, lead.name))
		progress(10, "operations after the restart")

		// Fault 2: pause the leader, resume it after linPause, wait until
		// all three agree on a leader again.
		lead = agreedLeader(servers)
		start = rec.now()
		if err := syscall.Kill(lead.p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(linPause) // the fault's duration, not a wait for state
		if err := syscall.Kill(lead.p.cmd.Process.Pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		newLead = agreedLeader(servers)
		pauses++
		annotate(start, fmt.Sprintf("SIGSTOP leader %s for %s; %s leads", lead.name, linPause, newLead.name))
		progress(10, "operations after the pause")
	}
	progress(20, "traffic after the last fault")
	stop()

	rec.mu.Lock()
	all := rec.ops
	okW, okR, unkW, failW, failR := rec.okWrites, rec.okReads, rec.unknownWrites, rec.failedWrites, rec.failedReads
	samples := rec.errSamples
	rec.mu.Unlock()
	ops, end, dropped := linHistory(all)
	t.Logf("history: %d ops over %.1fs; writes ok %d, unknown %d (%d never read, left out), failed %d; reads ok %d, failed %d; %d kills, %d pauses; errors %v",
		len(ops), time.Duration(end).Seconds(), okW, unkW, dropped, failW, okR, failR, kills, pauses, samples)

	checkLinearizable(t, "register", registerModel, ops, faults, 2*time.Minute)

	// The check must not pass vacuously.
	if okW < 50 || okR < 50 {
		t.Errorf("too little traffic got through: %d writes, %d reads (want at least 50 each)", okW, okR)
	}
	if kills != linRounds || pauses != linRounds {
		t.Errorf("faults injected: %d kills, %d pauses; want %d of each", kills, pauses, linRounds)
	}
}

// TestRegisterModelCatchesViolations keeps the checker honest: the model and
// linHistory reject a stale read, a read of a write that failed, and a read
// of a value before its write was called, and accept an unknown write seen
// after its caller gave up.
func TestRegisterModelCatchesViolations(t *testing.T) {
	w := func(c int, v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: linInput{write: true, value: v}, Call: call, Output: linOutput{}, Return: ret}
	}
	unknown := func(c int, v string, call int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: linInput{write: true, value: v}, Call: call, Output: linOutput{unknown: true}, Return: -1}
	}
	r := func(c int, v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: linInput{}, Call: call, Output: linOutput{value: v}, Return: ret}
	}
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{r(0, linInit, 0, 1), w(0, "a", 2, 3), r(1, "a", 4, 5)}, porcupine.Ok},
		{"concurrent read sees either", []porcupine.Operation{w(0, "a", 0, 10), r(1, linInit, 1, 2), r(2, "a", 3, 4)}, porcupine.Ok},
		{"stale read after acknowledged write", []porcupine.Operation{w(0, "a", 0, 1), w(0, "b", 2, 3), r(1, "a", 4, 5)}, porcupine.Illegal},
		{"read goes back in time", []porcupine.Operation{w(0, "a", 0, 10), r(1, "a", 1, 2), r(2, linInit, 3, 4)}, porcupine.Illegal},
		{"read of a write that failed", []porcupine.Operation{r(1, "a", 4, 5)}, porcupine.Illegal},
		{"read before the write was called", []porcupine.Operation{r(1, "a", 0, 1), w(0, "a", 2, 3)}, porcupine.Illegal},
		{"unknown write seen later", []porcupine.Operation{unknown(0, "a", 0), w(0, "b", 5, 6), r(1, "a", 7, 8)}, porcupine.Ok},
		{"unknown write never seen", []porcupine.Operation{unknown(0, "a", 0), r(1, linInit, 7, 8)}, porcupine.Ok},
		{"unknown write seen before its call", []porcupine.Operation{r(1, "a", 0, 1), unknown(0, "a", 2)}, porcupine.Illegal},
	}
	for _, c := range cases {
		ops, _, _ := linHistory(c.ops)
		if got := porcupine.CheckOperationsTimeout(registerModel, ops, 10*time.Second); got != c.want {
			t.Errorf("%s: porcupine says %s, want %s", c.name, got, c.want)
		}
	}
}

// checkLinearizable runs porcupine on ops (a history of model's
// operations, what names it in messages) and fails t when they are not
// linearizable or porcupine cannot decide within timeout, keeping a
// visualization with the faults as annotations and the history as text.
func checkLinearizable(t *testing.T, what string, model porcupine.Model, ops []porcupine.Operation, faults []porcupine.Annotation, timeout time.Duration) {
	t.Helper()
	began := time.Now()
	result, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	t.Logf("porcupine: %s in %s", result, time.Since(began).Round(time.Millisecond))
	if result == porcupine.Ok {
		return
	}
	info.AddAnnotations(faults)
	// Not t.TempDir: it is removed when the test ends, and the files are
	// what a reader needs afterwards.
	dir, err := os.MkdirTemp("", "berth-linearizability-")
	if err != nil {
		t.Fatalf("porcupine: %s; cannot keep the visualization: %v", result, err)
	}
	path := filepath.Join(dir, "linearizability.html")
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		t.Errorf("write the visualization: %v", err)
	}
	var b strings.Builder
	for _, op := range ops {
		fmt.Fprintf(&b, "client=%d call=%d return=%d %s [%v]\n", op.ClientId, op.Call, op.Return,
			model.DescribeOperation(op.Input, op.Output), op.Metadata)
	}
	if err := os.WriteFile(filepath.Join(dir, "history.txt"), []byte(b.String()), 0o644); err != nil {
		t.Errorf("write the history: %v", err)
	}
	if result == porcupine.Unknown {
		t.Fatalf("porcupine could not decide within its time limit; visualization: %s", path)
	}
	t.Fatalf("the %s history is not linearizable; visualization: %s (history in %s)", what, path, filepath.Join(dir, "history.txt"))
}
