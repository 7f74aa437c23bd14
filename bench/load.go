package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// op is one write; i numbers it uniquely within a measurement.
type op func(ctx context.Context, i int) error

// latency is the outcome of n sequential writes.
type latency struct{ p50, p99 time.Duration }

// sequential runs n writes one after the other (after warm writes that are
// not counted) and returns their p50 and p99.
func sequential(ctx context.Context, n, warm int, do op) (latency, error) {
	for i := range warm {
		if err := do(ctx, -1-i); err != nil {
			return latency{}, fmt.Errorf("warm-up write %d: %w", i, err)
		}
	}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if err := do(ctx, i); err != nil {
			return latency{}, fmt.Errorf("write %d: %w", i, err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	at := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	return latency{p50: at(0.50), p99: at(0.99)}, nil
}

// concurrent runs n writes from the given clients at once (each client its
// own connection: newOp is called once per client) and returns writes/s.
func concurrent(ctx context.Context, n, clients int, newOp func() (op, func(), error)) (float64, error) {
	ops := make([]op, clients)
	for c := range clients {
		do, closeOp, err := newOp()
		if err != nil {
			return 0, err
		}
		defer closeOp()
		ops[c] = do
		// Open the connection before the clock starts.
		if err := do(ctx, -1-c); err != nil {
			return 0, fmt.Errorf("client %d warm-up: %w", c, err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := time.Now()
	for _, do := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := do(ctx, i); err != nil {
					errs <- fmt.Errorf("write %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(n) / elapsed.Seconds(), nil
}
