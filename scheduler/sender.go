package scheduler

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/framing"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// senderWorkers is how many calls the sender has in flight to the master
// at most. A master answers an ACCEPT of many operations, or an
// acknowledgement, only once it has applied it; with one call at a time
// the decline of a round's unused offers waited behind its big ACCEPTs
// (and the master's next offers with it), and thousands of
// acknowledgements queued up behind each other.
const senderWorkers = 8

// callFunc sends one call to the master.
type callFunc func(ctx context.Context, c *scheduler.Call) (mesos.Response, error)

// sender sends calls to the master from a bounded pool of goroutines, so
// that a slow master never stalls the event loop (and with it the reading
// of the subscription stream) and several calls are in flight at once.
// Calls concerning one agent (acknowledgements and kills of its tasks,
// ACCEPTs launching on it) go through one queue and reach the master in
// the order they were queued; so do the calls that concern no agent
// (DECLINE, REVIVE, SUPPRESS, RECONCILE). Calls are queued only after
// their plan committed (invariant 1); once ctx ends nothing more is sent.
type sender struct {
	ctx    context.Context
	call   callFunc
	fid    string
	log    *slog.Logger
	queues []*callQueue

	acceptKO atomic.Bool
}

// callQueue is one worker's queue of calls, sent in order.
type callQueue struct {
	mu    sync.Mutex
	queue []*scheduler.Call
	wake  chan struct{}
}

func newSender(ctx context.Context, call callFunc, fid string, log *slog.Logger) *sender {
	s := &sender{ctx: ctx, call: call, fid: fid, log: log}
	for i := 0; i < senderWorkers; i++ {
		s.queues = append(s.queues, &callQueue{wake: make(chan struct{}, 1)})
	}
	return s
}

// run sends until ctx ends; it returns once every worker has stopped.
func (o *sender) run() {
	var wg sync.WaitGroup
	for _, q := range o.queues {
		wg.Add(1)
		go func() { defer wg.Done(); o.work(q) }()
	}
	wg.Wait()
}

// callKey is what orders c among the calls sent: calls with one key are
// sent in order. An ACCEPT is keyed by the agent its tasks launch on (so a
// KILL queued after it cannot overtake it), or else by its offer, which no
// other call names.
func callKey(c *scheduler.Call) string {
	switch c.Type {
	case scheduler.Call_ACKNOWLEDGE:
		return c.Acknowledge.AgentID.Value
	case scheduler.Call_KILL:
		if a := c.Kill.AgentID; a != nil {
			return a.Value
		}
		return c.Kill.TaskID.Value
	case scheduler.Call_ACCEPT:
		for _, op := range c.Accept.Operations {
			for _, t := range op.GetLaunch().GetTaskInfos() {
				return t.AgentID.Value
			}
		}
		if len(c.Accept.OfferIDs) > 0 {
			return c.Accept.OfferIDs[0].Value
		}
	}
	return ""
}

func (o *sender) queueFor(c *scheduler.Call) *callQueue {
	k := callKey(c)
	if k == "" {
		return o.queues[0]
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(k))
	return o.queues[h.Sum32()%uint32(len(o.queues))]
}

