package e2e

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Linearizability of the app map: several clients create, update, scale,
// delete, get and list apps on a 3-server cluster, through the leader and
// through followers, while the leader is killed (-9) and restarted and then
// a follower is; the history is checked with porcupine against a model
// whose state is the map app id → (exists, instances, marker), the marker
// being the label "m" each update sets to a unique value.
//
// Reads: GetApp and ListApps with READ_CONSISTENCY_CONSISTENT, which the
// leader answers after confirming its leadership with a quorum and applying
// every entry of earlier terms (docs/ARCHITECTURE.md, "Reads"); a follower
// forwards them. Default reads are served from the serving server's local
// store and are not linearizable by design (read-your-writes through the
// same server, or with Berth-Min-Index, is all they promise), so they are not
// in the history.
//
// The apps are in groups of appMapGroupSize; a list lists one group (an id
// prefix). Every operation touches one group, so the history is partitioned
// by group and each partition is checked alone, lists included.

const (
	appMapGroups    = 4
	appMapGroupSize = 3
	appMapClients   = 6
	appMapMaxScale  = 2
	// appMapBudget is the test's budget in recorded operations; the faults
	// are placed at fractions of it.
	appMapBudget   = 600
	appMapHardStop = 8 * time.Minute // safety net: a hung cluster fails the test
)

var appMapSeed = flag.Uint64("lin.seed", 0, "seed of TestLinearizableAppMapUnderFaults' clients (0: random, logged)")

// appMapKind is an operation of the app-map model.
type appMapKind int

const (
	amCreate appMapKind = iota
	amUpdate            // set the marker
	amScale             // set the instances
	amDelete
	amGet
	amList // every app of the group
)

func (k appMapKind) String() string {
	return [...]string{"create", "update", "scale", "delete", "get", "list"}[k]
}

// appMapInput is one operation on app slot of group (slot unused by list).
type appMapInput struct {
	kind      appMapKind
	group     int
	slot      int
	instances int    // create, scale
	marker    string // create, update
}

// appMapApp is one app as the model (and a read) sees it; the zero value is
// an app that does not exist.
type appMapApp struct {
	exists    bool
	instances int
	marker    string
}

func (a appMapApp) String() string {
	if !a.exists {
		return "-"
	}
	return fmt.Sprintf("{%d %s}", a.instances, a.marker)
}

// appMapState is one group's apps: comparable, so porcupine's cache can
// compare states with ==.
type appMapState [appMapGroupSize]appMapApp

// appMapOutput is what an operation returned. For a write, applied says it
// succeeded, !applied that the server refused it for the app's existence
// (create: already exists; update, scale, delete: not found); unknown says
// the outcome is not known (the write may have applied, at any time after
// its call).
type appMapOutput struct {
	unknown bool
	applied bool
	app     appMapApp   // get
	list    appMapState // list
}

// appMapID is the app id of slot in group.
func appMapID(group, slot int) string { return fmt.Sprintf("/lm/g%d/a%d", group, slot) }

// appMapStep is the sequential specification of one group.
func appMapStep(state, input, output interface{}) (bool, interface{}) {
	s, in, out := state.(appMapState), input.(appMapInput), output.(appMapOutput)
	cur := s[in.slot]
	// What the operation does when it applies, and whether it applies.
	var next appMapApp
	applies := cur.exists
	switch in.kind {
	case amGet:
		return out.app == cur, s
	case amList:
		return out.list == s, s
	case amCreate:
		applies = !cur.exists
		next = appMapApp{exists: true, instances: in.instances, marker: in.marker}
	case amUpdate:
		next = appMapApp{exists: true, instances: cur.instances, marker: in.marker}
	case amScale:
		next = appMapApp{exists: true, instances: in.instances, marker: cur.marker}
	case amDelete:
		next = appMapApp{}
	}
	if !out.unknown && out.applied != applies {
		return false, s
	}
	if applies {
		s[in.slot] = next
	}
	return true, s
}

