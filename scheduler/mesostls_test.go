package scheduler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

type funcWriter func([]byte) (int, error)

func (f funcWriter) Write(p []byte) (int, error) { return f(p) }

// An https:// master is reached when MesosTLS trusts its CA
// (--mesos-ca-file), and refused at the handshake when it does not.
func TestDriverMesosTLS(t *testing.T) {
	requests := make(chan struct{}, 16)
	handshakeErrs := make(chan string, 16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests <- struct{}{}
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	}))
	srv.Config.ErrorLog = log.New(funcWriter(func(p []byte) (int, error) {
		if strings.Contains(string(p), "TLS handshake error") {
			select {
			case handshakeErrs <- string(p):
			default:
			}
		}
		return len(p), nil
	}), "", 0)
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	run := func(tc *tls.Config) func() {
		s := New(Config{MesosMaster: srv.URL, MesosTLS: tc, Logger: testLogger(t)}, Deps{
			Store:          func() Store { return newFSMStore(t) },
			Commit:         func(context.Context, *v1.SchedulerPlanCommand) error { return nil },
			SetFrameworkID: func(context.Context, string) error { return nil },
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		return func() { cancel(); <-done }
	}

	stop := run(nil) // the system's CAs do not know the test server's
	select {
	case <-handshakeErrs:
	case <-requests:
		t.Fatal("a master with an unknown CA was trusted")
	case <-time.After(30 * time.Second):
		t.Fatal("no subscription attempt")
	}
	stop()
	select {
	case <-requests:
		t.Fatal("a master with an unknown CA was trusted")
	default:
	}

	stop = run(&tls.Config{RootCAs: pool})
	defer stop()
	select {
	case <-requests:
	case <-time.After(30 * time.Second):
		t.Fatal("the subscription never reached the https master trusted through MesosTLS")
	}
}
