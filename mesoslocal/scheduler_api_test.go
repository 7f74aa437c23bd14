package mesoslocal

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/recordio"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

func jsonCall(t testing.TB, call *scheduler.Call) []byte {
	b, err := codec(mediaJSON).marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func subscribeCall(info *mesos.FrameworkInfo) *scheduler.Call {
	return calls.Subscribe(info)
}

// rawStream is a SUBSCRIBE made with plain net/http, to check the wire format.
type rawStream struct {
	resp   *http.Response
	frames func() ([]byte, error)
	k      codec
}

func rawSubscribe(t *testing.T, c *Cluster, info *mesos.FrameworkInfo, accept string) *rawStream {
	t.Helper()
	hdr := map[string]string{"Content-Type": mediaJSON}
	if accept != "" {
		hdr["Accept"] = accept
	}
	resp, body := rawPost(t, c.URL()+"/api/v1/scheduler", hdr, jsonCall(t, subscribeCall(info)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("subscribe: HTTP %d %s", resp.StatusCode, body)
	}
	t.Cleanup(func() { resp.Body.Close() })
	rd := recordio.NewReader(resp.Body)
	k := codec(mediaJSON)
	if accept == mediaProtobuf {
		k = mediaProtobuf
	}
	return &rawStream{resp: resp, frames: rd.ReadFrame, k: k}
}

func (r *rawStream) next(t *testing.T) *scheduler.Event {
	t.Helper()
	b, err := r.frames()
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	var e scheduler.Event
	if err := r.k.unmarshal(b, &e); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return &e
}

func TestSchedulerHTTPErrors(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.Simulate = true })
	url := c.URL() + "/api/v1/scheduler"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	sub := jsonCall(t, subscribeCall(frameworkInfo("*")))
	bad := func(name string, hdr map[string]string, body []byte, want int, wantMsg string) {
		t.Helper()
		resp, msg := rawPost(t, url, hdr, body)
		if resp.StatusCode != want || !strings.Contains(msg, wantMsg) {
			t.Errorf("%s: HTTP %d %q, want %d containing %q", name, resp.StatusCode, msg, want, wantMsg)
		}
	}
	bad("no content type", nil, sub, 400, "Content-Type")
	bad("text/plain", map[string]string{"Content-Type": "text/plain"}, sub, 415, "")
	bad("garbage", map[string]string{"Content-Type": mediaJSON}, []byte("{nope"), 400, "parse")
	bad("garbage protobuf", map[string]string{"Content-Type": mediaProtobuf}, []byte{0xff, 0xff, 0xff}, 400, "parse")
	bad("unknown type", map[string]string{"Content-Type": mediaJSON}, []byte(`{"type":"UNKNOWN"}`), 501, "")
	bad("stream id on subscribe", map[string]string{"Content-Type": mediaJSON, "Mesos-Stream-Id": "x"}, sub, 400, "Mesos-Stream-Id")
	bad("not acceptable", map[string]string{"Content-Type": mediaJSON, "Accept": "text/html"}, sub, 406, "")
	mism := subscribeCall(frameworkInfo("*"))
	mism.FrameworkID = &mesos.FrameworkID{Value: "other"}
	bad("framework_id mismatch", map[string]string{"Content-Type": mediaJSON}, jsonCall(t, mism), 400, "framework_id")
	bad("no framework id", map[string]string{"Content-Type": mediaJSON}, jsonCall(t, calls.Revive()), 400, "framework_id")
	rv := calls.Revive()
	rv.FrameworkID = &mesos.FrameworkID{Value: "nope"}
	bad("unknown framework", map[string]string{"Content-Type": mediaJSON, "Mesos-Stream-Id": "x"}, jsonCall(t, rv), 400, "Framework cannot be found")
	ack := calls.Acknowledge("a", "t", []byte("short"))
	ack.FrameworkID = &mesos.FrameworkID{Value: "nope"}
	bad("short uuid", map[string]string{"Content-Type": mediaJSON}, jsonCall(t, ack), 400, "uuid")
	bad("accept without body", map[string]string{"Content-Type": mediaJSON}, []byte(`{"type":"ACCEPT","framework_id":{"value":"x"}}`), 400, "accept")
}

