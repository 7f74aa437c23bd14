package rpc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/acl"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// forwardedHeader marks a request that a follower forwarded to the leader.
// A server that receives one while not leader answers Unavailable instead of
// forwarding again, so requests never loop; the follower that forwarded it
// then looks for the new leader and retries. With TLS it is honoured only
// from a caller carrying the server identity (serverOnly checks it).
const forwardedHeader = "Berth-Forwarded"

// peerClients are Connect clients for one other server's API.
type peerClients struct {
	addr       string
	app        berthv1connect.AppServiceClient
	task       berthv1connect.TaskServiceClient
	deployment berthv1connect.DeploymentServiceClient
	event      berthv1connect.EventServiceClient
	cluster    berthv1connect.ClusterServiceClient
	keyring    berthv1connect.KeyringServiceClient
	acl        berthv1connect.ACLServiceClient
}

// peer returns (cached) clients for the server at addr (host:port).
func (s *Server) peer(addr string) *peerClients {
	s.peersMu.Lock()
	defer s.peersMu.Unlock()
	if pc, ok := s.peers[addr]; ok {
		return pc
	}
	base := "http://" + addr
	if s.cfg.TLS != nil {
		base = "https://" + addr
	}
	if strings.Contains(addr, "://") {
		base = addr
	}
	// Snapshots travel whole in one message, both ways (RestoreSnapshot
	// and SaveSnapshot), or in chunks (snapshotCodec).
	opts := []connect.ClientOption{connect.WithSendMaxBytes(s.cfg.MaxSnapshotBytes), connect.WithReadMaxBytes(s.cfg.MaxSnapshotBytes), WithSnapshotCodec()}
	pc := &peerClients{
		addr:       addr,
		app:        berthv1connect.NewAppServiceClient(s.httpClient, base, opts...),
		task:       berthv1connect.NewTaskServiceClient(s.httpClient, base, opts...),
		deployment: berthv1connect.NewDeploymentServiceClient(s.httpClient, base, opts...),
		event:      berthv1connect.NewEventServiceClient(s.httpClient, base, opts...),
		cluster:    berthv1connect.NewClusterServiceClient(s.httpClient, base, opts...),
		keyring:    berthv1connect.NewKeyringServiceClient(s.httpClient, base, opts...),
		acl:        berthv1connect.NewACLServiceClient(s.httpClient, base, opts...),
	}
	s.peers[addr] = pc
	return pc
}

// notLeaderError reports that a local Apply failed because this server is
// (no longer) the leader: the write should be retried through the new one.
type notLeaderError struct{ err error }

func (e *notLeaderError) Error() string { return "not the leader: " + e.err.Error() }
func (e *notLeaderError) Unwrap() error { return e.err }

// onLeader runs a request where it must run: locally on the leader, or
// forwarded to the leader's API from a follower. During an election it
// waits (up to Config.LeaderWait) for a leader; a forward that fails with
// Unavailable (leader gone, or no longer leader) is retried against the
// new leader. Writes carry a request id, so a retry after an unknown
// outcome applies at most once.
func onLeader[Res any](ctx context.Context, s *Server, hdr http.Header,
	local func(context.Context) (*connect.Response[Res], error),
	remote func(context.Context, *peerClients) (*connect.Response[Res], error),
) (*connect.Response[Res], error) {
	return onLeaderFor(ctx, s, hdr, s.cfg.ForwardTimeout, local, remote)
}

// onLeaderFor is onLeader with forwardTimeout bounding one forward to the
// leader instead of Config.ForwardTimeout; 0: only ctx bounds it (a call
// that takes long on the leader, such as a snapshot restore, and must not
// be sent twice because a forward gave up while the leader still works).
func onLeaderFor[Res any](ctx context.Context, s *Server, hdr http.Header, forwardTimeout time.Duration,
	local func(context.Context) (*connect.Response[Res], error),
	remote func(context.Context, *peerClients) (*connect.Response[Res], error),
) (*connect.Response[Res], error) {
	return leaderCall(ctx, s, hdr, forwardTimeout, func(ctx context.Context) (*connect.Response[Res], error) {
		res, err := local(ctx)
		if err == nil {
			// The index the write is applied at: a forwarding
			// follower makes its later reads wait for it, and a
			// client may send it back as minIndexHeader.
			res.Header().Set(indexHeader, strconv.FormatUint(s.store().LastIndex(), 10))
			s.audit(ctx)
		}
		return res, err
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[Res], error) {
		res, err := remote(ctx, pc)
		if err == nil {
			s.noteForwarded(res.Header().Get(indexHeader))
		}
		return res, err
	})
}

