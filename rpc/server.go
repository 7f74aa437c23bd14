package rpc

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/google/uuid"

	"github.com/berth-dev/berth/acl"
	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/fsm"
	"github.com/berth-dev/berth/metrics"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// Cluster is what the API needs from the Raft layer. The cluster package's
// Node provides it through rpc/clusteradapter.
type Cluster interface {
	// Apply proposes one encoded FSM command (fsm.Encode) and waits until it
	// is applied on this server. resp is the FSM's *fsm.ApplyResult; index is
	// the log index of this entry. It fails at once on a follower. After a
	// failure, IsLeader tells whether to retry through another server.
	Apply(ctx context.Context, cmd []byte) (resp any, index uint64, err error)
	// IsLeader reports whether this server is the Raft leader right now.
	IsLeader() bool
	// Leader returns the leader's id, Raft address and API address as this
	// server knows them; empty strings when unknown.
	Leader() (id, raftAddr, apiAddr string)
	// VerifyLeader confirms leadership with a quorum (linearizable reads).
	VerifyLeader(ctx context.Context) error
	// Barrier waits until every entry committed before it is applied to
	// the local store (leader only).
	Barrier(ctx context.Context) error
	// Term is the current Raft term.
	Term() uint64
	// Members lists the servers known through gossip.
	Members() []MemberInfo
	// Peers lists the Raft configuration.
	Peers() ([]PeerInfo, error)
	// RemovePeer removes a server from the Raft configuration (leader only).
	RemovePeer(ctx context.Context, id string) error
	// TransferLeadership hands leadership to `to`, or to the best voter when
	// empty (leader only).
	TransferLeadership(ctx context.Context, to string) error
	// SaveSnapshot streams a snapshot of the replicated state to w.
	SaveSnapshot(ctx context.Context, w io.Writer) (SnapshotMeta, error)
	// RestoreSnapshot replaces the replicated state with a snapshot read
	// from r (leader only).
	RestoreSnapshot(ctx context.Context, r io.Reader) (SnapshotMeta, error)
	// Leave departs the cluster gracefully (this server).
	Leave(ctx context.Context) error
	// Name is this server's id.
	Name() string
}

// MemberInfo is one server known through gossip.
type MemberInfo struct {
	Name, RaftAddr, APIAddr, GossipAddr, Status, Version string
	Leader                                               bool
	// DiskError is why the server's Raft log cannot be written ("" if it
	// can).
	DiskError string
}

// PeerInfo is one server of the Raft configuration.
type PeerInfo struct {
	ID, Address string
	Voter       bool
	Leader      bool
}

// SnapshotMeta identifies a saved or restored snapshot.
type SnapshotMeta struct {
	Index, Term uint64
}

