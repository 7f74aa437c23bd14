package scheduler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The driver authenticates with HTTP basic auth when a secret is set,
// retries a refused subscription, and returns nil as soon as its context
// ends.
func TestDriverAuthRetryAndStop(t *testing.T) {
	auths := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auths <- r.Header.Get("Authorization")
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	}))
	defer srv.Close()
	s := New(Config{MesosMaster: srv.URL, Principal: "berth", Secret: "s3cret", Logger: testLogger(t)}, Deps{
		Store:          func() Store { return newFSMStore(t) },
		Commit:         func(context.Context, *v1.SchedulerPlanCommand) error { return nil },
		SetFrameworkID: func(context.Context, string) error { return nil },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for i := 0; i < 2; i++ {
		select {
		case a := <-auths:
			if !strings.HasPrefix(a, "Basic ") {
				t.Fatalf("Authorization %q", a)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("subscription attempt %d not made", i+1)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "MesosMaster is required"},
		{Config{MesosMaster: "127.0.0.1:5050"}, "want http(s)://host:port"},
		{Config{MesosMaster: "http://m:5050", Role: "*"}, `Role "*"`},
		{Config{MesosMaster: "http://m:5050", RefuseSeconds: -time.Second}, "RefuseSeconds"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	if err := (Config{MesosMaster: "http://m:5050"}).Validate(); err != nil {
		t.Fatal(err)
	}
}
