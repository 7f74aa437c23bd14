package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/cluster"
	"github.com/berth-dev/berth/tlsutil"
)

// securityOptions are the transport-security flags of `berth server`.
type securityOptions struct {
	tlsCAFile       string
	tlsCertFile     string
	tlsKeyFile      string
	tlsVerifyClient bool
	clusterName     string
	domain          string
	gossipKeyFile   string
	insecure        bool
	mesosCAFile     string
}

func (o *securityOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.tlsCAFile, "tls-ca-file", "", "CA certificate (PEM) that every server and client certificate must chain to; enables TLS on the API, forwarding and Raft")
	fs.StringVar(&o.tlsCertFile, "tls-cert-file", "", "this server's certificate (PEM); it must carry the server identity server.<cluster-name>.<domain> (`berth tls cert create --server`)")
	fs.StringVar(&o.tlsKeyFile, "tls-key-file", "", "this server's private key (PEM)")
	fs.BoolVar(&o.tlsVerifyClient, "tls-verify-client", false, "require and verify a client certificate signed by the CA on the API")
	fs.StringVar(&o.clusterName, "cluster-name", tlsutil.DefaultClusterName, "cluster name in the server identity server.<cluster-name>.<domain>")
	fs.StringVar(&o.domain, "domain", tlsutil.DefaultDomain, "domain in the server identity server.<cluster-name>.<domain>")
	fs.StringVar(&o.gossipKeyFile, "gossip-key-file", "", "file holding the base64 gossip encryption key (`berth cluster keygen`); seeds the keyring kept in the data dir")
	fs.BoolVar(&o.insecure, "insecure", false, "allow non-loopback addresses without TLS, client verification and a gossip key (anyone who reaches a port owns the cluster)")
}

func (o *securityOptions) registerMesos(fs *pflag.FlagSet) {
	fs.StringVar(&o.mesosCAFile, "mesos-ca-file", "", "CA certificate (PEM) to verify an https:// Mesos master with (default: the system's CAs)")
}

func (o *securityOptions) paths() map[string]*string {
	return map[string]*string{
		"--tls-ca-file": &o.tlsCAFile, "--tls-cert-file": &o.tlsCertFile, "--tls-key-file": &o.tlsKeyFile,
		"--gossip-key-file": &o.gossipKeyFile, "--mesos-ca-file": &o.mesosCAFile,
	}
}

// serverSecurity is what the flags resolve to at start-up.
type serverSecurity struct {
	holder     *tlsutil.Holder // nil without TLS
	serverName string
	gossipKey  []byte
	mesosTLS   *tls.Config
}

// tlsOn reports whether the API, forwarding and Raft use TLS.
func (s *serverSecurity) tlsOn() bool { return s.holder != nil }

