package rpc

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/acl"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

type aclService struct{ *Server }

// errACLDisabled answers ACL methods on a server without --acl-enabled.
var errACLDisabled = connect.NewError(connect.CodeFailedPrecondition, errors.New("ACLs are not enabled on this server (start it with --acl-enabled)"))

// accessorNamespace derives accessor ids from request ids, so that a retry
// of a token create names the token the first attempt created.
var accessorNamespace = uuid.MustParse("0c1f4a3e-2b1d-4e0a-9c7e-7d4f2a1b9e55")

// Bootstrap creates the first management token, once per cluster.
func (a *aclService) Bootstrap(ctx context.Context, req *connect.Request[v1.BootstrapRequest]) (*connect.Response[v1.BootstrapResponse], error) {
	if !a.cfg.ACLEnabled {
		return nil, errACLDisabled
	}
	msg := req.Msg
	return onLeaderWrite(ctx, a.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.BootstrapResponse], error) {
		done, err := a.store().Snapshot().ACLBootstrapped()
		if err != nil {
			return nil, stateError(err)
		}
		if done {
			return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("ACLs are already bootstrapped"))
		}
		tok, secret, err := a.createToken(ctx, msg.RequestId, &v1.ACLToken{
			Policy: v1.ACLPolicy_ACL_POLICY_MANAGEMENT, Description: "bootstrap token",
		}, true)
		if connect.CodeOf(err) == connect.CodeAborted {
			// Another bootstrap won the race.
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("ACLs are already bootstrapped: %w", err))
		}
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&v1.BootstrapResponse{Token: tok, SecretId: secret}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.BootstrapResponse], error) {
		return pc.acl.Bootstrap(ctx, forwarded(ctx, msg))
	})
}

// CreateToken creates a token with a policy and an optional app prefix.
func (a *aclService) CreateToken(ctx context.Context, req *connect.Request[v1.CreateTokenRequest]) (*connect.Response[v1.CreateTokenResponse], error) {
	if !a.cfg.ACLEnabled {
		return nil, errACLDisabled
	}
	msg := req.Msg
	if msg.Policy == v1.ACLPolicy_ACL_POLICY_UNSPECIFIED || v1.ACLPolicy_name[int32(msg.Policy)] == "" {
		return nil, invalid("policy", "must be read, write, operator or management")
	}
	if err := acl.CheckAppPrefix(msg.AppPrefix); err != nil {
		return nil, invalid("app_prefix", err.Error())
	}
	if msg.AppPrefix != "" && msg.Policy > v1.ACLPolicy_ACL_POLICY_WRITE {
		return nil, invalid("app_prefix", "only read and write tokens can be limited to an app prefix")
	}
	if len(msg.Description) > 256 {
		return nil, invalid("description", "must be at most 256 bytes")
	}
	return onLeaderWrite(ctx, a.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.CreateTokenResponse], error) {
		tok, secret, err := a.createToken(ctx, msg.RequestId, &v1.ACLToken{
			Policy: msg.Policy, AppPrefix: msg.AppPrefix, Description: msg.Description,
		}, false)
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&v1.CreateTokenResponse{Token: tok, SecretId: secret}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.CreateTokenResponse], error) {
		return pc.acl.CreateToken(ctx, forwarded(ctx, msg))
	})
}

// createToken commits a new token with a fresh secret (on the leader) and
// returns it without its hash, and the secret.
func (a *aclService) createToken(ctx context.Context, requestID string, tok *v1.ACLToken, bootstrap bool) (*v1.ACLToken, string, error) {
	secret, hash := acl.NewSecret()
	tok.AccessorId = uuid.NewSHA1(accessorNamespace, []byte(requestID)).String()
	tok.SecretHash = hash
	tok.CreateTime = timestamppb.New(a.now())
	out, err := a.apply(ctx, v1.CommandType_COMMAND_TYPE_ACL_TOKEN_CREATE, &v1.ACLTokenCreateCommand{RequestId: requestID, Token: tok, Bootstrap: bootstrap})
	if err != nil {
		return nil, "", err
	}
	if out.Deduplicated {
		// The secret of the first attempt was never shown and cannot be
		// recovered.
		return nil, "", connect.NewError(connect.CodeAborted, fmt.Errorf(
			"an earlier attempt of request %s created token %s, whose secret is lost; delete it and create another", requestID, tok.AccessorId))
	}
	a.log.Info("ACL token created", "accessor", tok.AccessorId, "policy", acl.PolicyName(tok.Policy), "app_prefix", tok.AppPrefix)
	return withoutHash(tok), secret, nil
}

func withoutHash(tok *v1.ACLToken) *v1.ACLToken {
	tok = proto.Clone(tok).(*v1.ACLToken)
	tok.SecretHash = ""
	return tok
}

// ListTokens lists every token without its hash.
func (a *aclService) ListTokens(ctx context.Context, req *connect.Request[v1.ListTokensRequest]) (*connect.Response[v1.ListTokensResponse], error) {
	if !a.cfg.ACLEnabled {
		return nil, errACLDisabled
	}
	toks, err := a.store().Snapshot().ACLTokens()
	if err != nil {
		return nil, stateError(err)
	}
	res := &v1.ListTokensResponse{}
	for _, t := range toks {
		res.Tokens = append(res.Tokens, withoutHash(t))
	}
	return connect.NewResponse(res), nil
}

// DeleteToken deletes a token by accessor id.
func (a *aclService) DeleteToken(ctx context.Context, req *connect.Request[v1.DeleteTokenRequest]) (*connect.Response[v1.DeleteTokenResponse], error) {
	if !a.cfg.ACLEnabled {
		return nil, errACLDisabled
	}
	msg := req.Msg
	if msg.AccessorId == "" {
		return nil, invalid("accessor_id", "must not be empty")
	}
	return onLeaderWrite(ctx, a.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.DeleteTokenResponse], error) {
		if _, err := a.apply(ctx, v1.CommandType_COMMAND_TYPE_ACL_TOKEN_DELETE, &v1.ACLTokenDeleteCommand{RequestId: msg.RequestId, AccessorId: msg.AccessorId}); err != nil {
			return nil, err
		}
		a.log.Info("ACL token deleted", "accessor", msg.AccessorId)
		return connect.NewResponse(&v1.DeleteTokenResponse{}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.DeleteTokenResponse], error) {
		return pc.acl.DeleteToken(ctx, forwarded(ctx, msg))
	})
}

// TokenSelf describes the caller's token.
func (a *aclService) TokenSelf(ctx context.Context, req *connect.Request[v1.TokenSelfRequest]) (*connect.Response[v1.TokenSelfResponse], error) {
	if !a.cfg.ACLEnabled {
		return nil, errACLDisabled
	}
	c := callerFrom(ctx)
	if c == nil || c.token == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, acl.ErrNoToken)
	}
	return connect.NewResponse(&v1.TokenSelfResponse{Token: withoutHash(c.token)}), nil
}
