package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/tlsutil"
)

// tlsStateKey carries the request's TLS connection state in its context.
type tlsStateKey struct{}

// withTLSState makes the TLS state of each request visible to interceptors
// (Connect's Peer does not expose it).
func withTLSState(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			r = r.WithContext(context.WithValue(r.Context(), tlsStateKey{}, r.TLS))
		}
		next.ServeHTTP(w, r)
	})
}

// fromServer reports whether the caller is another Berth server: with TLS,
// its verified certificate carries the server identity; without TLS (a
// loopback or --insecure cluster) nothing can be told apart, so every
// caller is trusted as before.
func (s *Server) fromServer(ctx context.Context) bool {
	if s.cfg.TLS == nil {
		return true
	}
	st, _ := ctx.Value(tlsStateKey{}).(*tls.ConnectionState)
	if st == nil || len(st.VerifiedChains) == 0 {
		return false
	}
	return tlsutil.HasName(st.VerifiedChains[0][0], s.cfg.ServerName)
}

// errServerOnly is the refusal of a server-only request from a non-server.
func (s *Server) errServerOnly() error {
	return connect.NewError(connect.CodePermissionDenied,
		fmt.Errorf("the %s header is reserved to Berth servers: the client certificate must carry the server identity %s", forwardedHeader, s.cfg.ServerName))
}

// serverOnly is the one place where server-only requests are checked: a
// request marked as forwarded by another server (the Berth-Forwarded
// header changes how it is served: no further forwarding, keyring changes
// applied locally only) is refused unless the caller is a server.
func (s *Server) serverOnly() connect.Interceptor { return serverOnlyInterceptor{s} }

type serverOnlyInterceptor struct{ s *Server }

func (i serverOnlyInterceptor) check(ctx context.Context, h http.Header) error {
	if h.Get(forwardedHeader) != "" && !i.s.fromServer(ctx) {
		return i.s.errServerOnly()
	}
	return nil
}

func (i serverOnlyInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		if err := i.check(ctx, req.Header()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (i serverOnlyInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i serverOnlyInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := i.check(ctx, conn.RequestHeader()); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// errNoTLSForPeers: forwarding over TLS needs a client that presents this
// server's certificate.
var errNoTLSForPeers = errors.New("rpc.Config: TLS is set but HTTPClient is nil; give a client presenting this server's certificate")
