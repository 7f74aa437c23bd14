package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/acl"
	"github.com/berth-dev/berth/fsm"
	"github.com/berth-dev/berth/metrics"
)

// Observability: the API's metrics interceptor, and the plain HTTP routes
// beside the Connect services (GET /metrics, /v1/health, /v1/ready and
// /v1/debug/...). When ACLs are on, /metrics and /v1/debug/ need the
// operator permission, like the operator RPCs.

// callStats is put in a request's context by the metrics interceptor; the
// handler marks in it what the interceptor cannot see.
type callStats struct{ forwarded bool }

type callStatsKey struct{}

// markForwarded records that the request was forwarded to the leader.
func markForwarded(ctx context.Context) {
	if cs, ok := ctx.Value(callStatsKey{}).(*callStats); ok {
		cs.forwarded = true
	}
}

// metricsInterceptor counts and times every Connect, gRPC and gRPC-Web
// call by procedure and protocol, and counts forwarded writes.
type metricsInterceptor struct{ api *metrics.API }

func (m metricsInterceptor) observe(ctx context.Context, spec connect.Spec, protocol string, start time.Time, err error) {
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	m.api.Observe(spec.Procedure, protocol, code, time.Since(start))
	if cs, ok := ctx.Value(callStatsKey{}).(*callStats); ok && cs.forwarded {
		m.api.Forwarded(spec.Procedure)
	}
}

func (m metricsInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		ctx = context.WithValue(ctx, callStatsKey{}, &callStats{})
		res, err := next(ctx, req)
		m.observe(ctx, req.Spec(), req.Peer().Protocol, start, err)
		return res, err
	}
}

func (m metricsInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (m metricsInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		ctx = context.WithValue(ctx, callStatsKey{}, &callStats{})
		err := next(ctx, conn)
		m.observe(ctx, conn.Spec(), conn.Peer().Protocol, start, err)
		return err
	}
}

// requestIDOf returns the request id a request message carries, if any
// (every write's message has a request_id field).
func requestIDOf(msg any) string {
	if r, ok := msg.(interface{ GetRequestId() string }); ok {
		return r.GetRequestId()
	}
	return ""
}

// plainRoutes returns the handler of the plain HTTP routes: health and
// readiness always; /metrics and /v1/debug/ when Config.Metrics is set.
func (s *Server) plainRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"alive": true})
	})
	mux.HandleFunc("GET /v1/ready", func(w http.ResponseWriter, _ *http.Request) {
		if reason := s.notReady(); reason != "" {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": reason})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ready": true})
	})
	mux.Handle(acl.RouteBinary, s.guard(acl.RouteBinary, http.HandlerFunc(s.serveBinary)))
	if reg := s.cfg.Metrics; reg != nil {
		mux.Handle("GET /metrics", s.guard(acl.RouteMetrics, reg.Handler()))
		mux.Handle("GET /v1/debug/pprof/{profile}", s.guard(acl.RouteDebug, http.HandlerFunc(s.servePprof)))
		mux.Handle("GET /v1/debug/logs", s.guard(acl.RouteDebug, http.HandlerFunc(s.serveLogs)))
		mux.Handle("GET /v1/debug/scheduler", s.guard(acl.RouteDebug, http.HandlerFunc(s.serveSchedulerSummary)))
	}
	return s.cfg.Metrics.APIMetrics().Middleware(metrics.ProtocolHTTP, mux)
}

// guard checks a plain HTTP route against its row of the ACL table, as the
// interceptor checks Connect calls.
func (s *Server) guard(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.Authorize(r.Context(), r.Header, route, nil); err != nil {
			status := http.StatusForbidden
			if connect.CodeOf(err) == connect.CodeUnauthenticated {
				status = http.StatusUnauthorized
			}
			writeJSON(w, status, map[string]any{"message": err.Error()})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readySlack is how many committed entries a server may not have applied
// yet and still be ready: a busy follower is always a few behind.
const readySlack = 64

// notReady returns why this server should not get traffic, or "".
func (s *Server) notReady() string {
	id, _, _ := s.clu.Leader()
	if id == "" {
		return "no leader known"
	}
	applied := s.store().LastIndex()
	if ci, ok := s.clu.(interface{ CommitIndex() uint64 }); ok {
		if commit := ci.CommitIndex(); applied+readySlack < commit {
			return fmt.Sprintf("applied index %d is behind the commit index %d", applied, commit)
		}
	}
	if s.clu.IsLeader() && s.cfg.SchedulerSubscribed != nil && !s.cfg.SchedulerSubscribed() {
		return "leader's scheduler is not subscribed to Mesos"
	}
	return ""
}

// maxProfileSeconds bounds a CPU profile or trace asked through the API.
const maxProfileSeconds = 300

// servePprof serves a runtime profile (goroutine, heap, allocs, block,
// mutex, threadcreate; profile for CPU and trace with ?seconds=N).
func (s *Server) servePprof(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("profile")
	if sec := r.URL.Query().Get("seconds"); sec != "" {
		n, err := strconv.Atoi(sec)
		if err != nil || n < 1 || n > maxProfileSeconds {
			http.Error(w, fmt.Sprintf("seconds: %q must be a whole number from 1 to %d", sec, maxProfileSeconds), http.StatusBadRequest)
			return
		}
	}
	switch name {
	case "profile", "trace":
		// Profiling costs CPU: say who asked, in the log the debug bundle
		// reads back.
		s.log.Info("serving a "+name, "seconds", r.URL.Query().Get("seconds"), "peer", r.RemoteAddr)
		if name == "profile" {
			pprof.Profile(w, r)
		} else {
			pprof.Trace(w, r)
		}
	case "goroutine", "heap", "allocs", "block", "mutex", "threadcreate":
		pprof.Handler(name).ServeHTTP(w, r)
	default:
		http.Error(w, fmt.Sprintf("profile: unknown profile %q (want goroutine, heap, allocs, block, mutex, threadcreate, profile or trace)", name), http.StatusNotFound)
	}
}

// serveLogs serves the server's recent log lines, those since ?since=
// (RFC 3339) when given.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request) {
	if s.cfg.RecentLogs == nil {
		http.Error(w, "this server keeps no recent logs", http.StatusNotFound)
		return
	}
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			http.Error(w, fmt.Sprintf("since: %q is not an RFC 3339 time", v), http.StatusBadRequest)
			return
		}
		since = t
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.cfg.RecentLogs(w, since); err != nil {
		s.log.Warn("serve recent logs", "err", err)
	}
}

