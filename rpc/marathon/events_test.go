package marathon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// sse is a client of /v2/events.
type sse struct {
	events chan sseEvent
	cancel context.CancelFunc
}

type sseEvent struct {
	typ  string
	data map[string]any
}

// openEvents opens /v2/events on s (query: e.g. "event_type=x") and waits
// until the server has answered.
func openEvents(t testing.TB, s *server, query string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", s.url()+"/v2/events?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		t.Fatalf("events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	out := &sse{events: make(chan sseEvent, 100), cancel: cancel}
	go func() {
		defer res.Body.Close()
		defer close(out.events)
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data)
			case line == "" && ev.typ != "":
				out.events <- ev
				ev = sseEvent{}
			}
		}
	}()
	t.Cleanup(cancel)
	return out
}

// next returns the next event of one of the types, failing after a
// generous deadline.
func (c *sse) next(t testing.TB, types ...string) sseEvent {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("event stream ended waiting for %v", types)
			}
			if len(types) == 0 || slices.Contains(types, ev.typ) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %v event", types)
		}
	}
}

// Through a follower of a 3-server cluster: writes are forwarded (201,
// 409, 422 and 404 as on the leader), and /v2/events relays the leader's
// events in Marathon's JSON, filtered by event_type.
func TestFollowerAndEvents(t *testing.T) {
	servers := startCluster(t, 3)
	leader, follower := leaderOf(servers), followerOf(servers)
	all := openEvents(t, follower, "")
	if ev := all.next(t); ev.typ != "event_stream_attached" || ev.data["remoteAddress"] == nil {
		t.Fatalf("first event = %+v", ev)
	}
	onlyStatus := openEvents(t, follower, "event_type=status_update_event")

	r := want(t, do(t, follower, "POST", "/v2/apps", `{"id": "/f", "cmd": "sleep 1"}`), 201, "create through follower")
	if r.header.Get("Location") != "/v2/apps/f" {
		t.Errorf("Location = %q", r.header.Get("Location"))
	}
	ev := all.next(t, "api_post_event")
	if def, _ := ev.data["appDefinition"].(map[string]any); ev.data["uri"] != "/v2/apps/f" || def["id"] != "/f" || def["cmd"] != "sleep 1" || ev.data["timestamp"] == nil {
		t.Errorf("api_post_event = %+v", ev.data)
	}
	want(t, do(t, follower, "PUT", "/v2/apps/f", `{"instances": 2}`), 409, "locked through follower")
	want(t, do(t, follower, "POST", "/v2/apps", `{"id": "/g", "cmd": "c", "instances": -1}`), 422, "invalid through follower")
	want(t, do(t, follower, "DELETE", "/v2/apps/none", nil), 404, "missing through follower")

	// Events the scheduler publishes (on the leader) reach the follower's
	// stream in Marathon's shapes.
	leader.broker.Publish(&v1.Event{Type: "deployment_success", Timestamp: time.Now().UTC().Format(time.RFC3339Nano),
		AppId: "/f", Deployment: &v1.Deployment{Id: "d1", Version: "v1", AffectedApps: []string{"/f"},
			Steps: []*v1.DeploymentStep{{Actions: []*v1.DeploymentAction{{Action: "StartApplication", App: "/f"}}}}}})
	leader.broker.Publish(&v1.Event{Type: "status_update_event", Timestamp: "2024-05-01T10:00:00.123456Z", AppId: "/f",
		InstanceId: "f.instance-1", TaskId: "f.instance-1._app.1", TaskState: "TASK_RUNNING", AgentId: "agent-1", Host: "host-1"})
	leader.broker.Publish(&v1.Event{Type: "health_status_changed_event", AppId: "/f", InstanceId: "f.instance-1", Healthy: new(bool)})
	ev = all.next(t, "deployment_success")
	if ev.data["id"] != "d1" || ev.data["plan"].(map[string]any)["id"] != "d1" {
		t.Errorf("deployment_success = %+v", ev.data)
	}
	ev = all.next(t, "status_update_event")
	wantKeys := map[string]any{"eventType": "status_update_event", "timestamp": "2024-05-01T10:00:00.123Z", "appId": "/f",
		"taskId": "f.instance-1._app.1", "taskStatus": "TASK_RUNNING", "slaveId": "agent-1", "host": "host-1", "message": ""}
	for k, v := range wantKeys {
		if ev.data[k] != v {
			t.Errorf("status_update_event %s = %v, want %v", k, ev.data[k], v)
		}
	}
	if ev = all.next(t, "health_status_changed_event"); ev.data["alive"] != false || ev.data["instanceId"] != "f.instance-1" {
		t.Errorf("health_status_changed_event = %+v", ev.data)
	}
	if ev = onlyStatus.next(t); ev.typ != "status_update_event" {
		t.Errorf("filtered stream sent %s first", ev.typ)
	}
}

// BenchmarkEventLatency measures how long an event takes from its cause
// (published by the scheduler into the leader's broker) to a /v2/events
// client, through the Connect stream and the REST layer: on the leader
// itself, and on a follower of a 3-server cluster (which relays the
// leader's stream). The budget is 100 ms; ns/op is the mean, p99-ms the
// 99th percentile and max-ms the worst.
func BenchmarkEventLatency(b *testing.B) {
	b.Run("leader", func(b *testing.B) {
		s := startCluster(b, 1)[0]
		benchEvents(b, s, s)
	})
	b.Run("follower", func(b *testing.B) {
		servers := startCluster(b, 3)
		benchEvents(b, leaderOf(servers), followerOf(servers))
	})
}

func benchEvents(b *testing.B, leader, client *server) {
	c := openEvents(b, client, "event_type=status_update_event")
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("bench.instance-1._app.%d", i)
		start := time.Now()
		leader.broker.Publish(&v1.Event{Type: "status_update_event", Timestamp: start.UTC().Format(time.RFC3339Nano), AppId: "/bench", TaskId: id, TaskState: "TASK_RUNNING"})
		for {
			ev := c.next(b)
			if ev.data["taskId"] == id {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	}
}
