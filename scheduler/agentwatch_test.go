package scheduler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/master"
)

// The agent poll waits its interval, or twenty times what the last poll
// took when that is longer: a master whose GET_AGENTS takes seconds (every
// agent's resources, 100,000 reservations) is not asked again at once.
func TestAgentPollWaitGrowsWithThePollsCost(t *testing.T) {
	for _, c := range []struct {
		interval, took, want time.Duration
	}{
		{10 * time.Second, 20 * time.Millisecond, 10 * time.Second},
		{10 * time.Second, 500 * time.Millisecond, 10 * time.Second},
		{10 * time.Second, 2 * time.Second, 40 * time.Second},
		{10 * time.Second, 30 * time.Second, 10 * time.Minute}, // a poll that timed out
	} {
		if got := agentPollWait(c.interval, c.took); got != c.want {
			t.Errorf("agentPollWait(%v, %v) = %v, want %v", c.interval, c.took, got, c.want)
		}
	}
}

// An operator response announced over the limit is refused without being
// read, with its size in the error.
func TestOperatorResponseOverTheLimitIsNotRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Header().Set("Content-Length", strconv.Itoa(maxOperatorResponse+1))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte{0x08}) // the rest never comes
	}))
	defer srv.Close()
	op, err := NewOperatorClient(Config{MesosMaster: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = op.Call(ctx, &master.Call{Type: master.Call_GET_AGENTS})
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(maxOperatorResponse+1)+" bytes is over the limit") {
		t.Fatalf("err %v, want the response refused for its size", err)
	}
}
