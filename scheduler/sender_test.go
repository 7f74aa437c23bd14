package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/framing"
	"github.com/mesos/mesos-go/api/v1/lib/recordio"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

func ackCall(agent, task string) *scheduler.Call {
	return calls.Acknowledge(agent, task, []byte(task))
}

// A master slow to answer one agent's calls does not hold up another
// agent's: the sender has several calls in flight, and each agent's calls
// still reach the master in the order they were queued.
func TestSenderCallsInFlightKeepPerAgentOrder(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	var mu sync.Mutex
	got := map[string][]string{} // agent → task ids in the order sent
	sent := make(chan string, 1000)
	call := func(_ context.Context, c *scheduler.Call) (mesos.Response, error) {
		a := c.Acknowledge.AgentID.Value
		if a == "slow" {
			<-release
		}
		mu.Lock()
		got[a] = append(got[a], c.Acknowledge.TaskID.Value)
		mu.Unlock()
		sent <- a
		return nil, nil
	}
	s := newSender(ctx, call, "fw", slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() { defer close(done); s.run() }()

	s.enqueue(ackCall("slow", "s0"), ackCall("slow", "s1"))
	// Every other agent's calls go out while the slow agent's first call
	// is still unanswered (those sharing its queue excepted).
	var others []string
	blocked := s.queueFor(ackCall("slow", ""))
	for i := 0; len(others) < 20; i++ {
		a := fmt.Sprintf("A%d", i)
		if s.queueFor(ackCall(a, "")) == blocked {
			continue
		}
		others = append(others, a)
		for k := 0; k < 5; k++ {
			s.enqueue(ackCall(a, fmt.Sprintf("%s-t%d", a, k)))
		}
	}
	deadline := time.After(time.Minute)
	for n := 0; n < 5*len(others); n++ {
		select {
		case a := <-sent:
			if a == "slow" {
				t.Fatal("the slow agent's call was answered before it was released")
			}
		case <-deadline:
			t.Fatalf("only %d of %d calls to other agents sent while one agent's call was in flight", n, 5*len(others))
		}
	}
	close(release)
	for n := 0; n < 2; n++ {
		select {
		case <-sent:
		case <-deadline:
			t.Fatal("the slow agent's calls were not sent once released")
		}
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got["slow"]) != "[s0 s1]" {
		t.Fatalf("slow agent's calls sent as %v, want [s0 s1]", got["slow"])
	}
	for _, a := range others {
		want := fmt.Sprintf("[%[1]s-t0 %[1]s-t1 %[1]s-t2 %[1]s-t3 %[1]s-t4]", a)
		if fmt.Sprint(got[a]) != want {
			t.Fatalf("agent %s's calls sent as %v, want %s", a, got[a], want)
		}
	}
}

// A kill queued after the ACCEPT that launched the task on its agent
// reaches the master after it.
func TestSenderKillAfterLaunchOnOneAgentStaysOrdered(t *testing.T) {
	task := mesos.TaskInfo{TaskID: mesos.TaskID{Value: "t1"}, AgentID: mesos.AgentID{Value: "A1"}}
	accept := calls.Accept(calls.OfferOperations{calls.OpLaunch(task)}.WithOffers(mesos.OfferID{Value: "O1"}))
	kill := calls.Kill("t1", "A1")
	s := newSender(context.Background(), nil, "fw", slog.Default())
	if s.queueFor(accept) != s.queueFor(kill) {
		t.Fatal("the ACCEPT launching on A1 and the KILL on A1 are in different queues")
	}
	if callKey(calls.Accept(calls.OfferOperations{}.WithOffers(mesos.OfferID{Value: "O9"}))) != "O9" {
		t.Fatal("an ACCEPT without a launch is not keyed by its offer")
	}
}

// A failed ACCEPT is followed by a DECLINE of its offers (the master may
// hold them otherwise) and reported once through failedAccept.
func TestSenderFailedAcceptDeclinesItsOffer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := make(chan *scheduler.Call, 10)
	call := func(_ context.Context, c *scheduler.Call) (mesos.Response, error) {
		sent <- c
		if c.Type == scheduler.Call_ACCEPT {
			return nil, errors.New("connection reset")
		}
		return nil, nil
	}
	s := newSender(ctx, call, "fw", slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() { defer close(done); s.run() }()
	s.enqueue(calls.Accept(calls.OfferOperations{}.WithOffers(mesos.OfferID{Value: "O1"})))
	var types []string
	for len(types) < 2 {
		select {
		case c := <-sent:
			types = append(types, c.Type.String())
			if c.Type == scheduler.Call_DECLINE && c.Decline.OfferIDs[0].Value != "O1" {
				t.Fatalf("declined %v, want O1", c.Decline.OfferIDs)
			}
		case <-time.After(time.Minute):
			t.Fatalf("sent %v, want ACCEPT then DECLINE", types)
		}
	}
	if fmt.Sprint(types) != "[ACCEPT DECLINE]" {
		t.Fatalf("sent %v, want [ACCEPT DECLINE]", types)
	}
	if !s.failedAccept() || s.failedAccept() {
		t.Fatal("failedAccept does not report the failed ACCEPT exactly once")
	}
	cancel()
	<-done
}

// The subscription decodes an OFFERS event larger than mesos-go's 4 MiB
// RecordIO frame (an allocation round over agents holding many berths), as
// it decodes a small one; the stock codec fails on it.
func TestSubscriptionDecodesEventsOverFourMiB(t *testing.T) {
	ev := scheduler.Event{Type: scheduler.Event_OFFERS, Offers: &scheduler.Event_Offers{}}
	for i := 0; i < 1000; i++ {
		o := mesos.Offer{ID: mesos.OfferID{Value: fmt.Sprintf("O%d", i)}, FrameworkID: mesos.FrameworkID{Value: "fw"},
			AgentID: mesos.AgentID{Value: fmt.Sprintf("A%d", i)}, Hostname: "host"}
		for k := 0; k < 30; k++ {
			o.Resources = append(o.Resources, mesos.Resource{Name: "disk", Type: mesos.SCALAR.Enum(),
				Scalar: &mesos.Value_Scalar{Value: 1}, Role: strPtr("berth"),
				Reservation: &mesos.Resource_ReservationInfo{Labels: &mesos.Labels{Labels: []mesos.Label{
					{Key: LabelInstanceID, Value: strPtr(fmt.Sprintf("db.instance-%0100d", i*10+k))}}}}})
		}
		ev.Offers.Offers = append(ev.Offers.Offers, o)
	}
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) <= 4<<20 {
		t.Fatalf("test event of %d bytes is not over 4 MiB", len(b))
	}
	stream := append([]byte(fmt.Sprintf("%d\n", len(b))), b...)
	decode := func(c encoding.Codec) (*scheduler.Event, error) {
		var got scheduler.Event
		src := func() framing.Reader { return recordio.NewReader(bytes.NewReader(stream)) }
		return &got, c.NewDecoder(src).Decode(&got)
	}
	proto := codecs.ByMediaType[codecs.MediaTypeProtobuf]
	if _, err := decode(proto); err == nil {
		t.Fatal("the stock codec decoded a frame over 4 MiB; this test no longer shows the limit")
	}
	got, err := decode(largeFrames(proto, maxEventBytes))
	if err != nil {
		t.Fatalf("decode a %d-byte event: %v", len(b), err)
	}
	if n := len(got.GetOffers().GetOffers()); n != 1000 {
		t.Fatalf("decoded %d offers, want 1000", n)
	}
}