// appMapModel checks one group per partition.
var appMapModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byGroup := make([][]porcupine.Operation, appMapGroups)
		for _, op := range history {
			g := op.Input.(appMapInput).group
			byGroup[g] = append(byGroup[g], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byGroup {
			if len(ops) > 0 {
				out = append(out, ops)
			}
		}
		return out
	},
	Init: func() interface{} { return appMapState{} },
	Step: appMapStep,
	DescribeOperation: func(input, output interface{}) string {
		in, _ := input.(appMapInput)
		out, _ := output.(appMapOutput)
		var res string
		switch {
		case out.unknown:
			res = "unknown"
		case in.kind == amGet:
			res = out.app.String()
		case in.kind == amList:
			res = fmt.Sprint(out.list)
		case out.applied:
			res = "ok"
		case in.kind == amCreate:
			res = "exists"
		default:
			res = "not found"
		}
		switch in.kind {
		case amList:
			return fmt.Sprintf("list(g%d) -> %s", in.group, res)
		case amCreate:
			return fmt.Sprintf("create(%s, %d, %s) -> %s", appMapID(in.group, in.slot), in.instances, in.marker, res)
		case amUpdate:
			return fmt.Sprintf("update(%s, %s) -> %s", appMapID(in.group, in.slot), in.marker, res)
		case amScale:
			return fmt.Sprintf("scale(%s, %d) -> %s", appMapID(in.group, in.slot), in.instances, res)
		}
		return fmt.Sprintf("%s(%s) -> %s", in.kind, appMapID(in.group, in.slot), res)
	},
	DescribeState: func(state interface{}) string { return fmt.Sprint(state.(appMapState)) },
}

// appMapRecorder collects the history of every client.
type appMapRecorder struct {
	origin time.Time
	mu     sync.Mutex
	ops    []porcupine.Operation
	// recorded counts the operations in ops; the budget and the faults
	// are measured in it.
	recorded atomic.Int64
	byKind   map[string]int // outcome counts, "create ok", "get failed", ...
	lastErr  map[string]string
}

func (r *appMapRecorder) now() int64 { return int64(time.Since(r.origin)) }

func (r *appMapRecorder) record(op porcupine.Operation, outcome string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
	r.recorded.Add(1)
	r.byKind[op.Input.(appMapInput).kind.String()+" "+outcome]++
}

func (r *appMapRecorder) failed(kind appMapKind, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := fmt.Sprintf("%s failed %s", kind, connect.CodeOf(err))
	r.byKind[k]++
	r.lastErr[k] = err.Error()
}

func (r *appMapRecorder) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.byKind))
	for k := range r.byKind {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %d; ", k, r.byKind[k])
	}
	fmt.Fprintf(&b, "last errors %q", r.lastErr)
	return b.String()
}

// notSent reports whether err says the request never reached a server
// (nothing listens there: the server is down), so a write certainly did
// not apply.
func notSent(err error) bool {
	return strings.Contains(err.Error(), "connection refused")
}

// appMapClient is one client: it issues random operations, one at a time,
// against one server, moving on to the next server after a failure, until
// ctx ends.
type appMapClient struct {
	id      int
	rng     *rand.Rand
	servers []*linServer
	at      int // index in servers
	rec     *appMapRecorder
	runID   string
	n       int // operations issued, for unique markers and request ids
}

func (c *appMapClient) run(ctx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		if c.step(ctx) {
			backoff = 0
			linSleep(ctx, linOpGap)
			continue
		}
		c.at = (c.at + 1) % len(c.servers)
		backoff = min(max(2*backoff, 50*time.Millisecond), 500*time.Millisecond)
		linSleep(ctx, backoff)
	}
}

// next draws an operation.
func (c *appMapClient) next() appMapInput {
	c.n++
	in := appMapInput{group: c.rng.IntN(appMapGroups), slot: c.rng.IntN(appMapGroupSize)}
	switch p := c.rng.IntN(100); {
	case p < 15:
		in.kind = amCreate
	case p < 35:
		in.kind = amUpdate
	case p < 47:
		in.kind = amScale
	case p < 60:
		in.kind = amDelete
	case p < 88:
		in.kind = amGet
	default:
		in.kind = amList
	}
	in.instances = c.rng.IntN(appMapMaxScale + 1)
	in.marker = fmt.Sprintf("c%d-%d", c.id, c.n)
	return in
}

