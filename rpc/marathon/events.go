package marathon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// eventJSON renders a Berth event as Marathon's event JSON (its keys per
// eventType, timestamps with milliseconds). appDefinition is the app of
// an api_post_event, if known (else only its id is given).
func eventJSON(ev *v1.Event, remoteAddr string, appDefinition json.RawMessage) map[string]any {
	m := map[string]any{"eventType": ev.GetType(), "timestamp": marathonTimestamp(ev.GetTimestamp())}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	switch ev.GetType() {
	case "event_stream_attached", "event_stream_detached":
		m["remoteAddress"] = remoteAddr
	case "status_update_event":
		m["slaveId"] = ev.GetAgentId()
		m["taskId"] = ev.GetTaskId()
		m["taskStatus"] = ev.GetTaskState()
		m["message"] = ev.GetMessage()
		m["appId"] = ev.GetAppId()
		host := ev.GetHost()
		if host == "" {
			host = "unknown"
		}
		m["host"] = host
		m["ipAddresses"] = []IPAddress{}
		m["ports"] = []uint32{}
		set("instanceId", ev.GetInstanceId())
	case "health_status_changed_event":
		m["appId"] = ev.GetAppId()
		m["instanceId"] = ev.GetInstanceId()
		m["alive"] = ev.GetHealthy()
		set("taskId", ev.GetTaskId())
	case "instance_changed_event":
		m["instanceId"] = ev.GetInstanceId()
		m["runSpecId"] = ev.GetAppId()
		m["condition"] = condition(ev.GetTaskState())
		m["agentId"] = nullable(ev.GetAgentId())
		m["host"] = nullable(ev.GetHost())
	case "api_post_event":
		m["clientIp"] = ""
		m["uri"] = "/v2/apps" + ev.GetAppId()
		if appDefinition != nil {
			m["appDefinition"] = appDefinition
		} else {
			m["appDefinition"] = map[string]string{"id": ev.GetAppId()}
		}
	case "deployment_info", "deployment_success", "deployment_failed", "deployment_step_success", "deployment_step_failure":
		d := ev.GetDeployment()
		m["plan"] = planJSON{ID: d.GetId(), Version: d.GetVersion(), Steps: stepsOf(d)}
		if ev.GetType() == "deployment_success" || ev.GetType() == "deployment_failed" {
			m["id"] = d.GetId()
		}
		if ev.GetType() == "deployment_failed" {
			set("reason", ev.GetMessage())
		}
		if i := int(d.GetCurrentStep()) - 1; i >= 0 && i < len(d.GetSteps()) {
			m["currentStep"] = stepsOf(d)[i]
		} else if ev.GetType() == "deployment_info" && len(d.GetSteps()) > 0 {
			m["currentStep"] = stepsOf(d)[0]
		}
	default:
		set("appId", ev.GetAppId())
		set("instanceId", ev.GetInstanceId())
		set("taskId", ev.GetTaskId())
		set("message", ev.GetMessage())
	}
	return m
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// condition is Marathon's instance condition for a Mesos task state.
func condition(state string) string {
	if state == "" {
		return "Scheduled"
	}
	c := strings.TrimPrefix(state, "TASK_")
	if c == "" {
		return state
	}
	parts := strings.Split(strings.ToLower(c), "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}

// marathonTimestamp rewrites an RFC 3339 time with milliseconds.
func marathonTimestamp(ts string) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return ts
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// streamEvents serves GET /v2/events: Server-Sent Events in Marathon's
// framing (event: <type>, data: <JSON>, blank line; a bare CRLF as
// keep-alive), filtered by event_type (repeatable). It relays the
// Connect event stream (on a follower, the leader's).
func (a *API) streamEvents(w http.ResponseWriter, r *http.Request) {
	var types []string
	for _, v := range r.URL.Query()["event_type"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				types = append(types, t)
			}
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stream, err := a.events.StreamEvents(ctx, call(r, &v1.StreamEventsRequest{}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	defer stream.Close() // after the reader below has stopped
	// The first event (event_stream_attached) proves the stream is up.
	if !stream.Receive() {
		err := stream.Err()
		if err == nil {
			err = fmt.Errorf("event stream ended before it started")
		}
		a.writeError(w, r, err, failure{})
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	send := func(ev *v1.Event) error {
		if len(types) > 0 && !contains(types, ev.GetType()) {
			return nil
		}
		data, err := json.Marshal(eventJSON(ev, r.RemoteAddr, a.appDefinition(ctx, r, ev)))
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\r\ndata: %s\r\n\r\n", ev.GetType(), data); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := send(stream.Msg()); err != nil {
		return
	}
	_ = rc.Flush()
	events := make(chan *v1.Event)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(events)
		for stream.Receive() {
			select {
			case events <- stream.Msg():
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { cancel(); <-done }()
	keepAlive := time.NewTicker(a.cfg.KeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-events:
			if !ok {
				return // the stream ended (leader change, shutdown): the client reconnects
			}
			if err := send(ev); err != nil {
				return
			}
		case <-keepAlive.C:
			if _, err := w.Write([]byte("\r\n")); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

// appDefinition is the app an api_post_event is about, as written (or,
// for an event without it, as stored now; nil for other events, or if the
// app is gone).
func (a *API) appDefinition(ctx context.Context, r *http.Request, ev *v1.Event) json.RawMessage {
	if ev.GetType() != "api_post_event" || ev.GetAppId() == "" {
		return nil
	}
	app := ev.GetApp()
	if app == nil {
		res, err := a.apps.GetApp(ctx, call(r, &v1.GetAppRequest{Id: ev.GetAppId()}))
		if err != nil {
			return nil
		}
		app = res.Msg.GetApp()
	}
	b, err := appmodel.Render(app)
	if err != nil {
		return nil
	}
	return compact(b)
}
