package rpc

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// EventSource is where StreamEvents gets its events from: the scheduler's
// status, health and deployment events.
type EventSource interface {
	// Subscribe returns a channel of events published from now on and a
	// function that ends the subscription (also ended when ctx ends). The
	// channel is closed when the subscription ends.
	Subscribe(ctx context.Context) (<-chan *v1.Event, func())
}

// EventPublisher accepts events for the event stream; Publish must not
// block. *EventBroker implements it.
type EventPublisher interface {
	Publish(ev *v1.Event)
}

// EventStreamAttached is the first event of every stream, sent as soon as
// the subscription is in place (as Marathon's event stream does).
const EventStreamAttached = "event_stream_attached"

// EventTypes are the event types a Berth server publishes, in alphabetical
// order. StreamEvents refuses a filter naming any other type: it could
// only match nothing, silently.
var EventTypes = []string{
	EventAPIPost,
	"backup_event",
	"backup_progress",
	"deployment_failed",
	"deployment_info",
	"deployment_success",
	EventStreamAttached,
	"health_status_changed_event",
	"instance_changed_event",
	"instance_move_event",
	"readiness_check_result",
	"reconciliation_complete",
	"reconciliation_incomplete",
	"status_update_event",
	"unhealthy_instance_kill_event",
}

// DefaultEventBuffer is how many events a subscriber may lag behind before
// the oldest are dropped (Marathon's limit).
const DefaultEventBuffer = 1024

// EventBroker is an in-memory EventSource that fans published events out to
// every subscriber. Publish never blocks: each subscriber has a bounded
// buffer, and when a slow subscriber's buffer is full its oldest event is
// dropped (and counted). The zero value is not usable; call NewEventBroker.
type EventBroker struct {
	log    *slog.Logger
	buffer int

	mu     sync.Mutex
	subs   map[*eventSub]struct{}
	closed bool
}

type eventSub struct {
	ch      chan *v1.Event
	dropped uint64 // under EventBroker.mu
	once    sync.Once
}

// NewEventBroker returns a broker with a per-subscriber buffer of buffer
// events (DefaultEventBuffer if <= 0). logger may be nil.
func NewEventBroker(buffer int, logger *slog.Logger) *EventBroker {
	if buffer <= 0 {
		buffer = DefaultEventBuffer
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &EventBroker{log: logger, buffer: buffer, subs: map[*eventSub]struct{}{}}
}

// Publish sends ev to every current subscriber. Subscribers must not modify
// the event.
func (b *EventBroker) Publish(ev *v1.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- ev:
			continue
		default:
		}
		// Full: drop the oldest event to make room for the newest.
		select {
		case <-s.ch:
			s.dropped++
			if s.dropped == 1 || s.dropped%uint64(b.buffer) == 0 {
				b.log.Warn("event subscriber too slow; dropping its oldest events", "dropped", s.dropped)
			}
		default:
		}
		select {
		case s.ch <- ev:
		default:
		}
	}
}

// Subscribe implements EventSource.
func (b *EventBroker) Subscribe(ctx context.Context) (<-chan *v1.Event, func()) {
	s := &eventSub{ch: make(chan *v1.Event, b.buffer)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { b.unsubscribe(s) })
	return s.ch, func() {
		stop()
		b.unsubscribe(s)
	}
}

func (b *EventBroker) unsubscribe(s *eventSub) {
	s.once.Do(func() {
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
		close(s.ch)
	})
}

// Subscribers returns the number of current subscribers.
func (b *EventBroker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Close ends every subscription; later subscriptions end at once.
func (b *EventBroker) Close() {
	b.mu.Lock()
	b.closed = true
	subs := make([]*eventSub, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		b.unsubscribe(s)
	}
}

type eventService struct{ *Server }

// eventMatches applies a StreamEventsRequest's filters.
func eventMatches(ev *v1.Event, types []string, appID string) bool {
	if len(types) > 0 && !slices.Contains(types, ev.GetType()) {
		return false
	}
	if appID != "" && ev.GetAppId() != appID && !slices.Contains(ev.GetDeployment().GetAffectedApps(), appID) {
		return false
	}
	return true
}

// StreamEvents streams events until the client goes away or the server
// shuts down. The scheduler runs on the leader, so a follower relays the
// leader's stream; if the leader changes, the stream ends with Unavailable
// and the client reconnects.
func (e *eventService) StreamEvents(ctx context.Context, req *connect.Request[v1.StreamEventsRequest], stream *connect.ServerStream[v1.Event]) error {
	msg := req.Msg
	for _, typ := range msg.Types {
		if !slices.Contains(EventTypes, typ) {
			return invalid("types", fmt.Sprintf("unknown event type %q (known types: %s)", typ, strings.Join(EventTypes, ", ")))
		}
	}
	appID := appmodel.NormalizeID(msg.AppId)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.streams, cancel)
	defer stop()

	if !e.clu.IsLeader() && req.Header().Get(forwardedHeader) == "" {
		// Events are published on the leader: a follower relays its
		// stream. One that knows no leader yet waits for one (as a write
		// does); serving its own broker would attach a stream that misses
		// every event.
		addr, err := e.leaderAPI(ctx)
		if err != nil {
			return err
		}
		if addr != "" {
			return e.relay(ctx, e.peer(addr), msg, stream)
		}
	}
	var ch <-chan *v1.Event
	if e.events != nil {
		var unsubscribe func()
		ch, unsubscribe = e.events.Subscribe(ctx)
		defer unsubscribe()
	}
	if err := stream.Send(&v1.Event{Type: EventStreamAttached, Timestamp: e.now().UTC().Format(time.RFC3339Nano)}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			if !eventMatches(ev, msg.Types, appID) {
				continue
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// leaderAPI waits (up to Config.LeaderWait) until this server leads ("")
// or knows the leader's API address.
func (e *eventService) leaderAPI(ctx context.Context) (string, error) {
	deadline := time.Now().Add(e.cfg.LeaderWait)
	for {
		if e.clu.IsLeader() {
			return "", nil
		}
		if _, _, addr := e.clu.Leader(); addr != "" {
			return addr, nil
		}
		if time.Now().After(deadline) {
			return "", connect.NewError(connect.CodeUnavailable, fmt.Errorf("no leader available after %s: events come from the leader; retry", e.cfg.LeaderWait))
		}
		select {
		case <-ctx.Done():
			return "", ctxError(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// relay copies the leader's event stream to the client.
func (e *eventService) relay(parent context.Context, pc *peerClients, msg *v1.StreamEventsRequest, stream *connect.ServerStream[v1.Event]) error {
	// End the relay when the leader changes (or is lost): the client
	// reconnects and gets the new leader's stream.
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, _, addr := e.clu.Leader(); addr != pc.addr {
					cancel()
					return
				}
			}
		}
	}()
	up, err := pc.event.StreamEvents(ctx, forwarded(ctx, msg))
	if err != nil {
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("stream events from the leader at %s: %w", pc.addr, err))
	}
	defer up.Close()
	for up.Receive() {
		if err := stream.Send(up.Msg()); err != nil {
			return err
		}
	}
	if parent.Err() != nil {
		return nil // the client went away or the server is shutting down
	}
	if err := up.Err(); err != nil && ctx.Err() == nil {
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("event stream from the leader at %s ended: %w", pc.addr, err))
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("event stream from the leader at %s ended (leader changed?); reconnect", pc.addr))
}
