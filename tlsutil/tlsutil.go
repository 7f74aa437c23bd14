// Package tlsutil holds Berth's transport-security helpers: a holder of the
// CA, certificate and key files that reloads them without a restart (on
// SIGHUP), tls.Configs for the API, server-to-server calls and the Raft
// transport built on that holder, and the server identity that only
// servers' certificates carry.
//
// Server identity. As Nomad's server.global.nomad, a Berth server's
// certificate carries the DNS name server.<cluster>.<domain> in its
// subject alternative names (default server.global.berth). Only a peer
// presenting a certificate signed by the cluster CA with that name may
// connect to the Raft transport or make server-only API calls (forwarded
// requests). Client certificates (for the CLI) carry
// client.<cluster>.<domain> instead.
package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
)

// Defaults of the server identity's parts.
const (
	DefaultClusterName = "global"
	DefaultDomain      = "berth"
)

// ServerName is the identity a server certificate carries in its DNS SANs.
func ServerName(cluster, domain string) string { return "server." + cluster + "." + domain }

// ClientName is the DNS SAN of a client (CLI) certificate.
func ClientName(cluster, domain string) string { return "client." + cluster + "." + domain }

// Files names the PEM files of one side of a TLS connection.
type Files struct {
	// CAFile holds the CA certificate(s) peers' certificates must chain to.
	CAFile string
	// CertFile and KeyFile hold this side's certificate (chain) and key.
	// Both or neither.
	CertFile string
	KeyFile  string
	// RequireName, if set, is a DNS SAN the certificate must carry (a
	// server's identity); a load or reload without it fails.
	RequireName string
}

// Validate checks that the set of files given is complete; errors name
// the flags.
func (f Files) Validate() error {
	var errs []error
	if f.CAFile == "" && (f.CertFile != "" || f.KeyFile != "") {
		errs = append(errs, errors.New("--tls-ca-file: must be set with --tls-cert-file and --tls-key-file"))
	}
	if (f.CertFile == "") != (f.KeyFile == "") {
		errs = append(errs, errors.New("--tls-cert-file and --tls-key-file: give both or neither"))
	}
	return errors.Join(errs...)
}

// material is one consistent load of the files.
type material struct {
	pool *x509.CertPool
	cert *tls.Certificate // nil without CertFile
}

// Holder holds the CA pool and this side's certificate, loaded from Files,
// and swaps them atomically on Reload. Configs built from it read the
// current material on every handshake, so a reload affects new
// connections at once and never those already established.
type Holder struct {
	files Files
	mu    sync.RWMutex
	cur   material
}

// NewHolder loads files (CAFile is required).
func NewHolder(files Files) (*Holder, error) {
	if files.CAFile == "" {
		return nil, errors.New("tls: a CA file is required")
	}
	if err := files.Validate(); err != nil {
		return nil, err
	}
	m, err := load(files)
	if err != nil {
		return nil, err
	}
	return &Holder{files: files, cur: m}, nil
}

func load(f Files) (material, error) {
	pem, err := os.ReadFile(f.CAFile)
	if err != nil {
		return material{}, fmt.Errorf("tls CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return material{}, fmt.Errorf("tls CA file %s: no PEM certificate found", f.CAFile)
	}
	m := material{pool: pool}
	if f.CertFile != "" {
		c, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return material{}, fmt.Errorf("tls certificate %s with key %s: %w", f.CertFile, f.KeyFile, err)
		}
		if c.Leaf == nil {
			if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return material{}, fmt.Errorf("tls certificate %s: %w", f.CertFile, err)
			}
		}
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return material{}, fmt.Errorf("tls certificate %s is not signed by the CA in %s: %w", f.CertFile, f.CAFile, err)
		}
		if f.RequireName != "" && !HasName(c.Leaf, f.RequireName) {
			return material{}, fmt.Errorf("tls certificate %s does not carry the identity %s in its DNS names (%s)", f.CertFile, f.RequireName, strings.Join(c.Leaf.DNSNames, ", "))
		}
		m.cert = &c
	}
	return m, nil
}

// Reload reads the files again. On any error the previous material stays
// in use and the error says why.
func (h *Holder) Reload() error {
	m, err := load(h.files)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.cur = m
	h.mu.Unlock()
	return nil
}

func (h *Holder) current() material {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cur
}

// Leaf is the current certificate, or nil when there is none.
func (h *Holder) Leaf() *x509.Certificate {
	if c := h.current().cert; c != nil {
		return c.Leaf
	}
	return nil
}

// HasName reports whether cert carries name among its DNS SANs.
func HasName(cert *x509.Certificate, name string) bool {
	return cert != nil && slices.Contains(cert.DNSNames, name)
}

// ServerOptions shape a server-side config.
type ServerOptions struct {
	// VerifyClient requires every client to present a certificate signed
	// by the CA. Without it a certificate is verified when given.
	VerifyClient bool
	// RequireName, when set, refuses clients whose certificate lacks this
	// DNS SAN (the Raft transport requires the server identity).
	RequireName string
	// NextProtos are the ALPN protocols offered (h2, http/1.1 for the API).
	NextProtos []string
}

// ServerConfig returns a config for accepting connections that uses the
// material current at each handshake.
func (h *Holder) ServerConfig(o ServerOptions) *tls.Config {
	perConn := func() (*tls.Config, error) {
		m := h.current()
		if m.cert == nil {
			return nil, errors.New("tls: no certificate configured for serving")
		}
		c := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*m.cert},
			ClientCAs:    m.pool,
			ClientAuth:   tls.VerifyClientCertIfGiven,
			NextProtos:   o.NextProtos,
		}
		if o.VerifyClient || o.RequireName != "" {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
		if o.RequireName != "" {
			name := o.RequireName
			c.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || !HasName(cs.PeerCertificates[0], name) {
					return fmt.Errorf("tls: peer certificate does not carry the server identity %s", name)
				}
				return nil
			}
		}
		return c, nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: o.NextProtos,
		// Set so that http.Server.ServeTLS sees a certificate source; the
		// per-connection config below is the one used.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := perConn()
			if err != nil {
				return nil, err
			}
			return &c.Certificates[0], nil
		},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return perConn() },
	}
}

// ClientConfig returns a config for dialing that presents the current
// certificate (if any) and verifies the server's chain against the current
// CA pool. With requireName set, the server must carry that DNS SAN (the
// server identity) and its host name is not checked (servers dial each
// other by IP); otherwise the host name dialed is verified as usual.
func (h *Holder) ClientConfig(requireName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := h.current().cert; c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil
		},
		// Verification is done below against the pool current at this
		// handshake (RootCAs would freeze the pool).
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, h.current().pool, requireName)
		},
	}
}

func verifyServer(cs tls.ConnectionState, pool *x509.CertPool, requireName string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: server presented no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         pool,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if requireName == "" {
		opts.DNSName = cs.ServerName
	}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("tls: verify server certificate: %w", err)
	}
	if requireName != "" && !HasName(leaf, requireName) {
		return fmt.Errorf("tls: server certificate does not carry the server identity %s", requireName)
	}
	return nil
}