// Config configures a Server. Store and Cluster are required.
type Config struct {
	// Store returns the current local state store (fsm.FSM.State).
	Store func() *fsm.Store
	// Cluster is the Raft layer.
	Cluster Cluster
	// Events is where StreamEvents reads from (typically an *EventBroker
	// the scheduler publishes into). Nil: StreamEvents streams nothing but
	// the stream-attached event.
	Events EventSource
	// Publisher receives the api_post_event events of app changes this
	// server commits (typically the same *EventBroker as Events). Nil:
	// they are dropped.
	Publisher EventPublisher
	// MigrationTarget is the staging target (file:///path or s3://...) of
	// migrations of apps without a backup target.
	MigrationTarget string
	// BinaryPath is the berth binary served at GET /v1/binary/berth for
	// backup and restore tasks (default: this process's executable).
	BinaryPath string
	// Logger gets the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// MaxRequestBytes bounds every request message (default 4 MiB; app
	// definitions are additionally limited to MaxAppBytes when parsed from
	// files).
	MaxRequestBytes int
	// MaxSnapshotBytes bounds RestoreSnapshot requests and the snapshots
	// RestoreSnapshotStream takes (default 1 GiB).
	MaxSnapshotBytes int
	// SpoolDir is where a follower keeps a snapshot streamed to it while
	// it forwards it to the leader (default: the system's temporary
	// directory).
	SpoolDir string
	// LeaderWait is how long a write waits for a leader (during an
	// election) before failing with Unavailable (default 10 s).
	LeaderWait time.Duration
	// ForwardTimeout bounds one attempt to forward a request to the
	// leader (default 5 s); a leader that does not answer in time (e.g. a
	// paused process) is retried, with the same request id, until
	// LeaderWait runs out.
	ForwardTimeout time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// NewID returns a fresh unique id for request ids (default a random
	// UUID).
	NewID func() string
	// HTTPClient is used to forward requests to the leader (default: a
	// client speaking HTTP/1.1 and h2c). With TLS it is required and must
	// present this server's certificate.
	HTTPClient *http.Client
	// OnLeft is called once this server has left the cluster through
	// ClusterService.Leave, to shut the process down (nil: nothing).
	OnLeft func()
	// MaxConcurrentLists bounds the listings (ListApps, ListTasks,
	// ListDeployments) a server runs at once (default half the cores, at
	// least one: the rest stays free for writes and the scheduler); one
	// that cannot start within two seconds is refused with
	// ResourceExhausted and Retry-After.
	MaxConcurrentLists int
	// Limits caps each app definition (zero fields: appmodel's defaults).
	Limits appmodel.Limits
	// MaxApps caps the apps the cluster holds (default 50,000) and
	// MaxInstances the instances of all apps together (default 250,000):
	// with them no accepted request can grow the replicated state, or
	// the scheduler's work, without bound.
	MaxApps      int
	MaxInstances int
	// TLS, if set, serves the API over TLS, HTTP/2 negotiated by ALPN
	// (tlsutil.Holder.ServerConfig builds one that reloads), and other
	// servers are called with https://.
	TLS *tls.Config
	// ServerName is the server identity (tlsutil.ServerName) that a
	// caller's verified certificate must carry for server-only requests
	// when TLS is set.
	ServerName string
	// Keyring is this server's gossip keyring, for KeyringService (nil:
	// its methods fail with FailedPrecondition).
	Keyring Keyring
	// MesosOperator calls the Mesos master's operator API, for
	// AgentService and ClusterService.MesosStatus (nil: they fail with
	// FailedPrecondition).
	MesosOperator MesosOperator
	// MesosMasterURL is the master MesosOperator calls, shown by
	// MesosStatus and named in the errors of its calls.
	MesosMasterURL string
	// REST, when set, builds the handler of Marathon's REST API (/v2/...
	// and /ping, see package rpc/marathon) from the Connect handler, which
	// it calls in-process: a REST request goes through the same
	// interceptors, validation and leader forwarding as a Connect call.
	REST func(connectAPI http.Handler) http.Handler
	// ACLEnabled requires an ACL token on every call but the few the ACL
	// table leaves open (acl.Table).
	ACLEnabled bool
	// TaskUsers is the allowlist of users that apps' tasks may run as
	// (an app without user runs as DefaultTaskUser); nil allows any user.
	TaskUsers []string
	// DefaultTaskUser is the user of tasks of apps that name none (the
	// framework's user).
	DefaultTaskUser string
	// Metrics, when set, measures every request and serves GET /metrics
	// (with this server's cluster and state gauges) and /v1/debug/
	// (profiles, recent logs, the scheduler summary). Nil: neither.
	Metrics *metrics.Registry
	// SchedulerSubscribed tells /v1/ready whether this server's scheduler
	// holds a Mesos subscription (asked on the leader only). Nil: not
	// checked.
	SchedulerSubscribed func() bool
	// Live is the scheduler's leader-local knowledge (why instances wait,
	// check results), served by the leader. Nil: none.
	Live LiveState
	// RecentLogs writes this server's log lines since a time, for
	// /v1/debug/logs. Nil: that route answers 404.
	RecentLogs func(w io.Writer, since time.Time) error
	// UI, when set, serves the web UI (static files) under /ui/ on the API
	// port; it is public (acl.RouteUI): the UI's API calls carry the
	// user's token.
	UI http.Handler
}

// RESTPaths are the path patterns Config.REST serves.
var RESTPaths = []string{"/v2/", "/ping"}

// Defaults for Config fields.
const (
	DefaultMaxRequestBytes  = 4 << 20
	DefaultMaxSnapshotBytes = 1 << 30
	DefaultLeaderWait       = 10 * time.Second
	DefaultForwardTimeout   = 5 * time.Second
	DefaultMaxApps          = 50_000
	DefaultMaxInstances     = 250_000
)