// leaderCall is onLeaderFor's loop for any kind of answer (a stream's
// too): local runs when this server leads, and is tried again through the
// new leader when it fails with a *notLeaderError; remote runs against the
// leader's API, and is tried again when it fails with Unavailable or its
// forwardTimeout. A stream's local or remote must therefore fail with
// neither once it has sent something of its answer.
func leaderCall[T any](ctx context.Context, s *Server, hdr http.Header, forwardTimeout time.Duration,
	local func(context.Context) (T, error),
	remote func(context.Context, *peerClients) (T, error),
) (T, error) {
	var zero T
	deadline := time.Now().Add(s.cfg.LeaderWait)
	backoff := 20 * time.Millisecond
	var lastErr error
	for {
		if s.clu.IsLeader() {
			res, err := local(ctx)
			var nle *notLeaderError
			if err == nil || !errors.As(err, &nle) {
				return res, err
			}
			lastErr = err
		} else if hdr.Get(forwardedHeader) != "" {
			// Forwarded to us, but we are not the leader (any more): let
			// the forwarding server find the new leader.
			return zero, errNotLeaderHere()
		} else if _, _, addr := s.clu.Leader(); addr != "" {
			markForwarded(ctx)
			actx, cancel := ctx, context.CancelFunc(func() {})
			if forwardTimeout > 0 {
				actx, cancel = context.WithTimeout(ctx, forwardTimeout)
			}
			res, err := remote(actx, s.peer(addr))
			timedOut := actx.Err() != nil && ctx.Err() == nil
			cancel()
			if err == nil {
				return res, nil
			}
			if connect.CodeOf(err) != connect.CodeUnavailable && !timedOut {
				return res, err
			}
			lastErr = fmt.Errorf("leader at %s: %w", addr, err)
		}
		if ctx.Err() != nil {
			return zero, ctxError(ctx.Err())
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("no leader available after %s", s.cfg.LeaderWait)
			if lastErr != nil {
				msg += ": " + lastErr.Error()
			}
			return zero, connect.NewError(connect.CodeUnavailable, errors.New(msg))
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, ctxError(ctx.Err())
		case <-t.C:
		}
		backoff = min(backoff*2, 250*time.Millisecond)
	}
}

// errNotLeaderHere answers a forwarded request that reached a server that
// is not the leader (any more).
func errNotLeaderHere() error {
	return connect.NewError(connect.CodeUnavailable, errors.New("this server is not the leader"))
}

// indexHeader carries, on the response to a write, the log index the
// leader had applied when it answered (the write's index or later). The
// write is committed there; a forwarding follower answers at once, without
// waiting until it has applied that index itself (that wait is an idle
// leader's next replication round, up to twice Raft's CommitTimeout).
const indexHeader = "Berth-Index"

// minIndexHeader, on a read, asks the server to answer only once its store
// has applied the log up to this index (a Berth-Index a write returned),
// so that the client reads its write from any server. After
// Config.ForwardTimeout the read fails with Unavailable instead.
const minIndexHeader = "Berth-Min-Index"

// noteForwarded records the index a forwarded write was answered at: this
// server's later local reads wait for it (readBarrier).
func (s *Server) noteForwarded(header string) {
	index, err := strconv.ParseUint(header, 10, 64)
	if err != nil {
		return
	}
	for {
		cur := s.forwardedIndex.Load()
		if index <= cur || s.forwardedIndex.CompareAndSwap(cur, index) {
			return
		}
	}
}

