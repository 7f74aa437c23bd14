package rpc

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/acl"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// Listings are the API's costly reads: each walks a table of the store and
// encodes a large answer. Too many at once would take every core from the
// writes and the scheduler, so a server runs at most Config.MaxConcurrentLists
// of them; a listing that cannot start within listQueueWait is shed with
// ResourceExhausted (HTTP 429 with Retry-After), a clear answer a client can
// retry, rather than queued without bound. Slots are shared fairly between
// clients (listLimiter).
var heavyReads = map[string]bool{
	berthv1connect.AppServiceListAppsProcedure:               true,
	berthv1connect.TaskServiceListTasksProcedure:             true,
	berthv1connect.DeploymentServiceListDeploymentsProcedure: true,
}

// listQueueWait is how long a listing waits for a slot.
const listQueueWait = 2 * time.Second

// listRetryAfter is the Retry-After a shed listing suggests, in seconds.
const listRetryAfter = 1

// listLimiter runs at most n listings at once, fairly between clients: one
// client holds at most perClient of the slots (half of them, at least
// one), and a freed slot goes to the waiting client that holds the fewest
// and, among those, was served longest ago, so a client that keeps
// listing cannot take every slot in turn from the others.
type listLimiter struct {
	n, perClient int
	wait         time.Duration

	mu      sync.Mutex
	running int
	held    map[string]int    // slots by client
	served  map[string]uint64 // when each client last got a slot (a counter)
	clock   uint64
	queue   []*listWaiter // in arrival order
}

type listWaiter struct {
	client  string
	ready   chan struct{} // closed when granted
	granted bool
}

func newListLimiter(n int, wait time.Duration) *listLimiter {
	return &listLimiter{n: n, perClient: max(1, (n+1)/2), wait: wait, held: map[string]int{}, served: map[string]uint64{}}
}

// grant gives client a slot. Called with l.mu held.
func (l *listLimiter) grant(client string) {
	l.running++
	l.held[client]++
	l.clock++
	l.served[client] = l.clock
}

// release frees client's slot and hands free slots to waiters.
func (l *listLimiter) release(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running--
	if l.held[client]--; l.held[client] <= 0 {
		delete(l.held, client)
	}
	l.dispatch()
	if len(l.queue) == 0 && len(l.held) == 0 {
		clear(l.served) // forget idle clients
	}
}

// dispatch grants free slots to the waiters that come first (before).
// Called with l.mu held.
func (l *listLimiter) dispatch() {
	for l.running < l.n {
		best := -1
		for i, w := range l.queue {
			if l.held[w.client] >= l.perClient {
				continue
			}
			if best < 0 || l.before(w.client, l.queue[best].client) {
				best = i
			}
		}
		if best < 0 {
			return
		}
		w := l.queue[best]
		l.queue = append(l.queue[:best], l.queue[best+1:]...)
		l.grant(w.client)
		w.granted = true
		close(w.ready)
	}
}

// before reports whether client a comes before client b for a free slot:
// fewer slots held, then served longer ago.
func (l *listLimiter) before(a, b string) bool {
	if l.held[a] != l.held[b] {
		return l.held[a] < l.held[b]
	}
	return l.served[a] < l.served[b]
}

// acquire takes a slot for client, or fails with ResourceExhausted after
// l.wait.
func (l *listLimiter) acquire(ctx context.Context, procedure, client string) (release func(), err error) {
	rel := func() { l.release(client) }
	w := &listWaiter{client: client, ready: make(chan struct{})}
	l.mu.Lock()
	l.queue = append(l.queue, w)
	l.dispatch()
	l.mu.Unlock()
	select {
	case <-w.ready:
		return rel, nil
	default:
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	var fail error
	select {
	case <-w.ready:
		return rel, nil
	case <-ctx.Done():
		fail = connect.NewError(connect.CodeCanceled, ctx.Err())
	case <-t.C:
		ce := connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("%s: this server is running %d listings already (at most %d for one client); retry in %d s, or use page_size", procedure, l.n, l.perClient, listRetryAfter))
		ce.Meta().Set("Retry-After", strconv.Itoa(listRetryAfter))
		fail = ce
	}
	l.mu.Lock()
	if w.granted {
		// Granted as the wait ended: hand the slot on.
		l.mu.Unlock()
		l.release(client)
		return nil, fail
	}
	for i, q := range l.queue {
		if q == w {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
	return nil, fail
}

// listClient names the client of a listing for fairness: its token
// accessor or certificate name, else its IP address.
func listClient(ctx context.Context, peer connect.Peer) string {
	if c := callerFrom(ctx); c != nil && c.name() != acl.Anonymous {
		return "caller " + c.name()
	}
	if host, _, err := net.SplitHostPort(peer.Addr); err == nil {
		return "addr " + host
	}
	return "addr " + peer.Addr
}

func (l *listLimiter) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient || !heavyReads[req.Spec().Procedure] {
			return next(ctx, req)
		}
		release, err := l.acquire(ctx, req.Spec().Procedure, listClient(ctx, req.Peer()))
		if err != nil {
			return nil, err
		}
		if h, ok := ctx.Value(listSlotKey{}).(*listSlot); ok {
			// Held until the answer is encoded (holdListSlots).
			h.release = release
		} else {
			defer release()
		}
		return next(ctx, req)
	}
}

// listSlot carries a listing's slot from the interceptor that takes it to
// holdListSlots, which gives it back once the answer is encoded.
type listSlot struct{ release func() }

type listSlotKey struct{}

// holdListSlots makes a listing hold its slot while its answer is encoded
// and compressed, not only while it is computed: answering a few thousand
// apps costs as much as computing the answer (more once answers are shared,
// listcache.go), and a slot that ended before let that cost grow with the
// number of clients, beside the writes. The answer (unary) is encoded into
// a buffer, the slot given back, and then the buffer written: a client that
// reads slowly holds no slot.
func holdListSlots(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !heavyReads[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		h := &listSlot{}
		buf := &bufferedResponse{header: w.Header()}
		next.ServeHTTP(buf, r.WithContext(context.WithValue(r.Context(), listSlotKey{}, h)))
		if h.release != nil {
			h.release()
		}
		if buf.code != 0 {
			w.WriteHeader(buf.code)
		}
		_, _ = w.Write(buf.body.Bytes())
	})
}

// bufferedResponse keeps a unary answer in memory: its header map is the
// real response's (trailers declared in it are sent after the body).
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}

func (l *listLimiter) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (l *listLimiter) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
