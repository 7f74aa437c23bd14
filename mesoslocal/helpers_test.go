package mesoslocal

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpsched"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/recordio"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// waitTimeout is generous: the test machine is small and shared.
const waitTimeout = 30 * time.Second

func testLogger() *slog.Logger {
	if os.Getenv("MESOSLOCAL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

const testResources = "cpus:4;mem:4096;disk:10000;ports:[31000-31099]"

func testConfig(t testing.TB) Config {
	return Config{
		Listen:             "127.0.0.1:0",
		WorkDir:            t.TempDir(),
		Agents:             1,
		AgentResources:     testResources,
		AllocationInterval: 50 * time.Millisecond,
		StatusUpdateRetry:  10 * time.Second,
		KillGracePeriod:    2 * time.Second,
		Logger:             testLogger(),
		// Tests that need tasks to outlive Close (agent recovery) turn
		// this off and kill what they leave behind themselves.
		KillTasksOnClose: true,
	}
}

func startCluster(t testing.TB, mod func(*Config)) *Cluster {
	t.Helper()
	cfg := testConfig(t)
	if mod != nil {
		mod(&cfg)
	}
	return startWith(t, cfg)
}

func startWith(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, bench := t.(*testing.B); !bench {
		installChecks(t, c)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sched is a test scheduler built on mesos-go's own HTTP client.
type sched struct {
	t       testing.TB
	caller  calls.Caller
	fwID    string
	events  chan *scheduler.Event
	backlog []*scheduler.Event
	resp    mesos.Response
	cancel  context.CancelFunc
	once    sync.Once
	noAck   bool
}

func frameworkInfo(role string, caps ...mesos.FrameworkInfo_Capability_Type) *mesos.FrameworkInfo {
	info := &mesos.FrameworkInfo{User: "", Name: "test", FailoverTimeout: proto.Float64(3600), Checkpoint: proto.Bool(true)}
	hasMulti := false
	for _, c := range caps {
		info.Capabilities = append(info.Capabilities, mesos.FrameworkInfo_Capability{Type: c})
		hasMulti = hasMulti || c == mesos.FrameworkInfo_Capability_MULTI_ROLE
	}
	if hasMulti {
		info.Roles = []string{role}
	} else {
		info.Role = proto.String(role)
	}
	return info
}

// berthInfo subscribes like the Berth scheduler does.
func berthInfo() *mesos.FrameworkInfo {
	info := frameworkInfo("berth", mesos.FrameworkInfo_Capability_MULTI_ROLE, mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT, mesos.FrameworkInfo_Capability_PARTITION_AWARE)
	info.Principal = proto.String("berth")
	info.FailoverTimeout = proto.Float64(7 * 24 * 3600)
	info.Name = "berth"
	return info
}

func subscribe(t testing.TB, c *Cluster, info *mesos.FrameworkInfo) *sched {
	return subscribeCodec(t, c, info, codecs.MediaTypeProtobuf)
}

func subscribeCodec(t testing.TB, c *Cluster, info *mesos.FrameworkInfo, mt interface{}) *sched {
	t.Helper()
	codec := codecs.ByMediaType[codecs.MediaTypeProtobuf]
	if mt == codecs.MediaTypeJSON {
		codec = codecs.ByMediaType[codecs.MediaTypeJSON]
	}
	cli := httpcli.New(httpcli.Endpoint(c.URL()+"/api/v1/scheduler"), httpcli.Codec(codec))
	caller := httpsched.NewCaller(cli)
	ctx, cancel := context.WithCancel(context.Background())
	call := calls.Subscribe(info)
	resp, err := caller.Call(ctx, call)
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	s := &sched{t: t, caller: caller, events: make(chan *scheduler.Event, 100000), resp: resp, cancel: cancel}
	go func() {
		defer close(s.events)
		for {
			var e scheduler.Event
			if err := resp.Decode(&e); err != nil {
				return
			}
			s.events <- &e
		}
	}()
	ev := s.await("SUBSCRIBED or ERROR", func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_SUBSCRIBED || e.Type == scheduler.Event_ERROR
	})
	if ev.Type == scheduler.Event_ERROR {
		s.close()
		t.Fatalf("subscribe: ERROR event %q", ev.GetError().GetMessage())
	}
	s.fwID = ev.Subscribed.FrameworkID.Value
	t.Cleanup(s.close)
	return s
}

func (s *sched) close() {
	s.once.Do(func() {
		s.cancel()
		s.resp.Close()
	})
}

// next returns the next event, or nil if the stream ended.
func (s *sched) next(timeout time.Duration) (*scheduler.Event, bool) {
	if len(s.backlog) > 0 {
		e := s.backlog[0]
		s.backlog = s.backlog[1:]
		return e, true
	}
	select {
	case e, ok := <-s.events:
		return e, ok
	case <-time.After(timeout):
		return nil, true
	}
}

// await returns the first event matching pred; others stay queued.
func (s *sched) await(what string, pred func(*scheduler.Event) bool) *scheduler.Event {
	s.t.Helper()
	if e := s.tryAwait(pred, waitTimeout); e != nil {
		return e
	}
	s.t.Fatalf("framework %s: timed out waiting for %s", s.fwID, what)
	return nil
}

func (s *sched) tryAwait(pred func(*scheduler.Event) bool, timeout time.Duration) *scheduler.Event {
	for i, e := range s.backlog {
		if pred(e) {
			s.backlog = append(s.backlog[:i:i], s.backlog[i+1:]...)
			return e
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		select {
		case e, ok := <-s.events:
			if !ok {
				return nil
			}
			if pred(e) {
				return e
			}
			if e.Type != scheduler.Event_HEARTBEAT {
				s.backlog = append(s.backlog, e)
			}
			if e.Type == scheduler.Event_UPDATE {
				// Skipped updates are acknowledged so later ones flow.
				s.ack(e.Update.Status)
			}
		case <-time.After(left):
			return nil
		}
	}
}

// streamEnded waits until the event stream closes.
func (s *sched) streamEnded() bool {
	deadline := time.After(waitTimeout)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

func (s *sched) call(call *scheduler.Call) error {
	call.FrameworkID = &mesos.FrameworkID{Value: s.fwID}
	resp, err := s.caller.Call(context.Background(), call)
	if resp != nil {
		resp.Close()
	}
	return err
}

func (s *sched) mustCall(call *scheduler.Call) {
	s.t.Helper()
	if err := s.call(call); err != nil {
		s.t.Fatalf("%v call: %v", call.Type, err)
	}
}

// awaitOffer returns the first offer satisfying pred (declining nothing).
func (s *sched) awaitOffer(what string, pred func(mesos.Offer) bool) mesos.Offer {
	s.t.Helper()
	var found mesos.Offer
	s.await("offer "+what, func(e *scheduler.Event) bool {
		if e.Type != scheduler.Event_OFFERS {
			return false
		}
		for _, o := range e.Offers.Offers {
			if pred == nil || pred(o) {
				found = o
				return true
			}
		}
		return false
	})
	return found
}

// awaitUpdate waits for an update of the task to state and acknowledges it
// (when it carries a uuid and acks are on).
func (s *sched) awaitUpdate(taskID string, state mesos.TaskState) mesos.TaskStatus {
	s.t.Helper()
	ev := s.await("update "+taskID+" "+state.String(), func(e *scheduler.Event) bool {
		if e.Type != scheduler.Event_UPDATE || e.Update.Status.TaskID.Value != taskID {
			return false
		}
		if e.Update.Status.GetState() != state {
			s.ack(e.Update.Status)
			return false
		}
		return true
	})
	s.ack(ev.Update.Status)
	return ev.Update.Status
}

func (s *sched) ack(st mesos.TaskStatus) {
	if s.noAck || len(st.UUID) == 0 {
		return
	}
	s.mustCall(calls.Acknowledge(st.GetAgentID().GetValue(), st.TaskID.Value, st.UUID))
}

// Resource builders (pre- and post-refinement formats).

func scalar(name string, v float64) mesos.Resource {
	return mesos.Resource{Name: name, Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: v}}
}

func portRange(lo, hi uint64) mesos.Resource {
	return mesos.Resource{Name: "ports", Type: mesos.RANGES.Enum(), Ranges: &mesos.Value_Ranges{Range: []mesos.Value_Range{{Begin: lo, End: hi}}}}
}

func labels(kv ...string) *mesos.Labels {
	l := &mesos.Labels{}
	for i := 0; i+1 < len(kv); i += 2 {
		l.Labels = append(l.Labels, mesos.Label{Key: kv[i], Value: proto.String(kv[i+1])})
	}
	return l
}

// reserved returns r dynamically reserved (refined format) for role.
func reserved(r mesos.Resource, role, principal string, l *mesos.Labels) mesos.Resource {
	r.Reservations = append(append([]mesos.Resource_ReservationInfo(nil), r.Reservations...), mesos.Resource_ReservationInfo{
		Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String(role), Principal: proto.String(principal), Labels: l})
	r.AllocationInfo = &mesos.Resource_AllocationInfo{Role: proto.String(role)}
	return r
}

// reservedLegacy returns r dynamically reserved in the pre-refinement format.
func reservedLegacy(r mesos.Resource, role, principal string, l *mesos.Labels) mesos.Resource {
	r.Role = proto.String(role)
	r.Reservation = &mesos.Resource_ReservationInfo{Principal: proto.String(principal), Labels: l}
	return r
}

func volume(r mesos.Resource, id, containerPath string) mesos.Resource {
	r.Disk = &mesos.Resource_DiskInfo{
		Persistence: &mesos.Resource_DiskInfo_Persistence{ID: id},
		Volume:      &mesos.Volume{Mode: mesos.RW.Enum(), ContainerPath: containerPath},
	}
	return r
}

func allocated(role string, rs ...mesos.Resource) []mesos.Resource {
	out := make([]mesos.Resource, len(rs))
	for i, r := range rs {
		r.AllocationInfo = &mesos.Resource_AllocationInfo{Role: proto.String(role)}
		out[i] = r
	}
	return out
}

func shellTask(id string, o mesos.Offer, cmd string, res []mesos.Resource) mesos.TaskInfo {
	return mesos.TaskInfo{
		Name:      id,
		TaskID:    mesos.TaskID{Value: id},
		AgentID:   o.AgentID,
		Resources: res,
		Command:   &mesos.CommandInfo{Value: proto.String(cmd)},
	}
}

// offerHas reports whether the offer carries a resource satisfying pred.
func offerHas(o mesos.Offer, pred func(mesos.Resource) bool) bool {
	for _, r := range o.Resources {
		if pred(r) {
			return true
		}
	}
	return false
}

func hasVolume(id string) func(mesos.Resource) bool {
	return func(r mesos.Resource) bool { return r.GetDisk().GetPersistence().GetID() == id }
}

func sumScalar(rs []mesos.Resource, name string, keep func(mesos.Resource) bool) float64 {
	var v float64
	for _, r := range rs {
		if r.Name == name && (keep == nil || keep(r)) {
			v += r.GetScalar().GetValue()
		}
	}
	return v
}

func unreservedRes(r mesos.Resource) bool {
	return len(r.Reservations) == 0 && (r.Role == nil || *r.Role == "*") && r.Reservation == nil
}

// rawPost sends a raw HTTP request (for protocol-level checks).
func rawPost(t testing.TB, url string, headers map[string]string, body []byte) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	if resp.Header.Get("Mesos-Stream-Id") != "" && resp.StatusCode == 200 {
		return resp, "" // a stream: the caller reads and closes it
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// operator sends an operator API call (JSON) and decodes the response.
func operator(t testing.TB, c *Cluster, call *master.Call) *master.Response {
	t.Helper()
	b, err := codec(mediaJSON).marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := rawPost(t, c.URL()+"/api/v1", map[string]string{"Content-Type": mediaJSON, "Accept": mediaJSON}, b)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("operator %v: HTTP %d: %s", call.Type, resp.StatusCode, body)
	}
	var out master.Response
	if strings.TrimSpace(body) == "" {
		return &out
	}
	if err := codec(mediaJSON).unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("operator %v: decode: %v (%s)", call.Type, err, body)
	}
	return &out
}

// eventually polls cond until it holds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processAlive reports whether pid runs (zombies count as gone).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

var httpClient = &http.Client{}

func newRequest(ctx context.Context, url string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mediaJSON)
	req.Header.Set("Accept", mediaJSON)
	return req, nil
}

func recordioReader(r io.Reader) func() ([]byte, error) { return recordio.NewReader(r).ReadFrame }

// declineOutstanding declines offers until the framework holds none.
func (s *sched) declineOutstanding(c *Cluster) {
	s.t.Helper()
	held := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.frameworks[s.fwID].offers)
	}
	eventually(s.t, "no outstanding offers", func() bool {
		for {
			e := s.tryAwait(func(e *scheduler.Event) bool { return e.Type == scheduler.Event_OFFERS }, 20*time.Millisecond)
			if e == nil {
				break
			}
			for _, o := range e.Offers.Offers {
				s.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(0)))
			}
		}
		return held() == 0
	})
}

// backlogOffers lists offers received but not consumed yet.
func (s *sched) backlogOffers() []mesos.Offer {
	var out []mesos.Offer
	for _, e := range s.backlog {
		if e.Type == scheduler.Event_OFFERS {
			out = append(out, e.Offers.Offers...)
		}
	}
	return out
}

// awaitOfferDeclining returns the first offer satisfying pred and declines
// (without a filter) every other offer it sees, as a real scheduler would.
func (s *sched) awaitOfferDeclining(what string, pred func(mesos.Offer) bool) mesos.Offer {
	s.t.Helper()
	var found *mesos.Offer
	s.await("offer "+what, func(e *scheduler.Event) bool {
		if e.Type != scheduler.Event_OFFERS {
			return false
		}
		for _, o := range e.Offers.Offers {
			if found == nil && pred(o) {
				o := o
				found = &o
				continue
			}
			s.mustCall(calls.Decline(o.ID).With(calls.RefuseSeconds(0)))
		}
		return found != nil
	})
	return *found
}