// step issues one operation and records it; it reports whether the server
// answered it (an answer that refuses the write counts).
func (c *appMapClient) step(ctx context.Context) bool {
	in := c.next()
	s := c.servers[c.at]
	call := c.rec.now()
	if in.kind == amGet || in.kind == amList {
		out, err := c.read(ctx, s, in)
		if err != nil {
			// A failed read changes nothing: left out of the history.
			if ctx.Err() == nil {
				c.rec.failed(in.kind, err)
			}
			return false
		}
		c.rec.record(porcupine.Operation{ClientId: c.id, Input: in, Call: call, Output: out, Return: c.rec.now(), Metadata: s.name}, "ok")
		return true
	}
	// A write is retried with the same request id while its outcome is
	// unknown: the server applies it once.
	requestID := fmt.Sprintf("lm-%s-%s", c.runID, in.marker)
	var err error
	unknownBefore := false
	for attempt := 0; attempt < 3; attempt++ {
		actx, cancel := context.WithTimeout(ctx, linOpWait)
		err = c.write(actx, s, in, requestID)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		if notSent(err) && !unknownBefore {
			// Nothing was sent: try another server.
			c.at = (c.at + 1) % len(c.servers)
			s = c.servers[c.at]
			continue
		}
		if definiteFailure(err) {
			break
		}
		unknownBefore = true
		c.rec.failed(in.kind, err)
		linSleep(ctx, time.Duration(attempt+1)*100*time.Millisecond)
	}
	ret := c.rec.now()
	refused := connect.CodeOf(err) == connect.CodeNotFound && in.kind != amCreate ||
		connect.CodeOf(err) == connect.CodeAlreadyExists && in.kind == amCreate
	switch {
	case err == nil:
		c.rec.record(porcupine.Operation{ClientId: c.id, Input: in, Call: call, Output: appMapOutput{applied: true},
			Return: ret, Metadata: s.name}, "ok")
		return true
	case refused && !unknownBefore:
		// The server says the app's existence refused it: an answer the
		// model must explain.
		c.rec.record(porcupine.Operation{ClientId: c.id, Input: in, Call: call, Output: appMapOutput{},
			Return: ret, Metadata: s.name}, "refused")
		return true
	case definiteFailure(err) && !refused && !unknownBefore, notSent(err) && !unknownBefore:
		// Certainly not applied, for a reason the model does not decide
		// (e.g. Aborted: a concurrent change won): no effect, left out.
		c.rec.failed(in.kind, err)
		return false
	default:
		// Unknown outcome (or a refusal after an attempt of unknown
		// outcome, which may be that attempt's own effect): it may apply
		// any time after its call. It returns after everything else (see
		// appMapHistory).
		c.rec.record(porcupine.Operation{ClientId: -1, Input: in, Call: call, Output: appMapOutput{unknown: true},
			Return: -1, Metadata: fmt.Sprintf("%s: %v", s.name, err)}, "unknown")
		return false
	}
}

// write sends one attempt of a write.
func (c *appMapClient) write(ctx context.Context, s *linServer, in appMapInput, requestID string) error {
	id := appMapID(in.group, in.slot)
	var err error
	switch in.kind {
	case amCreate:
		_, err = s.apps.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{RequestId: requestID,
			App: &v1.App{Id: id, Cmd: proto.String("sleep 100000"), Instances: proto.Int32(int32(in.instances)),
				Cpus: proto.Float64(0.01), Mem: proto.Float64(8), Labels: map[string]string{"m": in.marker}}}))
	case amUpdate:
		_, err = s.apps.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: id, RequestId: requestID,
			Partial: true, Force: true, App: &v1.App{Labels: map[string]string{"m": in.marker}}}))
	case amScale:
		_, err = s.apps.UpdateApp(ctx, connect.NewRequest(&v1.UpdateAppRequest{Id: id, RequestId: requestID,
			Partial: true, Force: true, App: &v1.App{Instances: proto.Int32(int32(in.instances))}}))
	case amDelete:
		_, err = s.apps.DeleteApp(ctx, connect.NewRequest(&v1.DeleteAppRequest{Id: id, RequestId: requestID, Force: true}))
	default:
		err = fmt.Errorf("%s is not a write", in.kind)
	}
	return err
}