func (o *sender) enqueue(cs ...*scheduler.Call) {
	for _, c := range cs {
		q := o.queueFor(c)
		q.mu.Lock()
		q.queue = append(q.queue, c)
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// queued returns the calls not yet taken by a worker.
func (o *sender) queued() []*scheduler.Call {
	var out []*scheduler.Call
	for _, q := range o.queues {
		q.mu.Lock()
		out = append(out, q.queue...)
		q.mu.Unlock()
	}
	return out
}

// failedAccept reports (and clears) whether an ACCEPT failed since the
// last call.
func (o *sender) failedAccept() bool { return o.acceptKO.Swap(false) }

func (o *sender) work(q *callQueue) {
	for {
		select {
		case <-o.ctx.Done():
			return
		case <-q.wake:
		}
		for {
			q.mu.Lock()
			if len(q.queue) == 0 {
				q.mu.Unlock()
				break
			}
			c := q.queue[0]
			q.queue[0] = nil
			q.queue = q.queue[1:]
			q.mu.Unlock()
			if o.ctx.Err() != nil {
				return // leadership lost: stop sending at once
			}
			if err := o.send(c); err != nil && c.Type == scheduler.Call_ACCEPT {
				o.acceptKO.Store(true)
				// The master may not have seen the ACCEPT and would then hold
				// the offer forever (no offer timeout by default): decline
				// it. Declining an offer already used is harmless.
				if o.ctx.Err() == nil {
					_ = o.send(calls.Decline(c.Accept.OfferIDs...).With(calls.RefuseSeconds(time.Second)))
				}
			}
		}
	}
}

func (o *sender) send(c *scheduler.Call) error {
	c.FrameworkID = &mesos.FrameworkID{Value: o.fid}
	resp, err := o.call(o.ctx, c)
	if resp != nil {
		_ = resp.Close()
	}
	if err != nil {
		if o.ctx.Err() == nil {
			o.log.Warn("mesos call failed", "call", c.Type.String(), "instance_ids", callInstances(c), "err", err)
		}
		return fmt.Errorf("%s: %w", c.Type, err)
	}
	if c.Type != scheduler.Call_DECLINE && o.log.Enabled(o.ctx, slog.LevelDebug) {
		o.log.Debug("mesos call sent", "call", c.Type.String(), "operations", operationNames(c), "instance_ids", callInstances(c))
	}
	return nil
}

// subscription remembers where the master accepted the SUBSCRIBE (after
// any redirect to the leading master) and the stream id it answered, for
// the calls sent outside mesos-go's httpsched caller: that caller holds one
// lock across each call, so it never has more than one in flight.
type subscription struct {
	mu       sync.Mutex
	endpoint string
	streamID string
}

// observe wraps a round tripper so that a successful response carrying a
// Mesos-Stream-Id (only SUBSCRIBE's does) is remembered.
func (s *subscription) observe(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		res, err := rt.RoundTrip(r)
		if err == nil && res.StatusCode == http.StatusOK {
			if id := res.Header.Get("Mesos-Stream-Id"); id != "" {
				u := *r.URL
				u.User = nil
				s.mu.Lock()
				s.endpoint, s.streamID = u.String(), id
				s.mu.Unlock()
			}
		}
		return res, err
	})
}

func (s *subscription) get() (endpoint, streamID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endpoint, s.streamID
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// callsClient returns a function sending calls on sub's stream with
// several in flight: a plain mesos-go HTTP client (safe for concurrent
// use) on the subscribed endpoint with the stream id header.
func callsClient(sub *subscription, cfg []httpcli.ConfigOpt, codec httpcli.Opt) (callFunc, error) {
	endpoint, streamID := sub.get()
	if endpoint == "" || streamID == "" {
		return nil, fmt.Errorf("no stream id from the master's SUBSCRIBE response")
	}
	if _, err := url.Parse(endpoint); err != nil {
		return nil, fmt.Errorf("subscribed endpoint %q: %w", endpoint, err)
	}
	cli := httpcli.New(httpcli.Endpoint(endpoint), codec, httpcli.Do(httpcli.With(cfg...)))
	return func(ctx context.Context, c *scheduler.Call) (mesos.Response, error) {
		return cli.Do(c, httpcli.Context(ctx), httpcli.Header("Mesos-Stream-Id", streamID))
	}, nil
}

// maxEventBytes is the largest event the scheduler decodes from its
// subscription. mesos-go's HTTP client reads the stream in RecordIO frames
// of at most 4 MiB, but a master sends an allocation round's offers as one
// event, and each offer carries every reservation and volume on its agent:
// 1,000 agents with 10 berths each make about 15 MiB.
const maxEventBytes = 256 << 20

// largeFrames returns codec with its decoder reading RecordIO frames of up
// to max bytes (mesos-go's reader embeds a bufio.Scanner whose limit can be
// raised before the first read; a reader without one is left alone).
func largeFrames(codec encoding.Codec, max int) encoding.Codec {
	dec := codec.NewDecoder
	codec.NewDecoder = func(s encoding.Source) encoding.Decoder {
		return dec(func() framing.Reader {
			r := s()
			if b, ok := r.(interface{ Buffer([]byte, int) }); ok {
				b.Buffer(make([]byte, 64<<10), max)
			}
			return r
		})
	}
	return codec
}