// resolveSecurity loads the files the flags name, checks the server's own
// certificate, and refuses an exposed server that is not secured.
func resolveSecurity(o *securityOptions, addrs map[string]string, logger *slog.Logger) (*serverSecurity, error) {
	s := &serverSecurity{}
	files := tlsutil.Files{CAFile: o.tlsCAFile, CertFile: o.tlsCertFile, KeyFile: o.tlsKeyFile}
	if files != (tlsutil.Files{}) {
		if files.CertFile == "" || files.KeyFile == "" || files.CAFile == "" {
			return nil, errors.New("--tls-ca-file, --tls-cert-file and --tls-key-file: a server needs all three for TLS")
		}
		s.serverName = tlsutil.ServerName(o.clusterName, o.domain)
		files.RequireName = s.serverName
		h, err := tlsutil.NewHolder(files)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert-file: %w; a server needs `berth tls cert create --server --cluster-name %s --domain %s`", err, o.clusterName, o.domain)
		}
		s.holder = h
	} else if o.tlsVerifyClient {
		return nil, errors.New("--tls-verify-client: needs --tls-ca-file, --tls-cert-file and --tls-key-file")
	}
	if o.gossipKeyFile != "" {
		data, err := os.ReadFile(o.gossipKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--gossip-key-file: %w", err)
		}
		if s.gossipKey, err = cluster.DecodeGossipKey(string(data)); err != nil {
			return nil, fmt.Errorf("--gossip-key-file %s: %w", o.gossipKeyFile, err)
		}
	}
	if o.mesosCAFile != "" {
		pem, err := os.ReadFile(o.mesosCAFile)
		if err != nil {
			return nil, fmt.Errorf("--mesos-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--mesos-ca-file %s: no PEM certificate found", o.mesosCAFile)
		}
		s.mesosTLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}

	var exposed []string
	for flag, addr := range addrs {
		if !isLoopback(addr) {
			exposed = append(exposed, fmt.Sprintf("%s %s", flag, addr))
		}
	}
	slices.Sort(exposed)
	var missing []string
	if !s.tlsOn() {
		missing = append(missing, "TLS (--tls-ca-file, --tls-cert-file, --tls-key-file)")
	}
	if !o.tlsVerifyClient {
		missing = append(missing, "client verification (--tls-verify-client)")
	}
	if s.gossipKey == nil {
		missing = append(missing, "gossip encryption (--gossip-key-file)")
	}
	switch {
	case o.insecure && len(missing) > 0:
		logger.Warn("INSECURE: --insecure is set and this server runs without " + strings.Join(missing, ", ") +
			": anyone who reaches its API, Raft or gossip port can read and change the whole cluster")
	case len(exposed) > 0 && len(missing) > 0:
		return nil, fmt.Errorf("refusing to listen on %s without %s: secure the server (see README, \"A real cluster\") or pass --insecure",
			strings.Join(exposed, ", "), strings.Join(missing, ", "))
	}
	return s, nil
}

// isLoopback reports whether a host:port listens on loopback only (an
// empty host or 0.0.0.0 listens everywhere; a name other than localhost
// may resolve anywhere).
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// raftTLS is the Raft transport's TLS: only the server identity connects.
func (s *serverSecurity) raftTLS() *cluster.RaftTLS {
	if !s.tlsOn() {
		return nil
	}
	return &cluster.RaftTLS{
		Server: s.holder.ServerConfig(tlsutil.ServerOptions{RequireName: s.serverName}),
		Client: s.holder.ClientConfig(s.serverName),
	}
}

// apiTLS is the API's TLS (HTTP/2 by ALPN), or nil.
func (s *serverSecurity) apiTLS(verifyClient bool) *tls.Config {
	if !s.tlsOn() {
		return nil
	}
	return s.holder.ServerConfig(tlsutil.ServerOptions{VerifyClient: verifyClient, NextProtos: []string{"h2", "http/1.1"}})
}

// peerClient calls other servers' APIs presenting this server's
// certificate and requiring theirs to carry the server identity; nil
// without TLS (the rpc package's h2c default).
func (s *serverSecurity) peerClient() *http.Client {
	if !s.tlsOn() {
		return nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = s.holder.ClientConfig(s.serverName)
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	tr.Protocols.SetHTTP2(true)
	return &http.Client{Transport: tr}
}

// reloadOnSIGHUP reloads the certificate files on every SIGHUP until ctx
// ends: new connections use the new files, established ones are kept.
func (s *serverSecurity) reloadOnSIGHUP(ctx context.Context, logger *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
			if !s.tlsOn() {
				logger.Info("SIGHUP: no TLS configured; nothing to reload")
				continue
			}
			if err := s.holder.Reload(); err != nil {
				logger.Error("SIGHUP: TLS files not reloaded; still using the previous ones", "err", err)
				continue
			}
			logger.Info("SIGHUP: TLS certificates reloaded", "serial", s.holder.Leaf().SerialNumber.String(), "not_after", s.holder.Leaf().NotAfter)
		}
	}()
}