// read sends a consistent GetApp or ListApps.
func (c *appMapClient) read(ctx context.Context, s *linServer, in appMapInput) (appMapOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, linOpWait)
	defer cancel()
	consistent := v1.ReadConsistency_READ_CONSISTENCY_CONSISTENT
	if in.kind == amGet {
		res, err := s.apps.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: appMapID(in.group, in.slot), Consistency: consistent}))
		if connect.CodeOf(err) == connect.CodeNotFound {
			return appMapOutput{}, nil
		}
		if err != nil {
			return appMapOutput{}, err
		}
		return appMapOutput{app: appMapAppOf(res.Msg.GetApp())}, nil
	}
	prefix := fmt.Sprintf("/lm/g%d/", in.group)
	res, err := s.apps.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{IdContains: prefix, Consistency: consistent}))
	if err != nil {
		return appMapOutput{}, err
	}
	var out appMapOutput
	for _, app := range res.Msg.GetApps() {
		slot := -1
		for i := range appMapGroupSize {
			if app.GetId() == appMapID(in.group, i) {
				slot = i
			}
		}
		if slot < 0 {
			return appMapOutput{}, fmt.Errorf("list of %s returned app %s, not one of the group", prefix, app.GetId())
		}
		out.list[slot] = appMapAppOf(app)
	}
	return out, nil
}

func appMapAppOf(app *v1.App) appMapApp {
	return appMapApp{exists: true, instances: int(app.GetInstances()), marker: app.GetLabels()["m"]}
}

// appMapHistory prepares the recorded operations for the checker: an
// operation of unknown outcome returns after everything else, each with a
// client id of its own (for the visualization).
func appMapHistory(all []porcupine.Operation) (ops []porcupine.Operation, end int64) {
	for _, op := range all {
		end = max(end, op.Call, op.Return)
	}
	nextID := appMapClients
	for _, op := range all {
		if op.Output.(appMapOutput).unknown {
			op.Return = end + 1
			op.ClientId = nextID
			nextID++
		}
		ops = append(ops, op)
	}
	return ops, end
}

// checkAppMapHistory runs porcupine on ops and fails t, keeping a
// visualization and the history, when they are not linearizable.
func checkAppMapHistory(t *testing.T, ops []porcupine.Operation, faults []porcupine.Annotation) {
	t.Helper()
	checkLinearizable(t, "app map", appMapModel, ops, faults, 3*time.Minute)
}

