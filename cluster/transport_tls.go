package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// RaftTLS secures the Raft transport with mutual TLS. Server is used to
// accept connections and must require a client certificate carrying the
// server identity; Client is used to dial other servers and must verify
// theirs (tlsutil.Holder's ServerConfig with RequireName and ClientConfig
// build both, reloadable).
type RaftTLS struct {
	Server *tls.Config
	Client *tls.Config
}

// handshakeTimeout bounds a Raft TLS handshake, so that a peer that
// connects and says nothing holds no goroutine for long.
const handshakeTimeout = 10 * time.Second

// tlsStreamLayer is a raft.StreamLayer over mutual TLS.
type tlsStreamLayer struct {
	lis       net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	log       *slog.Logger
}

// newTLSStreamLayer listens on bind; advertise (may be nil) is the address
// other servers dial.
func newTLSStreamLayer(bind string, advertise net.Addr, t *RaftTLS, log *slog.Logger) (*tlsStreamLayer, error) {
	if t.Server == nil || t.Client == nil {
		return nil, errors.New("RaftTLS: Server and Client configs are both required")
	}
	lis, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise == nil {
		advertise = lis.Addr()
	}
	if a, ok := advertise.(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		lis.Close()
		return nil, fmt.Errorf("RaftBind %q: set RaftAdvertise to an address other servers can dial", bind)
	}
	return &tlsStreamLayer{lis: lis, advertise: advertise, server: t.Server, client: t.Client, log: log}, nil
}

// Accept returns the next connection; its TLS handshake runs on first use
// (in raft's per-connection goroutine), so a slow peer never blocks the
// accept loop. A peer refused by the handshake is logged.
func (l *tlsStreamLayer) Accept() (net.Conn, error) {
	c, err := l.lis.Accept()
	if err != nil {
		return nil, err
	}
	return &serverConn{Conn: tls.Server(c, l.server), log: l.log}, nil
}

func (l *tlsStreamLayer) Close() error   { return l.lis.Close() }
func (l *tlsStreamLayer) Addr() net.Addr { return l.advertise }

// Dial connects to another server and completes the handshake, which
// verifies that it carries the server identity.
func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: l.client}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raft tls dial %s: %w", address, err)
	}
	return c, nil
}

// serverConn is an accepted Raft connection that completes its handshake,
// bounded by handshakeTimeout, before the first read or write.
type serverConn struct {
	*tls.Conn
	log  *slog.Logger
	once sync.Once
	err  error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		if err := c.HandshakeContext(ctx); err != nil {
			c.err = fmt.Errorf("raft tls handshake: %w", err)
			c.log.Warn("refused a raft connection", "remote", c.RemoteAddr().String(), "err", err)
			c.Conn.Close()
		}
	})
	return c.err
}

func (c *serverConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// verifyRaftPeer checks, with mutual TLS on, that the Raft port at addr
// presents a certificate with the server identity (the handshake verifies
// it), before the leader puts that server in the Raft configuration. A
// member of the gossip pool with a client certificate would otherwise be
// added and count as a voter that never answers.
func (n *Node) verifyRaftPeer(addr string) error {
	layer, ok := n.streamLayer()
	if !ok {
		return nil
	}
	c, err := layer.Dial(raft.ServerAddress(addr), 5*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func (n *Node) streamLayer() (*tlsStreamLayer, bool) {
	l, ok := n.raftStream.(*tlsStreamLayer)
	return l, ok && l != nil
}
