package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os/user"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpsched"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Store is the replicated state the driver reads. (The server wires
// *fsm.Store in through a one-line adapter: the scheduler never imports
// fsm.)
type Store interface {
	// Snapshot returns a view of the store at one moment.
	Snapshot() StateReader
	// Watch returns a channel closed at the next change to the store.
	Watch() <-chan struct{}
}

// Deps are the scheduler's connections to the rest of the server.
type Deps struct {
	// Store returns the current state store (it may be swapped on a
	// snapshot restore, hence a func).
	Store func() Store
	// Commit commits a plan through Raft and returns once it is applied
	// locally. An error means "not committed": nothing is sent.
	Commit func(ctx context.Context, plan *v1.SchedulerPlanCommand) error
	// SetFrameworkID commits the framework id through Raft.
	SetFrameworkID func(ctx context.Context, id string) error
	// Publish hands an event to the event stream (must not block long).
	Publish func(*v1.Event)
	// Observer is told what the driver does (metrics); nil: nothing is.
	Observer Observer
	// Live receives, while subscribed, why instances wait and the results
	// of the checks the leader runs, for the API; nil: nobody reads them.
	Live *Live
}

// ErrFrameworkRemoved is returned by Run when Mesos reports that the
// framework was removed: a new framework id would orphan every berth, so
// the scheduler stops and an operator must decide.
var ErrFrameworkRemoved = errors.New("scheduler: Mesos reports the framework has been removed")

// Scheduler is the Mesos framework driver: it subscribes, feeds events,
// ticks and health results to the pure core, commits each plan, then sends
// the calls. It runs on the Raft leader only.
type Scheduler struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	mem  *Memory
}

// New returns a scheduler; Run starts it.
func New(cfg Config, deps Deps) *Scheduler {
	cfg = cfg.withDefaults()
	return &Scheduler{cfg: cfg, deps: deps, log: cfg.Logger.With("component", "scheduler"), mem: NewMemory()}
}

// Run subscribes to the master and schedules until ctx is cancelled (then
// it returns nil at once, having closed its subscription and sent nothing
// more). The subscription is retried with backoff when it breaks. It
// returns ErrFrameworkRemoved, or a configuration error, otherwise.
func (s *Scheduler) Run(ctx context.Context) error {
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	if s.deps.Store == nil || s.deps.Commit == nil || s.deps.SetFrameworkID == nil {
		return errors.New("scheduler: Deps.Store, Deps.Commit and Deps.SetFrameworkID are required")
	}
	backoff := 250 * time.Millisecond
	for {
		started := time.Now()
		err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrFrameworkRemoved) || errors.Is(err, ErrNoFrameworkID) {
			s.log.Error("scheduler stopped", "err", err)
			return err
		}
		if time.Since(started) > time.Minute {
			backoff = 250 * time.Millisecond
		}
		s.log.Warn("mesos subscription ended; resubscribing", "err", err, "in", backoff)
		if o := s.deps.Observer; o != nil {
			o.Resubscribing()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff *= 2
		if backoff > s.cfg.SubscribeBackoffMax {
			backoff = s.cfg.SubscribeBackoffMax
		}
	}
}

// ErrNoFrameworkID is returned by Run when no framework id is stored but
// instances hold berths: registering a new framework would orphan them, so
// the scheduler stops and an operator must decide.
var ErrNoFrameworkID = errors.New("scheduler: no framework id stored but instances hold berths; refusing to register a new framework")

func (s *Scheduler) frameworkInfo(fid string) *mesos.FrameworkInfo {
	u := s.cfg.User
	if u == "" {
		if cu, err := user.Current(); err == nil && cu.Username != "" {
			u = cu.Username
		} else {
			u = "root"
		}
	}
	secs := s.cfg.FailoverTimeout.Seconds()
	info := &mesos.FrameworkInfo{
		User:            u,
		Name:            s.cfg.FrameworkName,
		Role:            strPtr(s.cfg.Role),
		Principal:       strPtr(s.cfg.Principal),
		FailoverTimeout: &secs,
		Checkpoint:      boolPtr(true),
		Capabilities: []mesos.FrameworkInfo_Capability{
			{Type: mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT},
			{Type: mesos.FrameworkInfo_Capability_PARTITION_AWARE},
			{Type: mesos.FrameworkInfo_Capability_TASK_KILLING_STATE},
		},
	}
	if s.cfg.Hostname != "" {
		info.Hostname = strPtr(s.cfg.Hostname)
	}
	if fid != "" {
		info.ID = &mesos.FrameworkID{Value: fid}
	}
	return info
}

