package rpc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// TestListLimiterSheds: beyond its slots a listing waits a bounded time and
// is then refused with ResourceExhausted and a Retry-After, instead of
// queueing without bound; a freed slot serves the next one at once.
func TestListLimiterSheds(t *testing.T) {
	l := newListLimiter(1, 50*time.Millisecond)
	ctx := context.Background()
	release, err := l.acquire(ctx, berthv1connect.AppServiceListAppsProcedure)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.acquire(ctx, berthv1connect.AppServiceListAppsProcedure)
	var ce *connect.Error
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !errors.As(err, &ce) ||
		ce.Meta().Get("Retry-After") != "1" || !strings.Contains(ce.Message(), "running 1 listings already") {
		t.Fatalf("second listing: %v (meta %v)", err, ce)
	}
	// A listing waiting for a slot gets it as soon as one is freed.
	got := make(chan error, 1)
	l2 := newListLimiter(1, time.Minute)
	r2, _ := l2.acquire(ctx, "x")
	go func() {
		rel, err := l2.acquire(ctx, "x")
		if err == nil {
			rel()
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	r2()
	if err := <-got; err != nil {
		t.Fatalf("waiting listing after a release: %v", err)
	}
	// A client that goes away stops waiting.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.acquire(cctx, "x"); connect.CodeOf(err) != connect.CodeCanceled {
		t.Fatalf("cancelled wait: %v", err)
	}
	release()
}