// Server serves Berth's Connect API: AppService, TaskService,
// DeploymentService, EventService and ClusterService, plus gRPC health
// checking and server reflection, on one HTTP handler.
type Server struct {
	cfg    Config
	log    *slog.Logger
	store  func() *fsm.Store
	clu    Cluster
	events EventSource
	now    func() time.Time
	newID  func() string

	httpClient *http.Client
	peersMu    sync.Mutex
	peers      map[string]*peerClients

	// barrierTerm is the last term in which this server, as leader, has
	// applied everything committed before its term began (a Barrier).
	// Consistent reads need that: a new leader may not have applied the
	// previous leader's last acknowledged writes yet.
	barrierTerm atomic.Uint64

	// forwardedIndex is the highest log index a write this server
	// forwarded to the leader was answered at. Local reads wait until
	// the store has applied it (see readBarrier): a client reads its own
	// writes from this server, and the write does not wait for it.
	forwardedIndex atomic.Uint64

	// lists bounds the listings running at once (see shed.go).
	lists *listLimiter
	// appLists keeps the ListApps answers of the newest store index
	// (listcache.go).
	appLists appListCache

	// streams is cancelled when Serve shuts down, ending event streams so
	// that graceful shutdown does not wait for them.
	streams      context.Context
	cancelStream context.CancelFunc
}

// NewServer returns a server for cfg. It panics if Store or Cluster is nil
// (a programming error in the wiring).
func NewServer(cfg Config) *Server {
	if cfg.Store == nil || cfg.Cluster == nil {
		panic("rpc.NewServer: Config.Store and Config.Cluster are required")
	}
	if cfg.TLS != nil && cfg.HTTPClient == nil {
		panic(errNoTLSForPeers)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxSnapshotBytes <= 0 {
		cfg.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	if cfg.LeaderWait <= 0 {
		cfg.LeaderWait = DefaultLeaderWait
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	if cfg.MaxConcurrentLists <= 0 {
		cfg.MaxConcurrentLists = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if cfg.MaxApps <= 0 {
		cfg.MaxApps = DefaultMaxApps
	}
	if cfg.MaxInstances <= 0 {
		cfg.MaxInstances = DefaultMaxInstances
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = uuid.NewString
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
		tr.Protocols.SetUnencryptedHTTP2(true)
		hc = &http.Client{Transport: tr}
	}
	streams, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:          cfg,
		log:          cfg.Logger,
		store:        cfg.Store,
		clu:          cfg.Cluster,
		events:       cfg.Events,
		now:          cfg.Now,
		newID:        cfg.NewID,
		httpClient:   hc,
		peers:        map[string]*peerClients{},
		streams:      streams,
		cancelStream: cancel,
		lists:        newListLimiter(cfg.MaxConcurrentLists, listQueueWait),
	}
	if cfg.Metrics != nil {
		s.registerGauges(cfg.Metrics)
	}
	return s
}

// serviceNames are the services the server mounts, for health checking and
// reflection.
var serviceNames = []string{
	berthv1connect.AppServiceName,
	berthv1connect.TaskServiceName,
	berthv1connect.DeploymentServiceName,
	berthv1connect.EventServiceName,
	berthv1connect.ClusterServiceName,
	berthv1connect.KeyringServiceName,
	berthv1connect.AgentServiceName,
	berthv1connect.ACLServiceName,
	berthv1connect.BackupServiceName,
}

// compressMinBytes is the smallest response the server compresses (when
// the client accepts gzip).
const compressMinBytes = 4 << 10

// newFastGzipWriter compresses at gzip's fastest level: a listing of
// thousands of apps took longer to compress at the default level than to
// compute (from the store's shared answer), for a few percent more bytes.
func newFastGzipWriter() connect.Compressor {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level: no error
	return w
}

func newGzipReader() connect.Decompressor { return &gzip.Reader{} }

// Handler returns the HTTP handler with every service mounted. It serves the
// Connect, gRPC and gRPC-Web protocols; serve it with HTTP/1.1 and h2c (as
// Serve does) for gRPC clients.
func (s *Server) Handler() http.Handler {
	// The ACL check comes after the log interceptor, so refused calls
	// are logged too, and after the read barrier, so that a read sees
	// the tokens its client wrote through this server; metrics, when on,
	// measure everything.
	interceptors := []connect.Interceptor{s.logInterceptor(), s.serverOnly(), s.readBarrier(), authInterceptor{s}, s.lists}
	if s.cfg.Metrics != nil {
		interceptors = append([]connect.Interceptor{metricsInterceptor{s.cfg.Metrics.API}}, interceptors...)
	}
	opts := []connect.HandlerOption{
		connect.WithReadMaxBytes(s.cfg.MaxRequestBytes),
		connect.WithRecover(s.recoverPanic),
		connect.WithInterceptors(interceptors...),
		// Gzip only what is worth it: compressing every small answer
		// (a created app, one task) cost about 5% of a write's CPU.
		connect.WithCompressMinBytes(compressMinBytes),
		connect.WithCompression("gzip", newGzipReader, newFastGzipWriter),
		connect.WithCodec(listCodec{&s.appLists}),
	}
	mux := http.NewServeMux()
	mux.Handle(berthv1connect.NewAppServiceHandler(&appService{s}, opts...))
	mux.Handle(berthv1connect.NewTaskServiceHandler(&taskService{s}, opts...))
	mux.Handle(berthv1connect.NewDeploymentServiceHandler(&deploymentService{s}, opts...))
	mux.Handle(berthv1connect.NewEventServiceHandler(&eventService{s}, opts...))
	mux.Handle(berthv1connect.NewACLServiceHandler(&aclService{s}, opts...))
	mux.Handle(berthv1connect.NewBackupServiceHandler(&backupService{s}, opts...))
	clusterOpts := []connect.HandlerOption{
		// Snapshots travel whole in one message (RestoreSnapshot).
		connect.WithReadMaxBytes(s.cfg.MaxSnapshotBytes),
		connect.WithRecover(s.recoverPanic),
		connect.WithInterceptors(interceptors...),
		connect.WithCompressMinBytes(compressMinBytes),
		WithSnapshotCodec(),
	}
	mux.Handle(berthv1connect.NewClusterServiceHandler(&clusterService{s}, clusterOpts...))
	mux.Handle(berthv1connect.NewKeyringServiceHandler(&keyringService{s}, opts...))
	mux.Handle(berthv1connect.NewAgentServiceHandler(&agentService{s}, opts...))
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(serviceNames...), opts...))
	reflector := grpcreflect.NewStaticReflector(append(serviceNames, grpchealth.HealthV1ServiceName)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, opts...))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, opts...))
	plain := s.plainRoutes()
	mux.Handle("/v1/", plain)
	mux.Handle("/metrics", plain)
	if s.cfg.UI != nil {
		mux.Handle("GET /ui/", s.guard(acl.RouteUI, s.cfg.UI))
		mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	}
	api := withTLSState(holdListSlots(mux))
	if s.cfg.REST == nil {
		return api
	}
	rest := s.cfg.Metrics.APIMetrics().Middleware(metrics.ProtocolREST, s.cfg.REST(api))
	outer := http.NewServeMux()
	for _, p := range RESTPaths {
		outer.Handle(p, rest)
	}
	outer.Handle("/", api)
	return outer
}

