package cluster

import (
	"context"
	"errors"
	"sync"
)

// LeadershipEvent is one leadership transition of this server.
type LeadershipEvent struct {
	// Leader is true when this server became leader, false when it stopped
	// being leader (stepped down, lost quorum, or shut down).
	Leader bool
	// Term is the Raft term in which the transition was observed.
	Term uint64
}

// ErrWatchClosed is returned by LeadershipWatch.Next after Close.
var ErrWatchClosed = errors.New("leadership watch closed")

// LeadershipWatch delivers every leadership transition of the node, in
// order, without loss: gained and lost alternate, starting with the
// current state if this server is leader when the watch is created. The
// queue is unbounded, so a slow consumer never blocks Raft. After the node
// shuts down, a final "lost" event is delivered (if it was leader) and then
// Next returns ErrShutdown.
type LeadershipWatch struct {
	broker *leaderBroker
	mu     sync.Mutex
	queue  []LeadershipEvent
	signal chan struct{} // capacity 1: "queue changed"
	ended  bool          // node shut down
	closed bool          // Close called
}

// Next returns the next transition, waiting for one. It fails with
// ctx.Err(), ErrShutdown once the node is shut down and every event was
// delivered, or ErrWatchClosed after Close.
func (w *LeadershipWatch) Next(ctx context.Context) (LeadershipEvent, error) {
	for {
		w.mu.Lock()
		switch {
		case w.closed:
			w.mu.Unlock()
			return LeadershipEvent{}, ErrWatchClosed
		case len(w.queue) > 0:
			ev := w.queue[0]
			w.queue = w.queue[1:]
			w.mu.Unlock()
			return ev, nil
		case w.ended:
			w.mu.Unlock()
			return LeadershipEvent{}, ErrShutdown
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return LeadershipEvent{}, ctx.Err()
		case <-w.signal:
		}
	}
}

// Close unsubscribes the watch. Pending and future events are discarded.
func (w *LeadershipWatch) Close() {
	w.broker.unsubscribe(w)
	w.mu.Lock()
	w.closed = true
	w.queue = nil
	w.mu.Unlock()
	w.poke()
}

func (w *LeadershipWatch) push(ev LeadershipEvent) {
	w.mu.Lock()
	if !w.closed {
		w.queue = append(w.queue, ev)
	}
	w.mu.Unlock()
	w.poke()
}

func (w *LeadershipWatch) end() {
	w.mu.Lock()
	w.ended = true
	w.mu.Unlock()
	w.poke()
}

func (w *LeadershipWatch) poke() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// leaderBroker tracks this server's leadership and fans transitions out to
// watches. Duplicate notifications are suppressed so that watchers see a
// strict alternation of gained and lost.
type leaderBroker struct {
	mu     sync.Mutex
	leader bool
	term   uint64
	subs   map[*LeadershipWatch]struct{}
	ended  bool
}

func newLeaderBroker() *leaderBroker {
	return &leaderBroker{subs: make(map[*LeadershipWatch]struct{})}
}

func (b *leaderBroker) subscribe() *LeadershipWatch {
	w := &LeadershipWatch{broker: b, signal: make(chan struct{}, 1)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		w.ended = true
		return w
	}
	if b.leader {
		w.queue = append(w.queue, LeadershipEvent{Leader: true, Term: b.term})
	}
	b.subs[w] = struct{}{}
	return w
}

func (b *leaderBroker) unsubscribe(w *LeadershipWatch) {
	b.mu.Lock()
	delete(b.subs, w)
	b.mu.Unlock()
}

// publish records a transition; it returns false if it was a duplicate.
func (b *leaderBroker) publish(leader bool, term uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended || leader == b.leader {
		return false
	}
	b.leader, b.term = leader, term
	ev := LeadershipEvent{Leader: leader, Term: term}
	for w := range b.subs {
		w.push(ev)
	}
	return true
}

// isLeader reports the last published state.
func (b *leaderBroker) isLeader() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.leader
}

// end delivers a final "lost" if needed and ends every watch.
func (b *leaderBroker) end(term uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return
	}
	if b.leader {
		b.leader = false
		for w := range b.subs {
			w.push(LeadershipEvent{Leader: false, Term: term})
		}
	}
	b.ended = true
	for w := range b.subs {
		w.end()
	}
	b.subs = map[*LeadershipWatch]struct{}{}
}
