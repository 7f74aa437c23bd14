package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Protocols of API requests, the values of the protocol label.
const (
	ProtocolConnect = "connect"
	ProtocolGRPC    = "grpc"
	ProtocolGRPCWeb = "grpcweb"
	ProtocolREST    = "rest"
	ProtocolHTTP    = "http"
)

// API measures the API: every request by method, protocol and result
// code, their latency, and the writes a follower forwarded to the leader.
// A nil *API measures nothing.
type API struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	forwarded *prometheus.CounterVec
}

func newAPI() *API {
	return &API{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_api_requests_total",
			Help: "API requests handled, by method, protocol and result code (ok, or the Connect code / HTTP status of the error).",
		}, []string{"method", "protocol", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_api_request_duration_seconds",
			Help:    "Latency of API requests, by method and protocol.",
			Buckets: latencyBuckets,
		}, []string{"method", "protocol"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_api_forwarded_writes_total",
			Help: "Requests this server forwarded to the leader, by method.",
		}, []string{"method"}),
	}
}

func (a *API) register(reg prometheus.Registerer) {
	reg.MustRegister(a.requests, a.duration, a.forwarded)
}

// Observe records one finished request. code is "ok" or the error's code.
func (a *API) Observe(method, protocol, code string, d time.Duration) {
	if a == nil {
		return
	}
	a.requests.WithLabelValues(method, protocol, code).Inc()
	a.duration.WithLabelValues(method, protocol).Observe(d.Seconds())
}

// Forwarded records one request forwarded to the leader.
func (a *API) Forwarded(method string) {
	if a == nil {
		return
	}
	a.forwarded.WithLabelValues(method).Inc()
}

// Middleware measures the plain HTTP routes of a ServeMux (Marathon REST,
// /v1/health, ...): the method label is the route pattern that matched
// (bounded), "unmatched" when none did; the code is "ok" below 400, else
// the HTTP status. next is typically the mux itself.
func (a *API) Middleware(protocol string, next http.Handler) http.Handler {
	if a == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		method := r.Pattern
		if method == "" {
			method = "unmatched"
		}
		code := "ok"
		if sw.status >= 400 {
			code = strconv.Itoa(sw.status)
		}
		a.Observe(method, protocol, code, time.Since(start))
	})
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer
// (flushing, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes a flush on (Server-Sent Events stream through here).
func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }
