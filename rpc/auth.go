package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/berth-dev/berth/acl"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// caller is who made a request and what the table says of its method,
// decided once by Authorize and carried in the request's context.
type caller struct {
	// token is the caller's ACL token; nil without one (or with ACLs off).
	token *v1.ACLToken
	// secret is the token secret the request carried, forwarded to the
	// leader so that it checks the request again.
	secret string
	// certName is the common name of the client certificate, if any.
	certName  string
	procedure string
	rule      acl.Rule
	// msg is the request message (its request_id is filled in later).
	msg proto.Message
	// retried is set when the write turns out to be a retry of one
	// applied before (same request id): it was audited then.
	retried bool
}

type callerKey struct{}

func callerFrom(ctx context.Context) *caller {
	c, _ := ctx.Value(callerKey{}).(*caller)
	return c
}

// name is the caller's name in the audit log: the token's accessor, else
// the client certificate's common name, else "anonymous".
func (c *caller) name() string {
	switch {
	case c.token != nil:
		return c.token.GetAccessorId()
	case c.certName != "":
		return c.certName
	}
	return acl.Anonymous
}

func certName(ctx context.Context) string {
	st, _ := ctx.Value(tlsStateKey{}).(*tls.ConnectionState)
	if st == nil || len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].Subject.CommonName
}

// Authorize checks one call of procedure (a Connect procedure name from
// acl.Table) with request msg and headers hdr against the ACL table, and
// returns the context the call must run with. Every Connect call goes
// through it (the interceptor); an HTTP route that maps to a Connect method
// (the Marathon REST API) calls it with that method's procedure and
// request, using the HTTP request's context (so that the client
// certificate is seen). Errors are Connect errors: Unauthenticated,
// PermissionDenied.
func (s *Server) Authorize(ctx context.Context, hdr http.Header, procedure string, msg proto.Message) (context.Context, error) {
	rule, ok := acl.Table[procedure]
	if !ok {
		rule, ok = acl.Routes[procedure]
	}
	if !ok {
		// A method without a row is refused, ACLs on or off: the table
		// test makes sure none ships.
		return ctx, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s has no entry in the ACL table", procedure))
	}
	c := &caller{certName: certName(ctx), procedure: procedure, rule: rule, msg: msg}
	if s.cfg.ACLEnabled {
		c.secret = acl.SecretFromHeader(hdr)
		st := s.store().Snapshot()
		if c.secret != "" {
			tok, err := st.ACLTokenBySecretHash(acl.HashSecret(c.secret))
			if err == nil && tok == nil && s.forwardedIndex.Load() > st.Index() {
				// A token created through this server may not be
				// applied here yet (a write does not wait for that).
				if werr := s.waitApplied(ctx, 0, true); werr != nil {
					return ctx, werr
				}
				st = s.store().Snapshot()
				tok, err = st.ACLTokenBySecretHash(acl.HashSecret(c.secret))
			}
			if err != nil {
				return ctx, stateError(err)
			}
			if tok == nil {
				return ctx, connect.NewError(connect.CodeUnauthenticated, acl.ErrUnknownToken)
			}
			c.token = tok
		}
		var apps []string
		if c.token.GetAppPrefix() != "" {
			var err error
			if apps, err = requestApps(st, rule, msg); err != nil {
				return ctx, err
			}
		}
		if err := acl.Authorize(c.token, procedure, rule, apps); err != nil {
			return ctx, err
		}
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

// errUnknownApp: a task or deployment whose app cannot be told, for a
// token limited to an app prefix.
var errUnknownApp = errors.New("unknown")

// requestApps returns the apps a request names, as its rule says.
func requestApps(st *fsm.Snapshot, rule acl.Rule, msg proto.Message) ([]string, error) {
	var apps []string
	for _, f := range rule.Fields {
		id := acl.FieldValue(msg, f.Path)
		if id == "" {
			continue
		}
		switch f.Kind {
		case acl.AppID:
			apps = append(apps, id)
		case acl.TaskID:
			inst, err := st.Instance(id)
			if err == nil && inst == nil {
				inst, err = st.InstanceByTaskID(id)
			}
			if err != nil {
				return nil, stateError(err)
			}
			if inst == nil {
				return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s: the app of task %s is %w", f.Path, id, errUnknownApp))
			}
			apps = append(apps, inst.GetAppId())
		case acl.DeploymentID:
			d, err := st.Deployment(id)
			if err != nil {
				return nil, stateError(err)
			}
			if d == nil {
				return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s: the apps of deployment %s are %w", f.Path, id, errUnknownApp))
			}
			apps = append(apps, d.GetAffectedApps()...)
		case acl.BackupID:
			b, err := st.Backup(id)
			if err != nil {
				return nil, stateError(err)
			}
			if b == nil {
				return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s: the app of backup %s is %w", f.Path, id, errUnknownApp))
			}
			apps = append(apps, b.GetAppId())
		}
	}
	return apps, nil
}

// shown is what a caller may see of a response or stream message: without
// the apps outside its token's prefix, and with env values redacted for a
// token weaker than write. nil: nothing (an event of another app).
func (s *Server) shown(c *caller, msg proto.Message) proto.Message {
	if c == nil || !s.cfg.ACLEnabled {
		return msg
	}
	if c.rule.Filtered {
		if msg = acl.FilterApps(c.token, msg); msg == nil {
			return nil
		}
	}
	if !acl.SeesEnv(true, c.token) {
		msg = acl.RedactEnv(msg)
	}
	return msg
}

// Visible returns what the caller of ctx (a context returned by
// Authorize) may see of a response or stream message msg: apps outside
// its token's prefix dropped, env values redacted for a token weaker than
// write; nil when it may see nothing of it. An HTTP route that calls
// Authorize answers with Visible(ctx, res). msg is not changed.
func (s *Server) Visible(ctx context.Context, msg proto.Message) proto.Message {
	return s.shown(callerFrom(ctx), msg)
}

// authInterceptor checks every call against the ACL table (Authorize) and
// trims what the caller may not see from responses.
type authInterceptor struct{ s *Server }

func (a authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		msg, _ := req.Any().(proto.Message)
		ctx, err := a.s.Authorize(ctx, req.Header(), req.Spec().Procedure, msg)
		if err != nil {
			return nil, err
		}
		res, err := next(ctx, req)
		if err != nil || res == nil {
			return res, err
		}
		if out, ok := res.Any().(proto.Message); ok {
			if shown := a.s.shown(callerFrom(ctx), out); shown != out {
				// The response message is the handler's own; what it
				// points to may be shared with the store, so it is
				// replaced, never edited.
				proto.Reset(out)
				if shown != nil {
					proto.Merge(out, shown)
				}
			}
		}
		return res, nil
	}
}

func (a authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		procedure := conn.Spec().Procedure
		sc := &shownConn{StreamingHandlerConn: conn, s: a.s}
		var first proto.Message
		if rule, ok := acl.Table[procedure]; ok && len(rule.Fields) > 0 {
			// The rule reads the request: receive it here (a server
			// stream has exactly one) and hand it to the handler again.
			var err error
			if first, err = requestMessage(conn.Spec()); err != nil {
				return err
			}
			if err := conn.Receive(first); err != nil {
				return err
			}
			sc.first = first
		}
		ctx, err := a.s.Authorize(ctx, conn.RequestHeader(), procedure, first)
		if err != nil {
			return err
		}
		sc.caller = callerFrom(ctx)
		return next(ctx, sc)
	}
}