// readBarrier makes a unary read wait until the local store has applied
// every write this server forwarded and answered (read-your-writes through
// a follower, for clients that send nothing), and the index the client
// asked for with minIndexHeader. Writes do not wait: they are answered by
// the leader. Nor do consistent reads, which the leader answers.
func (s *Server) readBarrier() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if rule, ok := acl.Table[req.Spec().Procedure]; (ok && rule.Write) || consistentRead(req.Any()) {
				return next(ctx, req)
			}
			var asked uint64
			if h := req.Header().Get(minIndexHeader); h != "" {
				v, err := strconv.ParseUint(h, 10, 64)
				if err != nil {
					return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("header %s: %q is not a log index", minIndexHeader, h))
				}
				asked = v
			}
			if err := s.waitApplied(ctx, asked, readsState(req.Spec().Procedure)); err != nil {
				return nil, err
			}
			return next(ctx, req)
		}
	})
}

// stateServices are the services whose reads answer from the replicated
// state of apps, tasks, deployments and tokens: those wait for this
// server's forwarded writes. Health checks and cluster status never do (a
// follower cut off from its leader must still say so at once).
var stateServices = []string{
	"/" + berthv1connect.AppServiceName + "/",
	"/" + berthv1connect.TaskServiceName + "/",
	"/" + berthv1connect.DeploymentServiceName + "/",
	"/" + berthv1connect.ACLServiceName + "/",
}

func readsState(procedure string) bool {
	for _, prefix := range stateServices {
		if strings.HasPrefix(procedure, prefix) {
			return true
		}
	}
	return false
}

// consistentRead reports whether msg asks for READ_CONSISTENCY_CONSISTENT.
func consistentRead(msg any) bool {
	c, ok := msg.(interface{ GetConsistency() v1.ReadConsistency })
	return ok && c.GetConsistency() == v1.ReadConsistency_READ_CONSISTENCY_CONSISTENT
}

// waitApplied waits, bounded by ForwardTimeout, until the local store has
// applied the client's index asked and, with forwarded, this server's
// forwarded writes. A store that does not catch up fails a read that asked
// for an index (Unavailable); the implicit wait for forwarded writes gives
// up with a warning and serves the read, as a follower cut off from its
// leader does.
func (s *Server) waitApplied(ctx context.Context, asked uint64, withForwarded bool) error {
	var forwarded uint64
	if withForwarded {
		forwarded = s.forwardedIndex.Load()
	}
	target := max(asked, forwarded)
	if target == 0 || s.store().LastIndex() >= target {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
	defer cancel()
	err := fsm.WaitIndex(wctx, s.store, target)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctxError(ctx.Err())
	case asked > 0 && s.store().LastIndex() < asked:
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("this server has applied the log up to index %d, not yet %d (%s) after %s; retry, or read from the leader",
			s.store().LastIndex(), asked, minIndexHeader, s.cfg.ForwardTimeout))
	}
	s.log.Warn("forwarded writes not yet applied locally; answering a read anyway", "index", forwarded, "applied", s.store().LastIndex())
	return nil
}

// ctxError maps a context error to its Connect code.
func ctxError(err error) *connect.Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeCanceled, err)
}

// readConsistent serves a read: from the local store by default; with
// READ_CONSISTENCY_CONSISTENT, on the leader after confirming leadership
// with a quorum (forwarded from followers).
func readConsistent[Res any](ctx context.Context, s *Server, c v1.ReadConsistency, hdr http.Header,
	local func() (*connect.Response[Res], error),
	remote func(context.Context, *peerClients) (*connect.Response[Res], error),
) (*connect.Response[Res], error) {
	if c != v1.ReadConsistency_READ_CONSISTENCY_CONSISTENT {
		return local()
	}
	return onLeader(ctx, s, hdr, func(ctx context.Context) (*connect.Response[Res], error) {
		if err := s.clu.VerifyLeader(ctx); err != nil {
			if !s.clu.IsLeader() {
				return nil, &notLeaderError{err}
			}
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("verify leadership: %w", err))
		}
		if err := s.caughtUp(ctx); err != nil {
			return nil, err
		}
		return local()
	}, remote)
}

