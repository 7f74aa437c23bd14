package mesoslocal

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gogo/protobuf/proto"
)

const (
	mediaJSON     = "application/json"
	mediaProtobuf = "application/x-protobuf"
)

// codec is the negotiated wire encoding of a request or response.
type codec string

func (k codec) marshal(m proto.Message) ([]byte, error) {
	if k == mediaProtobuf {
		return proto.Marshal(m)
	}
	return json.Marshal(m)
}

func (k codec) unmarshal(b []byte, m proto.Message) error {
	if k == mediaProtobuf {
		return proto.Unmarshal(b, m)
	}
	return json.Unmarshal(b, m)
}

// requestCodec reads Content-Type: missing → 400, unsupported → 415.
func requestCodec(r *http.Request) (codec, int, string) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "", http.StatusBadRequest, "Expecting 'Content-Type' to be present"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", http.StatusUnsupportedMediaType, fmt.Sprintf("Unsupported Content-Type %q", ct)
	}
	switch mt {
	case mediaJSON, mediaProtobuf:
		return codec(mt), 0, ""
	}
	return "", http.StatusUnsupportedMediaType, fmt.Sprintf("Expecting 'Content-Type' of %s or %s", mediaJSON, mediaProtobuf)
}

// responseCodec negotiates Accept (default JSON, as Mesos); 406 if neither
// encoding is acceptable.
func responseCodec(r *http.Request) (codec, bool) {
	accept := r.Header.Values("Accept")
	if len(accept) == 0 {
		return mediaJSON, true
	}
	best, bestQ := codec(""), -1.0
	for _, h := range accept {
		for _, part := range strings.Split(h, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if qs, ok := params["q"]; ok {
				if v, err := strconv.ParseFloat(qs, 64); err == nil {
					q = v
				}
			}
			if q <= 0 {
				continue
			}
			var k codec
			switch mt {
			case mediaJSON, "*/*", "application/*":
				k = mediaJSON
			case mediaProtobuf:
				k = mediaProtobuf
			default:
				continue
			}
			if q > bestQ {
				best, bestQ = k, q
			}
		}
	}
	return best, best != ""
}

func recordIOFrame(b []byte) []byte {
	out := make([]byte, 0, len(b)+12)
	out = strconv.AppendInt(out, int64(len(b)), 10)
	out = append(out, '\n')
	return append(out, b...)
}

// stream is one RecordIO event stream. The master enqueues events without
// blocking (their place in the stream is fixed when they are queued); the
// HTTP handler that owns the connection encodes and writes them, outside
// the master lock. Queued events are never modified afterwards: they are
// built fresh or share only values that are never mutated in place.
type stream struct {
	codec    codec
	streamID string
	notify   chan struct{}

	mu     sync.Mutex
	queue  []proto.Message
	closed bool // no more events will be queued; drain then end
	gone   bool // the connection ended
}

func newStream(k codec, streamID string) *stream {
	return &stream{codec: k, streamID: streamID, notify: make(chan struct{}, 1)}
}

// send queues an event; false if the stream is closed.
func (s *stream) send(m proto.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.gone {
		return false
	}
	s.queue = append(s.queue, m)
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return true
}

// close ends the stream after the queued events are written.
func (s *stream) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *stream) isGone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone
}

// serve writes the stream to w until it is closed, the client goes away or
// ctx ends. heartbeat (if non-nil) is written every interval.
func (s *stream) serve(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, heartbeat proto.Message, interval time.Duration) {
	defer func() {
		s.mu.Lock()
		s.gone = true
		s.queue = nil
		s.mu.Unlock()
	}()
	var hb []byte
	var tick <-chan time.Time
	if heartbeat != nil {
		b, err := s.codec.marshal(heartbeat)
		if err == nil {
			hb = recordIOFrame(b)
			t := time.NewTicker(interval)
			defer t.Stop()
			tick = t.C
		}
	}
	write := func(frames ...[]byte) bool {
		for _, f := range frames {
			if _, err := w.Write(f); err != nil {
				return false
			}
		}
		return rc.Flush() == nil
	}
	var frames [][]byte
	for {
		s.mu.Lock()
		events, closed := s.queue, s.closed
		s.queue = nil
		s.mu.Unlock()
		frames = frames[:0]
		for _, m := range events {
			// An event that cannot be encoded is dropped (none of ours can fail).
			if b, err := s.codec.marshal(m); err == nil {
				frames = append(frames, recordIOFrame(b))
			}
		}
		if len(frames) > 0 && !write(frames...) {
			return
		}
		if closed {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.notify:
		case <-tick:
			if !write(hb) {
				return
			}
		}
	}
}

// writeError writes a plain-text HTTP error, as Mesos does.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprint(w, msg)
}