// requestMessage returns an empty request message of a stream's method.
func requestMessage(spec connect.Spec) (proto.Message, error) {
	md, ok := spec.Schema.(protoreflect.MethodDescriptor)
	if !ok || spec.StreamType != connect.StreamTypeServer {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("%s: the ACL rule reads the request, which only a server stream with a schema allows", spec.Procedure))
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("%s: request type: %w", spec.Procedure, err))
	}
	return mt.New().Interface(), nil
}

// shownConn is a server stream whose messages are trimmed by Server.shown,
// and whose request, when the interceptor has read it already (first),
// is handed to the handler again.
type shownConn struct {
	connect.StreamingHandlerConn
	s      *Server
	caller *caller
	first  proto.Message
}

func (c *shownConn) Receive(m any) error {
	if c.first == nil {
		return c.StreamingHandlerConn.Receive(m)
	}
	dst, ok := m.(proto.Message)
	if !ok {
		return connect.NewError(connect.CodeInternal, fmt.Errorf("stream request %T is not a proto message", m))
	}
	proto.Merge(dst, c.first)
	c.first = nil
	return nil
}

func (c *shownConn) Send(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return c.StreamingHandlerConn.Send(m)
	}
	shown := c.s.shown(c.caller, msg)
	if shown == nil {
		return nil
	}
	return c.StreamingHandlerConn.Send(shown)
}

// markRetried records that the request of ctx is a retry of a write
// applied before, so that it is not audited twice.
func markRetried(ctx context.Context) {
	if c := callerFrom(ctx); c != nil {
		c.retried = true
	}
}

// audit logs an accepted write once, on the leader that applied it: who
// (token accessor, certificate name or anonymous), the method, the apps
// and the request id.
func (s *Server) audit(ctx context.Context) {
	c := callerFrom(ctx)
	if c == nil || !c.rule.Write || c.retried {
		return
	}
	var apps []string
	if c.msg != nil {
		var err error
		if apps, err = requestApps(s.store().Snapshot(), c.rule, c.msg); err != nil {
			apps = nil // a deleted app's task: the request names it anyway
		}
	}
	attrs := []any{"accessor", c.name(), "method", c.procedure, "apps", apps}
	if c.certName != "" {
		attrs = append(attrs, "cert", c.certName)
	}
	if c.msg != nil {
		attrs = append(attrs, "request_id", acl.FieldValue(c.msg, "request_id"))
	}
	s.log.Info("audit", attrs...)
}

// forwarded builds the request sent to the leader on behalf of a client:
// marked as forwarded, with the client's token, which the leader checks
// again.
func forwarded[T any](ctx context.Context, msg *T) *connect.Request[T] {
	req := connect.NewRequest(msg)
	markForwardedRequest(ctx, req.Header())
	return req
}

// markForwardedRequest sets the headers of a request forwarded to the
// leader (forwarded's, for a client stream's request headers).
func markForwardedRequest(ctx context.Context, h http.Header) {
	h.Set(forwardedHeader, "1")
	if c := callerFrom(ctx); c != nil && c.secret != "" {
		h.Set("Authorization", "Bearer "+c.secret)
	}
}