// session runs one subscription until it breaks or ctx ends. A panic in a
// decision ends the session (it is logged with its stack and retried after
// backoff) rather than the whole server.
func (s *Scheduler) session(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("scheduler panic; ending the subscription", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("scheduler panic: %v", r)
		}
	}()
	return s.subscribe(ctx)
}

func (s *Scheduler) subscribe(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	view := s.deps.Store().Snapshot()
	fid, err := view.FrameworkID()
	if err != nil {
		return fmt.Errorf("read framework id: %w", err)
	}
	if fid == "" {
		insts, err := view.Instances()
		if err != nil {
			return fmt.Errorf("read instances: %w", err)
		}
		for _, i := range insts {
			if hasBerth(i) || taskLive(i.GetTask()) {
				return ErrNoFrameworkID
			}
		}
	}
	endpoint := strings.TrimRight(s.cfg.MesosMaster, "/") + "/api/v1/scheduler"
	opts := []httpcli.Opt{
		httpcli.Endpoint(endpoint),
		httpcli.Codec(largeFrames(codecs.ByMediaType[codecs.MediaTypeProtobuf], maxEventBytes)),
	}
	cfgOpts := append([]httpcli.ConfigOpt(nil), httpcli.DefaultConfigOpt...)
	if s.cfg.Secret != "" {
		cfgOpts = append(cfgOpts, httpcli.BasicAuth(s.cfg.Principal, s.cfg.Secret))
	}
	if s.cfg.MesosTLS != nil {
		cfgOpts = append(cfgOpts, httpcli.TLSConfig(s.cfg.MesosTLS))
	}
	// Keep a connection per call in flight (and the subscription's) open.
	cfgOpts = append(cfgOpts, httpcli.Transport(func(t *http.Transport) { t.MaxIdleConnsPerHost = senderWorkers + 2 }))
	var subInfo subscription
	opts = append(opts, httpcli.Do(httpcli.With(append(cfgOpts, httpcli.WrapRoundTripper(subInfo.observe))...)))
	cli := httpcli.New(opts...)
	caller := httpsched.NewCaller(cli)
	sub := calls.Subscribe(s.frameworkInfo(fid))
	if fid != "" {
		sub = sub.With(calls.SubscribeTo(fid))
	}
	resp, err := caller.Call(sctx, sub)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", endpoint, err)
	}
	if resp == nil {
		return fmt.Errorf("subscribe to %s: empty response", endpoint)
	}
	// Closing the response ends the decoder goroutine; it is closed before
	// the goroutine is waited for.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() { _ = resp.Close() }()
	defer cancel()

	// Buffered so that events keep being read while a decision commits:
	// status updates queued meanwhile are then decided together.
	decoded := make(chan *scheduler.Event, maxStatusBatch)
	events := make(chan *scheduler.Event, maxStatusBatch)
	// decodeErr is sent once every event decoded before the error is in
	// events.
	decodeErr := make(chan error, 1)
	var streamErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(decoded)
		for {
			var e scheduler.Event
			if err := resp.Decode(&e); err != nil {
				streamErr = err
				return
			}
			select {
			case decoded <- &e:
			case <-sctx.Done():
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		if offersFirst(sctx, decoded, events, maxReadAhead) {
			decodeErr <- streamErr
		}
	}()

	// The first event must be SUBSCRIBED (or ERROR).
	var first *scheduler.Event
	select {
	case <-sctx.Done():
		return sctx.Err()
	case err := <-decodeErr:
		select {
		case first = <-events: // decoded before the error
		default:
			return fmt.Errorf("read subscription: %w", err)
		}
	case first = <-events:
	case <-time.After(30 * time.Second):
		return errors.New("no SUBSCRIBED event within 30s")
	}
	switch first.GetType() {
	case scheduler.Event_ERROR:
		return s.errorEvent(first.GetError().GetMessage())
	case scheduler.Event_SUBSCRIBED:
	default:
		return fmt.Errorf("first event is %s, not SUBSCRIBED", first.GetType())
	}
	newID := first.GetSubscribed().GetFrameworkID().GetValue()
	if newID == "" {
		return errors.New("SUBSCRIBED without a framework id")
	}
	if fid == "" {
		// Committed before anything else is done with the subscription.
		if err := s.deps.SetFrameworkID(sctx, newID); err != nil {
			return fmt.Errorf("commit framework id %s: %w", newID, err)
		}
		s.log.Info("registered new framework", "framework_id", newID)
		fid = newID
	} else if newID != fid {
		return fmt.Errorf("master answered framework id %s for stored id %s", newID, fid)
	}
	heartbeat := 15 * time.Second
	if hb := first.GetSubscribed().GetHeartbeatIntervalSeconds(); hb > 0 {
		heartbeat = time.Duration(hb * float64(time.Second))
	}
	s.log.Info("subscribed to mesos", "master", s.cfg.MesosMaster, "framework_id", fid, "heartbeat", heartbeat)
	if o := s.deps.Observer; o != nil {
		o.Subscribed(true)
		defer o.Subscribed(false)
	}

	s.mem = NewMemory()
	hc := newHealthChecker(s.cfg.HealthCheckConcurrency)
	wg.Add(1)
	go func() { defer wg.Done(); hc.run(sctx) }()
	rc := newReadinessChecker(s.cfg.HealthCheckConcurrency)
	wg.Add(1)
	go func() { defer wg.Done(); rc.run(sctx) }()
	s.deps.Live.start(hc, rc)
	defer s.deps.Live.stop()

	send, err := callsClient(&subInfo, cfgOpts, httpcli.Codec(codecs.ByMediaType[codecs.MediaTypeProtobuf]))
	if err != nil {
		return err
	}
	out := newSender(sctx, send, fid, s.log)
	wg.Add(1)
	go func() { defer wg.Done(); out.run() }()

	agentStates := make(chan AgentStates)
	reconciled := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); s.watchAgents(sctx, agentStates, reconciled) }()

	copies := s.nestedCopier(sctx)
	defer copies.wait()
	l := &loop{s: s, ctx: sctx, out: out, health: hc, readiness: rc, copies: copies, beside: commitBeside, reconciled: reconciled}
	// A plan still committing when the session ends is waited for (its
	// Commit returns once sctx is cancelled): nothing outlives the session.
	defer l.abandon(cancel)
	l.apply(Subscribed{FrameworkID: fid})
	l.snaps.full()
	l.apply(Tick{})

	silence := 5 * heartbeat
	watchdog := time.NewTimer(silence)
	defer watchdog.Stop()
	ticker := time.NewTicker(s.cfg.TickInterval)
	defer ticker.Stop()
	watch := s.deps.Store().Watch()
	var coalesce <-chan time.Time
	for {
		select {
		case <-sctx.Done():
			return sctx.Err()
		case err := <-decodeErr:
			// The events decoded before the error first (an ERROR event
			// the master sent before closing the stream says why).
			for len(events) > 0 {
				if err := l.events(<-events, events); err != nil {
					return err
				}
			}
			return fmt.Errorf("subscription stream: %w", err)
		case <-watchdog.C:
			return fmt.Errorf("no event from the master for %s", silence)
		case e := <-events:
			if !watchdog.Stop() {
				select {
				case <-watchdog.C:
				default:
				}
			}
			watchdog.Reset(silence)
			if err := l.events(e, events); err != nil {
				return err
			}
		case <-ticker.C:
			// The periodic pass decides on a fresh read of the store, not
			// on the cached snapshot: whatever a change notification or
			// the own-commit patch may miss, every TickInterval the
			// level-triggered pass sees the store as it is (a scale-down
			// must never wait for an unrelated write). onTick walks every
			// instance anyway, so this adds a constant factor to it. It
			// stays as insurance: in one nemesis run (issue 11) a decision
			// re-started an instance that the scale-down just before it had
			// stopped, as if on a view older than the write, and the cause
			// was not found (BENCHMARKS.md, "the fault suite"); with this,
			// any such view lasts one TickInterval at most (fullPassGap
			// when the pass is slow).
			if time.Since(l.fullAt) < fullPassGap(s.cfg.TickInterval, l.fullTook) {
				continue
			}
			l.fullAt = time.Now()
			l.snaps.full()
			l.submit(Tick{})
		case <-watch:
			// Coalesce bursts of commits (our own included) into one pass.
			watch = nil
			if coalesce == nil {
				coalesce = time.After(25 * time.Millisecond)
			}
		case <-coalesce:
			// A pass over what the commits changed (changes.go).
			coalesce = nil
			watch = s.deps.Store().Watch()
			if tick, ok := l.changesTick(); ok {
				l.submit(tick)
			}
		case r := <-hc.results:
			l.submit(r)
		case r := <-rc.results:
			l.submit(r)
		case st := <-agentStates:
			l.submit(st)
		case r := <-copies.resultsChan():
			l.submit(r)
		case <-l.committing():
			l.flush()
		}
		if l.fatal != nil {
			return l.fatal
		}
	}
}