// recoverPanic turns a handler panic into an Internal error (and a log
// line) instead of a dropped connection.
func (s *Server) recoverPanic(_ context.Context, spec connect.Spec, _ http.Header, p any) error {
	s.log.Error("panic in rpc handler", "procedure", spec.Procedure, "panic", p)
	return connect.NewError(connect.CodeInternal, fmt.Errorf("internal error in %s", spec.Procedure))
}

// logInterceptor logs failed calls: server-side faults at warn level,
// client errors at debug level.
func (s *Server) logInterceptor() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			res, err := next(ctx, req)
			if err != nil {
				// The request id (set by the handler when the client sent
				// none) ties the line to the write's other log lines.
				attrs := []any{"procedure", req.Spec().Procedure, "peer", req.Peer().Addr, "err", err}
				if id := requestIDOf(req.Any()); id != "" {
					attrs = append(attrs, "request_id", id)
				}
				switch connect.CodeOf(err) {
				case connect.CodeInternal, connect.CodeUnknown, connect.CodeDataLoss, connect.CodeUnavailable:
					s.log.Warn("rpc failed", attrs...)
				default:
					s.log.Debug("rpc refused", attrs...)
				}
			}
			return res, err
		}
	})
}

// Serve serves the API on lis (HTTP/1.1 and unencrypted HTTP/2; with
// Config.TLS, TLS with HTTP/2 by ALPN) until ctx
// ends, then shuts down gracefully: event streams are ended at once, other
// requests get up to 5 seconds to finish. It returns nil after a shutdown
// caused by ctx, or the error that stopped serving. Call it once per
// Server: the shutdown ends the server's event streams for good.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if s.cfg.TLS != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{
		TLSConfig:         s.cfg.TLS,
		Handler:           s.Handler(),
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLS != nil {
			errc <- srv.ServeTLS(lis, "", "")
			return
		}
		errc <- srv.Serve(lis)
	}()
	s.log.Info("api listening", "addr", lis.Addr().String(), "tls", s.cfg.TLS != nil)
	select {
	case err := <-errc:
		s.cancelStream()
		return fmt.Errorf("serve api on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	s.cancelStream()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if err != nil {
		_ = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve api on %s: %w", lis.Addr(), serr)
	}
	if err != nil {
		return fmt.Errorf("shut down api server: %w", err)
	}
	return nil
}