// TestLinearizableAppMapUnderFaults checks that creates, updates, scales,
// deletes, consistent gets and consistent lists of many apps, sent to every
// server, stay linearizable while the leader is killed with -9 and
// restarted, then a follower.
func TestLinearizableAppMapUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process fault test")
	}
	seed := *appMapSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (repeat the clients' operations with -lin.seed %d)", seed, seed)

	servers := startLinCluster(t)
	agreedLeaderOf(t, servers)

	rec := &appMapRecorder{origin: time.Now(), byKind: map[string]int{}, lastErr: map[string]string{}}
	runID := fmt.Sprintf("%x", rand.Uint64())
	ctx, stopTraffic := context.WithTimeout(context.Background(), appMapHardStop)
	var wg sync.WaitGroup
	for i := 0; i < appMapClients; i++ {
		c := &appMapClient{id: i, rng: rand.New(rand.NewPCG(seed, uint64(i))), servers: servers, at: i % len(servers),
			rec: rec, runID: runID}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(ctx)
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

	// reach waits until the history holds n operations.
	reach := func(n int, what string) {
		t.Helper()
		for rec.recorded.Load() < int64(n) {
			select {
			case <-clientsDone:
				t.Fatalf("the clients stopped (hard stop after %s) before %s: %d of %d operations (%s)",
					appMapHardStop, what, rec.recorded.Load(), n, rec.summary())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	var faults []porcupine.Annotation
	annotate := func(start int64, desc string) {
		faults = append(faults, porcupine.Annotation{Tag: "faults", Start: start, End: rec.now(), Description: desc,
			BackgroundColor: "#f4c7c3"})
		t.Logf("%s (%.1fs..%.1fs)", desc, time.Duration(start).Seconds(), time.Duration(rec.now()).Seconds())
	}
	// killAndRestart kills s with -9 once the history holds at, and
	// restarts it after gap more operations; then waits until it follows.
	killAndRestart := func(s *linServer, at, gap int, role string) {
		t.Helper()
		reach(at, "the "+role+" kill")
		start := rec.now()
		s.p.kill9()
		lead := agreedLeaderOf(t, othersThan(servers, s))
		reach(at+gap, "the "+role+"'s restart")
		s.p.restart()
		eventually(t, 2*time.Minute, s.name+" to rejoin as a follower", func() bool {
			return s.leaderSeen() == lead.name
		})
		annotate(start, fmt.Sprintf("kill -9 %s %s; %s leads; %s restarted", role, s.name, lead.name, s.name))
	}
	lead := agreedLeaderOf(t, servers)
	killAndRestart(lead, appMapBudget/5, appMapBudget/6, "leader")
	lead = agreedLeaderOf(t, servers)
	killAndRestart(othersThan(servers, lead)[0], appMapBudget/2, appMapBudget/6, "follower")
	reach(appMapBudget, "the budget")
	stop()

	rec.mu.Lock()
	all := rec.ops
	rec.mu.Unlock()
	ops, end := appMapHistory(all)
	t.Logf("history: %d operations over %.1fs; %s", len(ops), time.Duration(end).Seconds(), rec.summary())
	checkAppMapHistory(t, ops, faults)

	// The check must not pass vacuously: every kind of operation answered,
	// and writes that found their app and reads that saw apps.
	counts := map[appMapKind]int{}
	var sawApps int
	for _, op := range ops {
		in, out := op.Input.(appMapInput), op.Output.(appMapOutput)
		if out.unknown {
			continue
		}
		counts[in.kind]++
		if in.kind == amGet && out.app.exists || in.kind == amList && out.list != (appMapState{}) {
			sawApps++
		}
	}
	for k := amCreate; k <= amList; k++ {
		if counts[k] < 5 {
			t.Errorf("only %d %s operations answered (want at least 5)", counts[k], k)
		}
	}
	if sawApps < 20 {
		t.Errorf("only %d reads saw an app (want at least 20)", sawApps)
	}
}

// TestAppMapModelCatchesViolations keeps the checker honest: the model
// rejects a stale get, a list that misses an acknowledged create, an update
// acknowledged on a deleted app, a lost scale, and accepts concurrent and
// unknown outcomes it can explain.
func TestAppMapModelCatchesViolations(t *testing.T) {
	op := func(c int, in appMapInput, out appMapOutput, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: in, Output: out, Call: call, Return: ret}
	}
	create := func(slot, inst int, m string) appMapInput {
		return appMapInput{kind: amCreate, slot: slot, instances: inst, marker: m}
	}
	update := func(slot int, m string) appMapInput { return appMapInput{kind: amUpdate, slot: slot, marker: m} }
	scale := func(slot, inst int) appMapInput { return appMapInput{kind: amScale, slot: slot, instances: inst} }
	del := func(slot int) appMapInput { return appMapInput{kind: amDelete, slot: slot} }
	get := func(slot int) appMapInput { return appMapInput{kind: amGet, slot: slot} }
	list := appMapInput{kind: amList}
	ok, refused, unknown := appMapOutput{applied: true}, appMapOutput{}, appMapOutput{unknown: true}
	saw := func(inst int, m string) appMapOutput {
		return appMapOutput{app: appMapApp{exists: true, instances: inst, marker: m}}
	}
	listed := func(apps ...appMapApp) appMapOutput {
		var out appMapOutput
		copy(out.list[:], apps)
		return out
	}
	a := func(inst int, m string) appMapApp { return appMapApp{exists: true, instances: inst, marker: m} }
	other := func(in appMapInput) appMapInput { in.group = 1; return in }
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{
			op(0, create(0, 1, "a"), ok, 0, 1), op(0, update(0, "b"), ok, 2, 3), op(1, scale(0, 2), ok, 4, 5),
			op(1, get(0), saw(2, "b"), 6, 7), op(2, list, listed(a(2, "b")), 8, 9),
			op(0, del(0), ok, 10, 11), op(1, get(0), refused, 12, 13), op(2, del(0), refused, 14, 15)}, porcupine.Ok},
		{"stale get after an acknowledged update", []porcupine.Operation{
			op(0, create(0, 1, "a"), ok, 0, 1), op(0, update(0, "b"), ok, 2, 3), op(1, get(0), saw(1, "a"), 4, 5)}, porcupine.Illegal},
		{"list misses an acknowledged create", []porcupine.Operation{
			op(0, create(0, 1, "a"), ok, 0, 1), op(1, create(1, 0, "b"), ok, 2, 3),
			op(2, list, listed(a(1, "a")), 4, 5)}, porcupine.Illegal},
		{"update acknowledged on a deleted app", []porcupine.Operation{
			op(0, create(0, 1, "a"), ok, 0, 1), op(0, del(0), ok, 2, 3), op(1, update(0, "b"), ok, 4, 5)}, porcupine.Illegal},
		{"create acknowledged twice", []porcupine.Operation{
			op(0, create(0, 1, "a"), ok, 0, 1), op(1, create(0, 2, "b"), ok, 2, 3)}, porcupine.Illegal},
		{"lost scale", []porcupine.Operation{
			op(0, create(0, 1, "a"), ok, 0, 1), op(0, scale(0, 2), ok, 2, 3), op(1, get(0), saw(1, "a"), 4, 5)}, porcupine.Illegal},
		{"concurrent get sees either", []porcupine.Operation{
			op(0, create(0, 1, "a"), ok, 0, 1), op(0, update(0, "b"), ok, 2, 10),
			op(1, get(0), saw(1, "a"), 3, 4), op(2, get(0), saw(1, "b"), 5, 6)}, porcupine.Ok},
		{"get goes back in time", []porcupine.Operation{
			op(0, create(0, 1, "a"), ok, 0, 1), op(0, update(0, "b"), ok, 2, 10),
			op(1, get(0), saw(1, "b"), 3, 4), op(2, get(0), saw(1, "a"), 5, 6)}, porcupine.Illegal},
		{"unknown delete seen later", []porcupine.Operation{
			op(0, create(0, 1, "a"), ok, 0, 1), op(0, del(0), unknown, 2, -1), op(1, get(0), saw(1, "a"), 3, 4),
			op(1, get(0), refused, 5, 6)}, porcupine.Ok},
		{"unknown create never seen", []porcupine.Operation{
			op(0, create(0, 1, "a"), unknown, 0, -1), op(1, list, listed(), 3, 4)}, porcupine.Ok},
		{"unknown create seen before its call", []porcupine.Operation{
			op(1, get(0), saw(1, "a"), 0, 1), op(0, create(0, 1, "a"), unknown, 2, -1)}, porcupine.Illegal},
		{"groups are independent", []porcupine.Operation{
			op(0, create(0, 1, "a"), ok, 0, 1), op(1, other(get(0)), refused, 2, 3), op(2, get(0), saw(1, "a"), 4, 5)}, porcupine.Ok},
		{"a violation in one group fails the history", []porcupine.Operation{
			op(0, create(0, 1, "a"), ok, 0, 1), op(1, other(create(0, 1, "b")), ok, 2, 3),
			op(2, other(get(0)), refused, 4, 5)}, porcupine.Illegal},
	}
	for _, c := range cases {
		ops, _ := appMapHistory(c.ops)
		if got := porcupine.CheckOperationsTimeout(appMapModel, ops, 10*time.Second); got != c.want {
			t.Errorf("%s: porcupine says %s, want %s", c.name, got, c.want)
		}
	}
}
