package rpc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"connectrpc.com/connect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// Keyring is one server's gossip keyring (cluster.Node through
// clusteradapter.Keyring).
type Keyring interface {
	// Name is this server's node name.
	Name() string
	// GossipKeys lists the installed keys (base64) and the primary one.
	GossipKeys() (keys []string, primary string, err error)
	// ChangeGossipKeyring applies "install", "use" or "remove" with a
	// base64 key and persists the keyring.
	ChangeGossipKeyring(op, key string) error
}

// keyringService applies keyring operations on every server: locally, then
// through each other alive server's API with the forwarded header, which
// makes the receiver apply it on itself alone (and which only a server
// identity may send). Consul does the same with serf queries.
type keyringService struct{ *Server }

func (k *keyringService) ListKeys(ctx context.Context, req *connect.Request[v1.ListKeysRequest]) (*connect.Response[v1.KeyringResponse], error) {
	return k.fanOut(ctx, req.Header(), nil, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.KeyringResponse], error) {
		return pc.keyring.ListKeys(ctx, forwarded(ctx, &v1.ListKeysRequest{}))
	})
}

func (k *keyringService) InstallKey(ctx context.Context, req *connect.Request[v1.KeyringKeyRequest]) (*connect.Response[v1.KeyringResponse], error) {
	return k.change(ctx, req, "install", berthv1connect.KeyringServiceClient.InstallKey)
}

func (k *keyringService) UseKey(ctx context.Context, req *connect.Request[v1.KeyringKeyRequest]) (*connect.Response[v1.KeyringResponse], error) {
	return k.change(ctx, req, "use", berthv1connect.KeyringServiceClient.UseKey)
}

func (k *keyringService) RemoveKey(ctx context.Context, req *connect.Request[v1.KeyringKeyRequest]) (*connect.Response[v1.KeyringResponse], error) {
	return k.change(ctx, req, "remove", berthv1connect.KeyringServiceClient.RemoveKey)
}

func (k *keyringService) change(ctx context.Context, req *connect.Request[v1.KeyringKeyRequest], op string,
	call func(berthv1connect.KeyringServiceClient, context.Context, *connect.Request[v1.KeyringKeyRequest]) (*connect.Response[v1.KeyringResponse], error),
) (*connect.Response[v1.KeyringResponse], error) {
	key := strings.TrimSpace(req.Msg.GetKey())
	if key == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("key: must be set (base64, as `berth cluster keygen` prints it)"))
	}
	return k.fanOut(ctx, req.Header(), func() error { return k.cfg.Keyring.ChangeGossipKeyring(op, key) },
		func(ctx context.Context, pc *peerClients) (*connect.Response[v1.KeyringResponse], error) {
			return call(pc.keyring, ctx, forwarded(ctx, &v1.KeyringKeyRequest{Key: key}))
		})
}

// fanOut runs change (nil for a read) on this server and, unless the
// request was forwarded by another server, on every other server alive in
// gossip; each server's keyring or error is reported.
func (k *keyringService) fanOut(ctx context.Context, hdr http.Header, change func() error,
	remote func(context.Context, *peerClients) (*connect.Response[v1.KeyringResponse], error),
) (*connect.Response[v1.KeyringResponse], error) {
	kr := k.cfg.Keyring
	if kr == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("this server has no gossip keyring"))
	}
	self := kr.Name()
	local := &v1.ServerKeyring{Node: self}
	if change != nil {
		if err := change(); err != nil {
			local.Error = err.Error()
		}
	}
	keys, primary, err := kr.GossipKeys()
	if err != nil && local.Error == "" {
		local.Error = err.Error()
	}
	local.Keys, local.PrimaryKey = keys, primary
	res := &v1.KeyringResponse{Servers: []*v1.ServerKeyring{local}}
	if hdr.Get(forwardedHeader) != "" {
		return connect.NewResponse(res), nil
	}

	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range k.clu.Members() {
		if m.Name == self {
			local.ApiAddr = m.APIAddr
			continue
		}
		entry := &v1.ServerKeyring{Node: m.Name, ApiAddr: m.APIAddr}
		res.Servers = append(res.Servers, entry)
		if m.Status != "alive" || m.APIAddr == "" {
			entry.Error = fmt.Sprintf("not reached: the server is %s in gossip", m.Status)
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, k.cfg.ForwardTimeout)
			defer cancel()
			r, err := remote(cctx, k.peer(m.APIAddr))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				entry.Error = err.Error()
			case len(r.Msg.GetServers()) != 1:
				entry.Error = fmt.Sprintf("answered with %d keyrings, want 1", len(r.Msg.GetServers()))
			default:
				got := r.Msg.GetServers()[0]
				entry.Keys, entry.PrimaryKey, entry.Error = got.GetKeys(), got.GetPrimaryKey(), got.GetError()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(res.Servers, func(a, b *v1.ServerKeyring) int { return strings.Compare(a.Node, b.Node) })
	return connect.NewResponse(res), nil
}
