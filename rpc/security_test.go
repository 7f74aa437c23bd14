package rpc_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/cluster"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
	"github.com/berth-dev/berth/rpc"
	"github.com/berth-dev/berth/rpc/clusteradapter"
	"github.com/berth-dev/berth/tlsutil"
)

// tlsFiles writes a CA plus a server and a client certificate.
func tlsFiles(t *testing.T) (server, client tlsutil.Files) {
	t.Helper()
	dir := t.TempDir()
	ca, err := tlsutil.GenerateCA(tlsutil.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", ca.Cert)
	for _, k := range []struct {
		server bool
		files  *tlsutil.Files
	}{{true, &server}, {false, &client}} {
		pair, err := tlsutil.GenerateCert(ca, tlsutil.CertOptions{Server: k.server})
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprint(k.server)
		*k.files = tlsutil.Files{CAFile: caFile, CertFile: write(name+".pem", pair.Cert), KeyFile: write(name+"-key.pem", pair.Key)}
	}
	return server, client
}

type tlsServer struct {
	name string
	node *cluster.Node
	addr string
}

// startTLSServers starts n in-memory servers whose APIs serve mutual TLS
// (client certificates required) and forward to each other with the
// server certificate, gossip being encrypted.
func startTLSServers(t *testing.T, n int, files tlsutil.Files) []*tlsServer {
	t.Helper()
	holder, err := tlsutil.NewHolder(files)
	if err != nil {
		t.Fatal(err)
	}
	id := tlsutil.ServerName(tlsutil.DefaultClusterName, tlsutil.DefaultDomain)
	key := make([]byte, 32)
	network := cluster.NewInmemNetwork()
	var out []*tlsServer
	for i := range n {
		name := fmt.Sprintf("s%d", i)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		log := testLogger(t).With("node", name)
		f := fsm.New(log)
		cfg := cluster.Config{
			NodeName: name, InMemory: true, Network: network, APIAddr: lis.Addr().String(),
			BootstrapExpect: n, FSM: f, Logger: log, Version: "test", GossipKey: key,
			GossipInterval: 50 * time.Millisecond, ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
			ReconcileInterval: 100 * time.Millisecond, RetryJoinInterval: 200 * time.Millisecond,
		}
		if i > 0 {
			cfg.Join = []string{out[0].node.GossipAddr()}
		}
		node, err := cluster.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := node.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{TLSClientConfig: holder.ClientConfig(id)}
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
		tr.Protocols.SetHTTP2(true)
		api := rpc.NewServer(rpc.Config{
			Store: f.State, Cluster: clusteradapter.New(node), Logger: log,
			TLS:        holder.ServerConfig(tlsutil.ServerOptions{VerifyClient: true, NextProtos: []string{"h2", "http/1.1"}}),
			HTTPClient: &http.Client{Transport: tr},
			ServerName: id,
			Keyring:    clusteradapter.Keyring{Node: node},
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- api.Serve(ctx, lis) }()
		t.Cleanup(func() {
			cancel()
			<-done
			_ = node.Close()
		})
		out = append(out, &tlsServer{name: name, node: node, addr: lis.Addr().String()})
	}
	waitFor(t, 30*time.Second, "a leader known to every server", func() error {
		for _, s := range out {
			if _, _, api := s.node.Leader(); api == "" {
				return fmt.Errorf("%s knows no leader", s.name)
			}
		}
		return nil
	})
	return out
}

// clientOf returns an HTTP/2 client presenting files' certificate (none
// when CertFile is empty).
func clientOf(t *testing.T, files tlsutil.Files) *http.Client {
	t.Helper()
	h, err := tlsutil.NewHolder(files)
	if err != nil {
		t.Fatal(err)
	}
	c := h.ClientConfig("")
	tr := &http.Transport{TLSClientConfig: c}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP2(true)
	return &http.Client{Transport: tr}
}

// TestMutualTLSAPI: over mutual TLS a client certificate writes through a
// follower (forwarded with the server certificate); the Berth-Forwarded
// header is refused from anyone but a server identity, on unary and
// streaming methods; a client without a certificate is refused; keyring
// changes reach every server.
func TestMutualTLSAPI(t *testing.T) {
	serverFiles, clientFiles := tlsFiles(t)
	servers := startTLSServers(t, 2, serverFiles)
	var follower *tlsServer
	for _, s := range servers {
		if !s.node.IsLeader() {
			follower = s
		}
	}
	url := "https://" + follower.addr
	asClient := clientOf(t, clientFiles)
	asServer := clientOf(t, serverFiles)
	ctx := ctxFor(t, time.Minute)

	apps := berthv1connect.NewAppServiceClient(asClient, url)
	app := mustApp(t, `{"id": "/tls/a", "instances": 0, "cmd": "sleep 1", "cpus": 0.1, "mem": 16}`)
	if _, err := apps.CreateApp(ctx, connect.NewRequest(&v1.CreateAppRequest{App: app})); err != nil {
		t.Fatalf("create through a follower with a client certificate: %v", err)
	}

	del := connect.NewRequest(&v1.DeleteAppRequest{Id: "/tls/a", Force: true})
	del.Header().Set("Berth-Forwarded", "1")
	_, err := apps.DeleteApp(ctx, del)
	wantCode(t, err, connect.CodePermissionDenied)
	events := berthv1connect.NewEventServiceClient(asClient, url)
	sreq := connect.NewRequest(&v1.StreamEventsRequest{})
	sreq.Header().Set("Berth-Forwarded", "1")
	stream, err := events.StreamEvents(ctx, sreq)
	if err == nil {
		for stream.Receive() {
			t.Fatal("a forwarded event stream was served to a client certificate")
		}
		err = stream.Err()
	}
	wantCode(t, err, connect.CodePermissionDenied)
	if _, err := apps.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: "/tls/a"})); err != nil {
		t.Fatalf("the app is gone after a refused forwarded delete: %v", err)
	}

	// The server identity is honoured: a follower does not forward again.
	srvApps := berthv1connect.NewAppServiceClient(asServer, url)
	del = connect.NewRequest(&v1.DeleteAppRequest{Id: "/tls/a", Force: true})
	del.Header().Set("Berth-Forwarded", "1")
	_, err = srvApps.DeleteApp(ctx, del)
	wantCode(t, err, connect.CodeUnavailable)

	// No client certificate: the handshake fails.
	anon := berthv1connect.NewAppServiceClient(clientOf(t, tlsutil.Files{CAFile: clientFiles.CAFile}), url)
	if _, err := anon.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{})); err == nil {
		t.Fatal("a client without a certificate was served")
	}

	// Keyring: install through the follower reaches both servers.
	newKey, err := cluster.GenerateGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	kr := berthv1connect.NewKeyringServiceClient(asClient, url)
	res, err := kr.InstallKey(ctx, connect.NewRequest(&v1.KeyringKeyRequest{Key: newKey}))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Msg.GetServers()) != 2 {
		t.Fatalf("install answered for %d servers, want 2: %v", len(res.Msg.GetServers()), res.Msg)
	}
	for _, s := range res.Msg.GetServers() {
		if s.GetError() != "" || len(s.GetKeys()) != 2 {
			t.Fatalf("install on %s: error %q, keys %v", s.GetNode(), s.GetError(), s.GetKeys())
		}
	}
	// A forwarded keyring request from a client is refused, not applied
	// locally.
	kreq := connect.NewRequest(&v1.KeyringKeyRequest{Key: newKey})
	kreq.Header().Set("Berth-Forwarded", "1")
	_, err = kr.UseKey(ctx, kreq)
	wantCode(t, err, connect.CodePermissionDenied)
	_, err = kr.InstallKey(ctx, connect.NewRequest(&v1.KeyringKeyRequest{}))
	wantCode(t, err, connect.CodeInvalidArgument)
	res, err = kr.RemoveKey(ctx, connect.NewRequest(&v1.KeyringKeyRequest{Key: newKey}))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Msg.GetServers() {
		if s.GetError() != "" || len(s.GetKeys()) != 1 {
			t.Fatalf("remove on %s: error %q, keys %v", s.GetNode(), s.GetError(), s.GetKeys())
		}
	}
}