// SchedulerSummary is the state summary of GET /v1/debug/scheduler:
// counts only, nothing from app definitions (no env values, no secrets).
type SchedulerSummary struct {
	LeaderID     string         `json:"leader_id"`
	Leader       bool           `json:"leader"`
	Subscribed   bool           `json:"scheduler_subscribed"`
	Term         uint64         `json:"term"`
	AppliedIndex uint64         `json:"applied_index"`
	FrameworkID  string         `json:"framework_id"`
	Apps         int            `json:"apps"`
	Instances    map[string]int `json:"instances"`
	Deployments  map[string]int `json:"deployments"`
	Reservations map[string]int `json:"reservations"`
}

func (s *Server) serveSchedulerSummary(w http.ResponseWriter, _ *http.Request) {
	snap := s.store().Snapshot()
	counts, err := stateCounts(snap)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fid, err := snap.FrameworkID()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	insts, err := snap.Instances()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sum := SchedulerSummary{
		Leader:       s.clu.IsLeader(),
		Subscribed:   s.cfg.SchedulerSubscribed != nil && s.cfg.SchedulerSubscribed(),
		Term:         s.clu.Term(),
		AppliedIndex: snap.Index(),
		FrameworkID:  fid,
		Apps:         counts.Apps,
		Instances:    map[string]int{},
		Deployments:  counts.Deployments,
		Reservations: map[string]int{},
	}
	sum.LeaderID, _, _ = s.clu.Leader()
	for k, n := range counts.Instances {
		sum.Instances[k[0]+"/"+k[1]] = n
	}
	for _, i := range insts {
		st := strings.ToLower(strings.TrimPrefix(i.GetReservation().GetState().String(), "RESERVATION_STATE_"))
		sum.Reservations[st]++
	}
	writeJSON(w, http.StatusOK, sum)
}

// stateCounts counts what the state gauges serve from one snapshot.
func stateCounts(snap *fsm.Snapshot) (metrics.StateCounts, error) {
	apps, err := snap.Apps()
	if err != nil {
		return metrics.StateCounts{}, err
	}
	insts, err := snap.Instances()
	if err != nil {
		return metrics.StateCounts{}, err
	}
	deps, err := snap.Deployments()
	if err != nil {
		return metrics.StateCounts{}, err
	}
	c := metrics.StateCounts{Apps: len(apps), Instances: map[[2]string]int{}, Deployments: map[string]int{}}
	for _, i := range insts {
		state := i.GetTask().GetState()
		if state == "" {
			state = "none"
		}
		goal := strings.ToLower(strings.TrimPrefix(i.GetGoal().String(), "GOAL_"))
		c.Instances[[2]string{goal, state}]++
	}
	for _, d := range deps {
		c.Deployments[strings.ToLower(strings.TrimPrefix(d.GetStatus().String(), "DEPLOYMENT_STATUS_"))]++
	}
	return c, nil
}

// registerGauges registers the cluster and state collectors of this server
// with reg.
func (s *Server) registerGauges(reg *metrics.Registry) {
	reg.MustRegister(
		metrics.ClusterCollector(func() metrics.ClusterStatus {
			st := metrics.ClusterStatus{Leader: s.clu.IsLeader(), Term: s.clu.Term(), Members: map[string]int{},
				AppliedIndex: s.store().LastIndex()}
			if peers, err := s.clu.Peers(); err == nil {
				st.Peers = len(peers)
			}
			for _, m := range s.clu.Members() {
				st.Members[m.Status]++
			}
			return st
		}),
		metrics.StateCollector(func() (metrics.StateCounts, error) { return stateCounts(s.store().Snapshot()) }),
	)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