func TestSubscribeWireFormat(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.Simulate = true; cfg.HeartbeatInterval = 100 * time.Millisecond })
	for _, accept := range []string{"", mediaJSON, mediaProtobuf} {
		t.Run("accept="+accept, func(t *testing.T) {
			rs := rawSubscribe(t, c, frameworkInfo("*"), accept)
			want := mediaJSON
			if accept == mediaProtobuf {
				want = mediaProtobuf
			}
			if ct := rs.resp.Header.Get("Content-Type"); ct != want {
				t.Fatalf("Content-Type = %q, want %q", ct, want)
			}
			if rs.resp.ContentLength != -1 || len(rs.resp.TransferEncoding) == 0 || rs.resp.TransferEncoding[0] != "chunked" {
				t.Fatalf("not chunked: length %d, encoding %v", rs.resp.ContentLength, rs.resp.TransferEncoding)
			}
			sid := rs.resp.Header.Get("Mesos-Stream-Id")
			if len(sid) != 36 {
				t.Fatalf("Mesos-Stream-Id = %q", sid)
			}
			e := rs.next(t)
			if e.Type != scheduler.Event_SUBSCRIBED || e.Subscribed.GetHeartbeatIntervalSeconds() != 0.1 || e.Subscribed.MasterInfo == nil {
				t.Fatalf("first event %v", e)
			}
			if !strings.HasPrefix(e.Subscribed.FrameworkID.Value, c.MasterID()+"-") {
				t.Fatalf("framework id %q", e.Subscribed.FrameworkID.Value)
			}
			if e := rs.next(t); e.Type != scheduler.Event_HEARTBEAT {
				t.Fatalf("second event %v, want HEARTBEAT", e.Type)
			}
			// Periodic heartbeats keep coming (offers may interleave).
			hb := 0
			for hb < 2 {
				if rs.next(t).Type == scheduler.Event_HEARTBEAT {
					hb++
				}
			}
		})
	}
}

func TestCallsNeedTheCurrentStream(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.Simulate = true })
	rs := rawSubscribe(t, c, frameworkInfo("*"), mediaJSON)
	fwID := rs.next(t).Subscribed.FrameworkID.Value
	sid := rs.resp.Header.Get("Mesos-Stream-Id")
	post := func(streamID string) (int, string) {
		call := calls.Revive()
		call.FrameworkID = &mesos.FrameworkID{Value: fwID}
		hdr := map[string]string{"Content-Type": mediaJSON}
		if streamID != "" {
			hdr["Mesos-Stream-Id"] = streamID
		}
		resp, body := rawPost(t, c.URL()+"/api/v1/scheduler", hdr, jsonCall(t, call))
		return resp.StatusCode, body
	}
	if code, body := post(""); code != 400 || !strings.Contains(body, "Mesos-Stream-Id") {
		t.Fatalf("no stream id: %d %s", code, body)
	}
	if code, _ := post("bogus"); code != 400 {
		t.Fatalf("wrong stream id: %d", code)
	}
	if code, body := post(sid); code != 202 || body != "" {
		t.Fatalf("good call: %d %q", code, body)
	}
	rs.resp.Body.Close()
	eventually(t, "403 once disconnected", func() bool { code, _ := post(sid); return code == 403 })
}

func TestInvalidFrameworkInfoGetsErrorEvent(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.Simulate = true })
	cases := map[string]*mesos.FrameworkInfo{
		"roles without MULTI_ROLE": {User: "u", Name: "n", Roles: []string{"a"}},
		"role with MULTI_ROLE":     {User: "u", Name: "n", Role: proto.String("a"), Capabilities: []mesos.FrameworkInfo_Capability{{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE}}},
		"bad role":                 {User: "u", Name: "n", Role: proto.String("a b")},
		"negative failover":        {User: "u", Name: "n", FailoverTimeout: proto.Float64(-1)},
	}
	for name, info := range cases {
		rs := rawSubscribe(t, c, info, mediaJSON)
		e := rs.next(t)
		if e.Type != scheduler.Event_ERROR {
			t.Fatalf("%s: got %v, want ERROR", name, e.Type)
		}
		if _, err := rs.frames(); err == nil {
			t.Fatalf("%s: stream not closed after ERROR", name)
		}
	}
	// suppressed roles must be among the framework's roles
	call := subscribeCall(frameworkInfo("a", mesos.FrameworkInfo_Capability_MULTI_ROLE))
	call.Subscribe.SuppressedRoles = []string{"b"}
	resp, _ := rawPost(t, c.URL()+"/api/v1/scheduler", map[string]string{"Content-Type": mediaJSON}, jsonCall(t, call))
	defer resp.Body.Close()
	rs := &rawStream{resp: resp, frames: recordio.NewReader(resp.Body).ReadFrame, k: mediaJSON}
	if e := rs.next(t); e.Type != scheduler.Event_ERROR || !strings.Contains(e.Error.Message, "Suppressed role") {
		t.Fatalf("suppressed role outside roles: %v", e)
	}
}

