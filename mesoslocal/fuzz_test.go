package mesoslocal

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fuzzTarget is a simulated mesos-local (no processes: a fuzzed LAUNCH must
// never run a command) with one subscribed framework whose id and stream id
// replace FWID and STREAM in fuzzed JSON bodies, so that calls get past the
// framework checks into the operations themselves.
type fuzzTarget struct {
	c            *Cluster
	fwID, stream string
}

func newFuzzTarget(f *testing.F) *fuzzTarget {
	c := startWith(f, Config{Listen: "127.0.0.1:0", Agents: 2, AgentResources: testResources, Simulate: true,
		AllocationInterval: 50 * time.Millisecond, Logger: testLogger()})
	s := subscribe(f, c, berthInfo())
	go func() { // keep the event stream flowing
		for range s.events {
		}
	}()
	c.mu.Lock()
	stream := c.frameworks[s.fwID].streamID
	c.mu.Unlock()
	return &fuzzTarget{c: c, fwID: s.fwID, stream: stream}
}

// serve runs one request through handler, with a context that ends soon so
// that a fuzzed SUBSCRIBE does not hold its stream open, and checks the
// agents' ledgers afterwards.
func (ft *fuzzTarget) serve(t *testing.T, handler http.HandlerFunc, path string, body []byte, protobuf bool) {
	body = bytes.ReplaceAll(body, []byte("FWID"), []byte(ft.fwID))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)).WithContext(ctx)
	r.Header.Set("Content-Type", "application/json")
	if protobuf {
		r.Header.Set("Content-Type", "application/x-protobuf")
	}
	r.Header.Set("Accept", "application/json")
	if !strings.Contains(string(body), `"SUBSCRIBE"`) {
		r.Header.Set("Mesos-Stream-Id", ft.stream)
	}
	w := httptest.NewRecorder()
	handler(w, r)
	if w.Code < 200 || w.Code > 599 {
		t.Fatalf("status %d", w.Code)
	}
	ft.c.mu.Lock()
	err := ft.c.checkLedgers(nil)
	ft.c.mu.Unlock()
	if err != nil {
		t.Fatalf("after %s %q: %v", path, body, err)
	}
}

// FuzzSchedulerCall feeds arbitrary scheduler calls (JSON or protobuf) to
// the scheduler API: no input may panic it or break an agent's resource
// ledger.
func FuzzSchedulerCall(f *testing.F) {
	for _, seed := range []string{
		`{"type":"DECLINE","framework_id":{"value":"FWID"},"decline":{"offer_ids":[{"value":"o"}]}}`,
		`{"type":"ACCEPT","framework_id":{"value":"FWID"},"accept":{"offer_ids":[{"value":"o"}],"operations":[{"type":"RESERVE","reserve":{"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":1},"reservations":[{"type":"DYNAMIC","role":"berth","principal":"berth"}]}]}}]}}`,
		`{"type":"ACCEPT","framework_id":{"value":"FWID"},"accept":{"offer_ids":[{"value":"o"}],"operations":[{"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t"},"agent_id":{"value":"a"},"command":{"value":"true"},"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.1}}]}]}}]}}`,
		`{"type":"KILL","framework_id":{"value":"FWID"},"kill":{"task_id":{"value":"t"}}}`,
		`{"type":"RECONCILE","framework_id":{"value":"FWID"},"reconcile":{"tasks":[{"task_id":{"value":"t"}}]}}`,
		`{"type":"ACKNOWLEDGE","framework_id":{"value":"FWID"},"acknowledge":{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"AAAA"}}`,
		`{"type":"REVIVE","framework_id":{"value":"FWID"}}`,
		`{"type":"SUPPRESS","framework_id":{"value":"FWID"},"suppress":{"roles":["berth"]}}`,
		`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"x","name":"y","roles":["berth"],"capabilities":[{"type":"MULTI_ROLE"}]}}}`,
		`{"type":"TEARDOWN"}`,
		`{}`, `[]`, `null`, "\x00\x01",
	} {
		f.Add([]byte(seed), false)
	}
	f.Add([]byte{0x08, 0x03, 0x12, 0x00}, true)
	ft := newFuzzTarget(f)
	f.Fuzz(func(t *testing.T, body []byte, protobuf bool) {
		if strings.Contains(string(body), `"TEARDOWN"`) {
			return // ends the one framework every other input needs
		}
		ft.serve(t, ft.c.handleScheduler, "/api/v1/scheduler", body, protobuf)
	})
}

// FuzzOperatorCall feeds arbitrary operator API calls to mesos-local.
func FuzzOperatorCall(f *testing.F) {
	for _, seed := range []string{
		`{"type":"GET_STATE"}`, `{"type":"GET_AGENTS"}`, `{"type":"GET_FRAMEWORKS"}`, `{"type":"GET_TASKS"}`,
		`{"type":"GET_HEALTH"}`, `{"type":"GET_VERSION"}`, `{"type":"GET_ROLES"}`,
		`{"type":"MARK_AGENT_GONE","mark_agent_gone":{"agent_id":{"value":"x"}}}`,
		`{"type":"DRAIN_AGENT","drain_agent":{"agent_id":{"value":"x"}}}`,
		`{"type":"SUBSCRIBE"}`, `{}`, `{"type":1000}`,
	} {
		f.Add([]byte(seed), false)
	}
	ft := newFuzzTarget(f)
	f.Fuzz(func(t *testing.T, body []byte, protobuf bool) {
		if strings.Contains(string(body), "MARK_AGENT_GONE") {
			return // permanent: would leave nothing to fuzz against
		}
		ft.serve(t, ft.c.handleOperator, "/api/v1", body, protobuf)
	})
}