// fullPassGap is the least time from the start of a full pass that took
// took to the next: TickInterval, or ten times the pass when that is
// longer, up to ten TickIntervals. With 100,000 instances on a loaded
// machine a full pass takes most of a second; one a second would leave the
// loop little time for anything else. Changes are passed over at once by
// the scoped passes, so a longer gap delays only the time-based rules
// (staging timeout, pending reservations, backoff, kill retries), which
// count in seconds or minutes.
func fullPassGap(interval, took time.Duration) time.Duration {
	return max(interval, min(10*took, 10*interval))
}

// changesTick returns the pass over what changed since the last pass: a
// scoped one, or the full one when a change could not be named; ok false
// when nothing changed that a pass has not seen.
func (l *loop) changesTick() (tick Tick, ok bool) {
	// Read the store first: a write the driver did not make is named by
	// comparing the fresh read with the one before.
	if _, err := l.snaps.get(l.s.deps.Store(), l.s.mem); err != nil {
		l.snaps.full()
		return Tick{}, true
	}
	ch, known := l.snaps.take()
	switch {
	case !known:
		l.snaps.full()
		return Tick{}, true
	case ch.Empty():
		return Tick{}, false
	}
	return Tick{Changes: ch}, true
}

func (s *Scheduler) errorEvent(msg string) error {
	if strings.Contains(msg, "Framework has been removed") {
		return fmt.Errorf("%w: %s", ErrFrameworkRemoved, msg)
	}
	return fmt.Errorf("master error: %s", msg)
}

