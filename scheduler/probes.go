package scheduler

import (
	"context"
	"crypto/tls"
	"net/http"
	"sync"
	"time"
)

// probePool is what the leader-run health and readiness probers share: one
// lock over their targets, a bound on probes in flight, one HTTP client, and
// the schedule of each target's checks.
type probePool struct {
	mu     sync.Mutex
	sem    chan struct{}
	client *http.Client
	wg     sync.WaitGroup
	now    func() time.Time
}

// probeSchedule is when each check of one target is due, and which are in
// flight.
type probeSchedule struct {
	next []time.Time
	busy []bool
}

// add schedules one more check, due at once.
func (s *probeSchedule) add(now time.Time) {
	s.next = append(s.next, now)
	s.busy = append(s.busy, false)
}

// dispatchDue starts every due check of every target not skipped, each in a
// goroutine, at most cap(sem) at once (saturated: the rest wait for the next
// tick). For each, start (called under the lock) returns the probe to run,
// and interval when the check is next due. Call with p.mu held.
func dispatchDue[S any](ctx context.Context, p *probePool, targets map[string]S,
	schedule func(S) *probeSchedule, skip func(S) bool,
	interval func(S, int) time.Duration, start func(id string, ci int, s S) func(context.Context),
) {
	now := p.now()
	for id, st := range targets {
		if skip(st) {
			continue
		}
		sc := schedule(st)
		for ci := range sc.next {
			if sc.busy[ci] || now.Before(sc.next[ci]) {
				continue
			}
			select {
			case p.sem <- struct{}{}:
			default:
				return
			}
			sc.busy[ci] = true
			sc.next[ci] = now.Add(interval(st, ci))
			run := start(id, ci, st)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer func() { <-p.sem }()
				run(ctx)
			}()
		}
	}
}

func newProbePool(concurrency int) probePool {
	return probePool{sem: make(chan struct{}, concurrency), client: newProbeClient(), now: time.Now}
}

// newProbeClient returns the HTTP client of leader-run health and readiness
// probes: like Marathon's, it does not verify certificates and does not
// follow redirects; no connection is kept between probes.
func newProbeClient() *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // Marathon does not verify health or readiness check certificates
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// runProbes calls dispatch every 200 ms until ctx ends, then waits for the
// probes in flight.
func (p *probePool) runProbes(ctx context.Context, dispatch func(context.Context)) {
	defer p.wg.Wait()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		dispatch(ctx)
	}
}