// TestFrameworkFailover: a second SUBSCRIBE with the same id takes over;
// the old stream gets ERROR and is closed; tasks are untouched.
func TestFrameworkFailover(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.Simulate = true })
	a := subscribe(t, c, frameworkInfo("r"))
	o := a.awaitOffer("any", nil)
	a.mustCall(calls.Accept(calls.OfferOperations{calls.OpLaunch(shellTask("keep", o, "sleep 1000", allocated("r", scalar("cpus", 0.1), scalar("mem", 32))))}.WithOffers(o.ID)).With(calls.RefuseSeconds(0)))
	a.awaitUpdate("keep", mesos.TASK_RUNNING)
	oldStream := c.streamOf(a.fwID)

	info := frameworkInfo("r")
	info.ID = &mesos.FrameworkID{Value: a.fwID}
	b := subscribeCodec(t, c, info, codecs.MediaTypeJSON)
	if b.fwID != a.fwID {
		t.Fatalf("failover got a new id %s", b.fwID)
	}
	e := a.await("ERROR on the old stream", func(e *scheduler.Event) bool { return e.Type == scheduler.Event_ERROR })
	if e.Error.Message != "Framework failed over" {
		t.Fatalf("old stream error %q", e.Error.Message)
	}
	if !a.streamEnded() {
		t.Fatal("old stream not closed")
	}
	if c.streamOf(a.fwID) == oldStream {
		t.Fatal("stream id unchanged after failover")
	}
	// The old stream id is refused.
	call := calls.Revive()
	call.FrameworkID = &mesos.FrameworkID{Value: a.fwID}
	if resp, _ := rawPost(t, c.URL()+"/api/v1/scheduler", map[string]string{"Content-Type": mediaJSON, "Mesos-Stream-Id": oldStream}, jsonCall(t, call)); resp.StatusCode != 400 {
		t.Fatalf("old stream id: HTTP %d", resp.StatusCode)
	}
	// The task kept running; the new subscriber gets offers afresh.
	b.mustCall(calls.Reconcile(calls.ReconcileTasks(map[string]string{"keep": o.AgentID.Value})))
	st := b.awaitUpdate("keep", mesos.TASK_RUNNING)
	if st.GetReason() != mesos.REASON_RECONCILIATION || st.UUID != nil {
		t.Fatalf("reconcile reply %v", st)
	}
	b.awaitOffer("after failover", nil)
}

func (c *Cluster) streamOf(fwID string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fw := c.frameworks[fwID]; fw != nil {
		return fw.streamID
	}
	return ""
}

func TestFailoverTimeoutRemovesFramework(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.Simulate = true })
	info := frameworkInfo("r")
	info.FailoverTimeout = proto.Float64(0.2)
	a := subscribe(t, c, info)
	o := a.awaitOffer("any", nil)
	a.mustCall(calls.Accept(calls.OfferOperations{calls.OpLaunch(shellTask("t", o, "sleep 1000", allocated("r", scalar("cpus", 1))))}.WithOffers(o.ID)))
	a.awaitUpdate("t", mesos.TASK_RUNNING)
	a.close()
	eventually(t, "framework removed", func() bool {
		resp := operator(t, c, &master.Call{Type: master.Call_GET_FRAMEWORKS})
		return len(resp.GetFrameworks.Frameworks) == 0 && len(resp.GetFrameworks.CompletedFrameworks) == 1
	})
	tasks := operator(t, c, &master.Call{Type: master.Call_GET_TASKS}).GetTasks
	if len(tasks.Tasks) != 0 || len(tasks.CompletedTasks) != 1 || tasks.CompletedTasks[0].GetState() != mesos.TASK_KILLED {
		t.Fatalf("tasks after removal: %+v", tasks)
	}
	info.ID = &mesos.FrameworkID{Value: a.fwID}
	rs := rawSubscribe(t, c, info, mediaJSON)
	if e := rs.next(t); e.Type != scheduler.Event_ERROR || e.Error.Message != "Framework has been removed" {
		t.Fatalf("resubscribe after removal: %v", e)
	}
}

func TestUnknownFrameworkIDIsAccepted(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.Simulate = true })
	info := frameworkInfo("*")
	info.ID = &mesos.FrameworkID{Value: "from-an-old-master-0001"}
	s := subscribe(t, c, info)
	if s.fwID != "from-an-old-master-0001" {
		t.Fatalf("id %s", s.fwID)
	}
}

func TestTeardown(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("any", nil)
	s.mustCall(calls.Accept(calls.OfferOperations{calls.OpLaunch(shellTask("t", o, "sleep 1000", allocated("*", scalar("cpus", 0.1))))}.WithOffers(o.ID)))
	s.awaitUpdate("t", mesos.TASK_RUNNING)
	pid := c.taskPID(s.fwID, "t")
	s.mustCall(&scheduler.Call{Type: scheduler.Call_TEARDOWN})
	if !s.streamEnded() {
		t.Fatal("stream still open after TEARDOWN")
	}
	eventually(t, "task process gone", func() bool { return !processAlive(pid) })
	if ops := c.Operations(); ops[len(ops)-1].Op != "TEARDOWN" {
		t.Fatalf("last op %v", ops[len(ops)-1])
	}
}

func (c *Cluster) taskPID(fwID, taskID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fw := c.frameworks[fwID]; fw != nil {
		if t := fw.tasks[taskID]; t != nil {
			return t.pid
		}
	}
	return 0
}
