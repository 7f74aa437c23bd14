package rpc

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// Listings are the API's costly reads: each walks a table of the store and
// encodes a large answer. Too many at once would take every core from the
// writes and the scheduler, so a server runs at most Config.MaxConcurrentLists
// of them; a listing that cannot start within listQueueWait is shed with
// ResourceExhausted (HTTP 429 with Retry-After), a clear answer a client can
// retry, rather than queued without bound.
var heavyReads = map[string]bool{
	berthv1connect.AppServiceListAppsProcedure:               true,
	berthv1connect.TaskServiceListTasksProcedure:             true,
	berthv1connect.DeploymentServiceListDeploymentsProcedure: true,
}

// listQueueWait is how long a listing waits for a slot.
const listQueueWait = 2 * time.Second

// listRetryAfter is the Retry-After a shed listing suggests, in seconds.
const listRetryAfter = 1

type listLimiter struct {
	slots chan struct{}
	wait  time.Duration
}

func newListLimiter(n int, wait time.Duration) listLimiter {
	return listLimiter{slots: make(chan struct{}, n), wait: wait}
}

// acquire takes a slot, or fails with ResourceExhausted after l.wait.
func (l listLimiter) acquire(ctx context.Context, procedure string) (release func(), err error) {
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, nil
	default:
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, nil
	case <-ctx.Done():
		return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
	case <-t.C:
		err := connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("%s: this server is running %d listings already; retry in %d s, or use page_size", procedure, cap(l.slots), listRetryAfter))
		err.Meta().Set("Retry-After", strconv.Itoa(listRetryAfter))
		return nil, err
	}
}

func (l listLimiter) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient || !heavyReads[req.Spec().Procedure] {
			return next(ctx, req)
		}
		release, err := l.acquire(ctx, req.Spec().Procedure)
		if err != nil {
			return nil, err
		}
		defer release()
		return next(ctx, req)
	}
}

func (l listLimiter) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (l listLimiter) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