// loop is one subscription's event loop state.
type loop struct {
	s         *Scheduler
	ctx       context.Context
	out       *sender
	health    *healthChecker
	readiness *readinessChecker
	copies    *nestedCopier
	snaps     snapshots
	fatal     error
	// inflight are the decisions whose plans are being committed, oldest
	// first (pipeline.go).
	inflight []*decided
	// beside: see commitBeside.
	beside bool
	// fullAt is when the last full pass the ticker asked for started;
	// fullTook is how long the last full pass took to decide (fullPassGap).
	fullAt   time.Time
	fullTook time.Duration
	// reconciled is closed once the reconciliation sent on subscribe has
	// ended (complete or not): the agent poll waits for it (watchAgents).
	reconciled chan struct{}
}

// maxStatusBatch bounds the status updates decided (and committed) together.
const maxStatusBatch = 512

// maxReadAhead bounds the events read from the subscription ahead of the
// decisions (offersFirst).
const maxReadAhead = 1 << 16

// offersFirst passes the events of in to out in order, except that an
// OFFERS event overtakes the UPDATEs (and HEARTBEATs) queued before it
// when there are offersFirstBacklog of them or more, never any other
// event; up to max events are read ahead of out. The
// master sends offers and status updates on one stream: with 100,000
// tasks starting, an allocation round's offers (one per agent) sat behind
// minutes of updates, held by the master as outstanding while instances
// waited for them. Deciding an offer before updates that came earlier is
// safe: the scheduler then knows less than the offer reflects (a task it
// still thinks live has ended), never more, so it can only decline what
// it could have used, which the next offer brings back.
//
// It returns true once in is closed and every event was handed on, false
// when ctx ends first.
func offersFirst(ctx context.Context, in <-chan *scheduler.Event, out chan<- *scheduler.Event, max int) bool {
	q := eventQueue{minBacklog: offersFirstBacklog}
	for {
		recv := in
		if q.len() >= max {
			recv = nil
		}
		var send chan<- *scheduler.Event
		if q.len() > 0 {
			send = out
		} else if in == nil {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case e, ok := <-recv:
			if !ok {
				in = nil
				continue
			}
			q.push(e)
		case send <- q.peek():
			q.pop()
		}
	}
}

// offersFirstBacklog is how many updates must be queued before an OFFERS
// event overtakes them: below it (the leader keeping up) events keep the
// master's order exactly, and an offer never comes before the update
// that freed what it holds.
const offersFirstBacklog = 2 * maxStatusBatch

// eventQueue orders events for offersFirst: an OFFERS event that only
// UPDATEs and HEARTBEATs precede goes to prio, handed on before the rest.
type eventQueue struct {
	prio, rest []*scheduler.Event
	barriers   int // events in rest that are neither UPDATE nor HEARTBEAT
	minBacklog int // events in rest before an OFFERS may overtake them
}

func (q *eventQueue) len() int { return len(q.prio) + len(q.rest) }

func (q *eventQueue) push(e *scheduler.Event) {
	switch t := e.GetType(); {
	case t == scheduler.Event_OFFERS && q.barriers == 0 && len(q.rest) >= q.minBacklog:
		q.prio = append(q.prio, e)
	case t == scheduler.Event_UPDATE || t == scheduler.Event_HEARTBEAT:
		q.rest = append(q.rest, e)
	default:
		q.rest = append(q.rest, e)
		q.barriers++
	}
}