// caughtUp makes sure that this leader has applied every entry committed
// before its term, once per term: only then does its store reflect every
// acknowledged write.
func (s *Server) caughtUp(ctx context.Context) error {
	term := s.clu.Term()
	if s.barrierTerm.Load() == term {
		return nil
	}
	if err := s.clu.Barrier(ctx); err != nil {
		if !s.clu.IsLeader() {
			return &notLeaderError{err}
		}
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("catch up with the log: %w", err))
	}
	if s.clu.Term() == term {
		s.barrierTerm.Store(term)
	}
	return nil
}

// applyOutcome is a committed command's result.
type applyOutcome struct {
	// Index is the log index of the entry that applied the command.
	Index uint64
	// Deduplicated is true when the FSM had already applied a command with
	// the same request id: nothing changed now, and the first outcome was
	// a success.
	Deduplicated bool
}

// apply commits one FSM command on the leader and maps the FSM's refusal to
// a Connect error. A failure because this server is not (or no longer) the
// leader is a *notLeaderError so that onLeader retries through the new
// leader.
func (s *Server) apply(ctx context.Context, t v1.CommandType, msg proto.Message) (applyOutcome, error) {
	cmd, err := fsm.Encode(t, msg)
	if err != nil {
		return applyOutcome{}, connect.NewError(connect.CodeInternal, err)
	}
	resp, index, err := s.clu.Apply(ctx, cmd)
	if err != nil {
		if errors.Is(err, fsm.ErrUnsupported) {
			// Not proposed: nothing to retry until the upgrade is done.
			return applyOutcome{}, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("commit %s: %w", t, err))
		}
		if !s.clu.IsLeader() {
			return applyOutcome{}, &notLeaderError{err}
		}
		code := connect.CodeUnavailable
		if errors.Is(err, context.Canceled) {
			code = connect.CodeCanceled
		} else if errors.Is(err, context.DeadlineExceeded) {
			code = connect.CodeDeadlineExceeded
		}
		return applyOutcome{}, connect.NewError(code, fmt.Errorf("commit %s: %w (the write may still apply; retry with the same request_id)", t, err))
	}
	res, ok := resp.(*fsm.ApplyResult)
	if !ok {
		return applyOutcome{}, connect.NewError(connect.CodeInternal, fmt.Errorf("commit %s: unexpected FSM result %T", t, resp))
	}
	if res.Err != nil {
		return applyOutcome{}, connect.NewError(fsmErrorCode(res.Err), res.Err)
	}
	if res.Index != index {
		markRetried(ctx)
	}
	return applyOutcome{Index: res.Index, Deduplicated: res.Index != index}, nil
}

// fsmErrorCode maps an FSM refusal to the Connect code the client sees.
func fsmErrorCode(err error) connect.Code {
	switch {
	case errors.Is(err, fsm.ErrNotFound):
		return connect.CodeNotFound
	case errors.Is(err, fsm.ErrAlreadyExists):
		return connect.CodeAlreadyExists
	case errors.Is(err, fsm.ErrConflict):
		// A concurrent change won (e.g. expected_version mismatch): the
		// client may re-read and retry.
		return connect.CodeAborted
	case errors.Is(err, fsm.ErrInvalid):
		return connect.CodeInvalidArgument
	default:
		return connect.CodeInternal
	}
}

// deploymentNamespace derives deployment ids from request ids, so that a
// retried write (same request id) computes the same deployment id as the
// first attempt and recognises it.
var deploymentNamespace = uuid.MustParse("5b0a6a0c-6f1e-4d53-9a57-4e2b8f7f5c11")

func deploymentIDFor(requestID string) string {
	return uuid.NewSHA1(deploymentNamespace, []byte(requestID)).String()
}

// ensureRequestID fills in a request id when the client sent none, so that
// forwarding retries apply once.
func (s *Server) ensureRequestID(id *string) {
	if *id == "" {
		*id = s.newID()
	}
}
