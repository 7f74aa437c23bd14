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
	release, err := l.acquire(ctx, berthv1connect.AppServiceListAppsProcedure, "a")
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.acquire(ctx, berthv1connect.AppServiceListAppsProcedure, "a")
	var ce *connect.Error
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !errors.As(err, &ce) ||
		ce.Meta().Get("Retry-After") != "1" || !strings.Contains(ce.Message(), "running 1 listings already (at most 1 for one client)") {
		t.Fatalf("second listing: %v (meta %v)", err, ce)
	}
	// A listing waiting for a slot gets it as soon as one is freed.
	got := make(chan error, 1)
	l2 := newListLimiter(1, time.Minute)
	r2, _ := l2.acquire(ctx, "x", "a")
	go func() {
		rel, err := l2.acquire(ctx, "x", "a")
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
	if _, err := l.acquire(cctx, "x", "a"); connect.CodeOf(err) != connect.CodeCanceled {
		t.Fatalf("cancelled wait: %v", err)
	}
	release()
}

// TestListLimiterFairBetweenClients: one client cannot hold every slot,
// and a freed slot goes to a client that waited rather than back to the
// client that just had it.
func TestListLimiterFairBetweenClients(t *testing.T) {
	ctx := context.Background()
	l := newListLimiter(2, 50*time.Millisecond)
	relA, err := l.acquire(ctx, "x", "a")
	if err != nil {
		t.Fatal(err)
	}
	capped := make(chan error, 1)
	go func() {
		_, err := l.acquire(ctx, "x", "a")
		capped <- err
	}()
	waitQueued(t, l, 1)
	relB, err := l.acquire(ctx, "x", "b")
	if err != nil {
		t.Fatalf("another client, with a slot free while a waits: %v", err)
	}
	if err := <-capped; connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("a second slot for the same client of two: %v", err)
	}
	relA()
	relB()

	// One slot: a holds it, then a and b wait (a first); the freed slot
	// goes to b.
	one := newListLimiter(1, time.Minute)
	rel, _ := one.acquire(ctx, "x", "a")
	order := make(chan string, 2)
	wait := func(client string) {
		r, err := one.acquire(ctx, "x", client)
		if err != nil {
			order <- client + ": " + err.Error()
			return
		}
		order <- client
		r()
	}
	go wait("a")
	waitQueued(t, one, 1)
	go wait("b")
	waitQueued(t, one, 2)
	rel()
	if got := <-order; got != "b" {
		t.Fatalf("the freed slot went to %q, want the client that waited (b)", got)
	}
	if got := <-order; got != "a" {
		t.Fatalf("then %q, want a", got)
	}
}

// waitQueued waits until n listings wait for a slot of l.
func waitQueued(t *testing.T, l *listLimiter, n int) {
	t.Helper()
	for range 1000 {
		l.mu.Lock()
		q := len(l.queue)
		l.mu.Unlock()
		if q == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%d listings never queued", n)
}
