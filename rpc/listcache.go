package rpc

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Listing all apps was the costliest thing a client could ask often: two
// index lookups per app to summarize it, then the encoding of every app.
// With 100 clients listing 2,000 apps in a loop, a write waited for the CPU
// (BENCHMARKS.md, "a write while 100 clients list"). Two things make a
// listing cheap:
//
//   - appSummaries reads the instances and deployments tables once for a
//     long listing, grouped by app, instead of looking both up per app.
//   - appListCache keeps the answers of the newest store index: clients
//     listing an unchanged store share one computation and one encoding
//     (listCodec hands connect the bytes encoded once). The store is
//     versioned by its index, so an answer for index i is exactly what a
//     listing of a snapshot at i computes.

// bulkSummaryMin is the number of apps from which a listing reads the
// instances and deployments tables whole rather than per app.
const bulkSummaryMin = 256

// appSummaries summarizes apps of one snapshot.
type appSummaries struct {
	st *fsm.Snapshot
	// bulk: insts and running hold every app's, read once.
	bulk    bool
	insts   map[string][]*v1.Instance
	running map[string][]*v1.Deployment
}

// newAppSummaries prepares the summaries of about n apps of st.
func newAppSummaries(st *fsm.Snapshot, n int) (*appSummaries, error) {
	a := &appSummaries{st: st}
	if n < bulkSummaryMin {
		return a, nil
	}
	insts, err := st.Instances()
	if err != nil {
		return nil, stateError(err)
	}
	deps, err := st.Deployments() // oldest first
	if err != nil {
		return nil, stateError(err)
	}
	a.bulk = true
	a.insts = map[string][]*v1.Instance{}
	for _, inst := range insts {
		a.insts[inst.GetAppId()] = append(a.insts[inst.GetAppId()], inst)
	}
	a.running = map[string][]*v1.Deployment{}
	for _, d := range deps {
		if d.GetStatus() != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
			continue
		}
		for _, id := range d.GetAffectedApps() {
			a.running[id] = append(a.running[id], d)
		}
	}
	return a, nil
}

// summary is summarize(st, app).
func (a *appSummaries) summary(app *v1.App) (*v1.AppSummary, error) {
	if !a.bulk {
		return summarize(a.st, app)
	}
	return summaryOf(app, slices.Values(a.insts[app.GetId()]), a.running[app.GetId()]), nil
}

// appListCache keeps the ListApps answers computed at the newest store
// index, by request.
type appListCache struct {
	mu      sync.Mutex
	index   uint64
	entries map[string]*appListEntry
}

// appListCacheMax bounds the answers kept (distinct filters and pages).
const appListCacheMax = 32

// appListEntry is one answer, computed once; the first caller computes it,
// the others wait for it.
type appListEntry struct {
	done chan struct{}
	res  *v1.ListAppsResponse
	err  error

	encodeOnce sync.Once
	encoded    []byte
	encodeErr  error
}

// appListKey names a request's answer at one index.
func appListKey(msg *v1.ListAppsRequest) string {
	return fmt.Sprintf("%q %q %q %d %q", msg.GetIdContains(), msg.GetCmdContains(), msg.GetLabel(), msg.GetPageSize(), msg.GetPageToken())
}

// get returns the answer for key at index, computing it (once for all
// concurrent callers) when it is not kept. An answer of an older index
// than the newest seen is computed and not kept; errors are not kept.
func (c *appListCache) get(ctx context.Context, index uint64, key string, compute func() (*v1.ListAppsResponse, error)) (*v1.ListAppsResponse, error) {
	c.mu.Lock()
	if index > c.index || c.entries == nil {
		c.index, c.entries = index, map[string]*appListEntry{}
	}
	if index < c.index {
		c.mu.Unlock()
		return compute()
	}
	if e, ok := c.entries[key]; ok {
		c.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e.err != nil {
			// The computing caller failed (it went away, say): this one
			// computes for itself.
			return compute()
		}
		return e.res, nil
	}
	e := &appListEntry{done: make(chan struct{})}
	keep := len(c.entries) < appListCacheMax
	if keep {
		c.entries[key] = e
	}
	c.mu.Unlock()

	res, err := compute()
	c.mu.Lock()
	e.res, e.err = res, err
	if err != nil && keep && c.entries[key] == e {
		delete(c.entries, key)
	}
	c.mu.Unlock()
	close(e.done)
	return res, err
}

// answer is a response for one caller of a kept answer: a message of its
// own (interceptors replace a response's content in place, authInterceptor)
// sharing the answer's apps and summaries, capped so that an append cannot
// write into them.
func answer(res *v1.ListAppsResponse) *v1.ListAppsResponse {
	return &v1.ListAppsResponse{
		Apps:          res.Apps[:len(res.Apps):len(res.Apps)],
		Summaries:     res.Summaries[:len(res.Summaries):len(res.Summaries)],
		NextPageToken: res.NextPageToken,
	}
}

// sameAnswer reports whether m still holds exactly the answer of e: the
// same apps and summaries (not copies: an interceptor that filtered m made
// new ones) and the same page token.
func sameAnswer(m, res *v1.ListAppsResponse) bool {
	same := func(a, b []*v1.App) bool { return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0]) }
	sameSums := func(a, b []*v1.AppSummary) bool { return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0]) }
	return same(m.Apps, res.Apps) && sameSums(m.Summaries, res.Summaries) && m.NextPageToken == res.NextPageToken
}

// encoded returns the wire encoding of m if it holds a kept answer
// unchanged, encoding that answer once; ok is false for any other message.
func (c *appListCache) encoded(m *v1.ListAppsResponse) (b []byte, ok bool, err error) {
	if len(m.Apps) == 0 {
		return nil, false, nil // nothing worth sharing
	}
	c.mu.Lock()
	var e *appListEntry
	for _, x := range c.entries {
		if x.res != nil && sameAnswer(m, x.res) {
			e = x
			break
		}
	}
	c.mu.Unlock()
	if e == nil {
		return nil, false, nil
	}
	e.encodeOnce.Do(func() { e.encoded, e.encodeErr = proto.Marshal(e.res) })
	return e.encoded, true, e.encodeErr
}

// listCodec is connect's protobuf binary codec, except that a kept ListApps
// answer is encoded once for every client that gets it.
type listCodec struct{ cache *appListCache }

func (listCodec) Name() string { return "proto" }

func (c listCodec) Marshal(msg any) ([]byte, error) { return c.MarshalAppend(nil, msg) }

// MarshalAppend lets connect encode into its pooled buffers.
func (c listCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	if res, ok := msg.(*v1.ListAppsResponse); ok {
		if b, kept, err := c.cache.encoded(res); kept {
			return append(dst, b...), err
		}
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", msg)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

func (listCodec) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", msg)
	}
	return proto.Unmarshal(data, m)
}
