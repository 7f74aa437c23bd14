package scheduler

import (
	"context"
	"reflect"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// testEvent is an event named for the test: its kind and a label (the
// offer id, or the task id of an update).
func testEvent(t scheduler.Event_Type, label string) *scheduler.Event {
	e := &scheduler.Event{Type: t}
	switch t {
	case scheduler.Event_OFFERS:
		e.Offers = &scheduler.Event_Offers{Offers: []mesos.Offer{{ID: mesos.OfferID{Value: label}}}}
	case scheduler.Event_UPDATE:
		e.Update = &scheduler.Event_Update{Status: mesos.TaskStatus{TaskID: mesos.TaskID{Value: label}}}
	case scheduler.Event_RESCIND:
		e.Rescind = &scheduler.Event_Rescind{OfferID: mesos.OfferID{Value: label}}
	}
	return e
}

func eventLabel(e *scheduler.Event) string {
	switch e.GetType() {
	case scheduler.Event_OFFERS:
		return "O:" + e.GetOffers().GetOffers()[0].ID.Value
	case scheduler.Event_UPDATE:
		return "U:" + e.GetUpdate().GetStatus().TaskID.Value
	case scheduler.Event_RESCIND:
		return "R:" + e.GetRescind().GetOfferID().Value
	}
	return e.GetType().String()
}

// queueOrder pushes events into q, then returns the order q hands them on.
func queueOrder(q *eventQueue, events ...*scheduler.Event) []string {
	for _, e := range events {
		q.push(e)
	}
	var got []string
	for q.len() > 0 {
		got = append(got, eventLabel(q.peek()))
		q.pop()
	}
	return got
}

// Offers queued behind status updates are handed on first (the instances
// waiting for them are placed while the updates wait); they never overtake
// any other event (a RESCIND of an offer stays after it) nor each other.
func TestOffersOvertakeQueuedUpdatesOnly(t *testing.T) {
	var q eventQueue
	got := queueOrder(&q,
		testEvent(scheduler.Event_UPDATE, "t1"),
		testEvent(scheduler.Event_HEARTBEAT, ""),
		testEvent(scheduler.Event_UPDATE, "t2"),
		testEvent(scheduler.Event_OFFERS, "o1"),
		testEvent(scheduler.Event_UPDATE, "t3"),
		testEvent(scheduler.Event_OFFERS, "o2"),
		testEvent(scheduler.Event_RESCIND, "o2"),
		testEvent(scheduler.Event_UPDATE, "t4"),
		testEvent(scheduler.Event_OFFERS, "o3"),
	)
	want := []string{"O:o1", "O:o2", "U:t1", "HEARTBEAT", "U:t2", "U:t3", "R:o2", "U:t4", "O:o3"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if q.barriers != 0 || q.peek() != nil {
		t.Fatalf("empty queue: %d barriers, peek %v", q.barriers, q.peek())
	}

	// Below the backlog that makes offers overtake, the order is kept.
	q = eventQueue{minBacklog: 2}
	got = queueOrder(&q,
		testEvent(scheduler.Event_UPDATE, "t1"),
		testEvent(scheduler.Event_OFFERS, "o1"),
		testEvent(scheduler.Event_UPDATE, "t2"),
		testEvent(scheduler.Event_UPDATE, "t3"),
		testEvent(scheduler.Event_OFFERS, "o2"),
	)
	if want := []string{"U:t1", "O:o1", "U:t2", "U:t3", "O:o2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order below the backlog %v, want %v", got, want)
	}
}

// offersFirst hands on every event (nothing lost, nothing repeated) and
// reads ahead at most max events while nobody takes them.
func TestOffersFirstReadsAheadAtMostMax(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := make(chan *scheduler.Event)
	out := make(chan *scheduler.Event)
	done := make(chan struct{})
	go func() { defer close(done); offersFirst(ctx, in, out, 3) }()
	for i := range 3 {
		in <- testEvent(scheduler.Event_UPDATE, string(rune('a'+i)))
	}
	select {
	case in <- testEvent(scheduler.Event_OFFERS, "o"):
		t.Fatal("a fourth event was read ahead with 3 queued and none taken")
	case <-time.After(100 * time.Millisecond):
	}
	var got []string
	for range 3 {
		got = append(got, eventLabel(<-out))
	}
	if want := []string{"U:a", "U:b", "U:c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("handed on %v, want %v", got, want)
	}
	cancel()
	<-done
}