// peek is the next event to hand on (nil if none).
func (q *eventQueue) peek() *scheduler.Event {
	switch {
	case len(q.prio) > 0:
		return q.prio[0]
	case len(q.rest) > 0:
		return q.rest[0]
	}
	return nil
}

func (q *eventQueue) pop() {
	if len(q.prio) > 0 {
		q.prio[0] = nil
		q.prio = q.prio[1:]
		return
	}
	if t := q.rest[0].GetType(); t != scheduler.Event_UPDATE && t != scheduler.Event_HEARTBEAT {
		q.barriers--
	}
	q.rest[0] = nil
	q.rest = q.rest[1:]
}

// events handles e and, when it is an UPDATE, the UPDATEs already queued
// behind it (without waiting for more: a lone update is not delayed), as
// one decision. The first other event queued (HEARTBEATs aside, which
// carry nothing) ends the batch and is handled right after it, so events
// keep their order.
func (l *loop) events(e *scheduler.Event, queued <-chan *scheduler.Event) error {
	if e.GetType() != scheduler.Event_UPDATE {
		return l.event(e)
	}
	statuses, next := drainUpdates(e, queued, maxStatusBatch)
	if len(statuses) == 1 {
		l.submit(StatusUpdate{Status: statuses[0]})
	} else {
		l.submit(StatusUpdates{Statuses: statuses})
	}
	if next == nil {
		return nil
	}
	return l.event(next)
}

// drainUpdates returns the status of first (an UPDATE) followed by those
// of the UPDATEs already in queued, at most max in all, and the first
// other event taken from queued (nil if none). HEARTBEATs are skipped.
func drainUpdates(first *scheduler.Event, queued <-chan *scheduler.Event, max int) ([]mesos.TaskStatus, *scheduler.Event) {
	statuses := []mesos.TaskStatus{first.GetUpdate().GetStatus()}
	for len(statuses) < max {
		select {
		case e := <-queued:
			switch e.GetType() {
			case scheduler.Event_UPDATE:
				statuses = append(statuses, e.GetUpdate().GetStatus())
			case scheduler.Event_HEARTBEAT:
			default:
				return statuses, e
			}
		default:
			return statuses, nil
		}
	}
	return statuses, nil
}

func (l *loop) event(e *scheduler.Event) error {
	switch e.GetType() {
	case scheduler.Event_OFFERS:
		l.submit(Offers{Offers: e.GetOffers().GetOffers()})
	case scheduler.Event_UPDATE:
		l.submit(StatusUpdate{Status: e.GetUpdate().GetStatus()})
	case scheduler.Event_ERROR:
		return l.s.errorEvent(e.GetError().GetMessage())
	case scheduler.Event_FAILURE:
		f := e.GetFailure()
		l.s.log.Warn("mesos failure event", "agent_id", f.GetAgentID().GetValue(), "executor_id", f.GetExecutorID().GetValue(), "status", f.GetStatus())
	case scheduler.Event_INVERSE_OFFERS:
		l.submit(InverseOffers{Offers: e.GetInverseOffers().GetInverseOffers()})
	case scheduler.Event_RESCIND, scheduler.Event_RESCIND_INVERSE_OFFER, scheduler.Event_HEARTBEAT, scheduler.Event_SUBSCRIBED:
	default:
		l.s.log.Debug("ignored mesos event", "type", e.GetType().String())
	}
	return nil
}

// declineAccepts declines the offers of the ACCEPTs of plan parts that
// were not committed (those of the parts before were accepted).
func (l *loop) declineAccepts(parts []planPart) {
	var ids []mesos.OfferID
	for _, p := range parts {
		for _, c := range p.calls {
			if c.Type == scheduler.Call_ACCEPT {
				ids = append(ids, c.Accept.OfferIDs...)
			}
		}
	}
	if len(ids) > 0 && l.ctx.Err() == nil {
		l.out.enqueue(calls.Decline(ids...).With(calls.RefuseSeconds(time.Second)))
	}
}

// declineOffers declines the offers of an input that was not acted on, so
// that they are not held.
func (l *loop) declineOffers(in Input) {
	o, ok := in.(Offers)
	if !ok || l.ctx.Err() != nil {
		return
	}
	ids := make([]mesos.OfferID, 0, len(o.Offers))
	for i := range o.Offers {
		ids = append(ids, o.Offers[i].ID)
	}
	l.out.enqueue(calls.Decline(ids...).With(calls.RefuseSeconds(time.Second)))
	if obs := l.s.deps.Observer; obs != nil {
		obs.Offers(len(ids), len(ids), 0)
	}
}
