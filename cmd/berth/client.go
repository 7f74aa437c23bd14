package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
	"github.com/berth-dev/berth/rpc"
)

// defaultAPIAddr is where a local server listens unless told otherwise.
const defaultAPIAddr = "127.0.0.1:7070"

// Client flags, registered on the client commands (see clientCommand); the
// daemons (server, dev, mesos-local) do not take them.
var (
	flagAddr       string
	flagOutput     string
	flagCAFile     string
	flagClientCert string
	flagClientKey  string
	flagToken      string
)

// clientCommand gives c and its subcommands the client flags --addr and
// --output, and returns c.
func clientCommand(c *cobra.Command) *cobra.Command {
	registerAddr(c)
	c.PersistentFlags().StringVarP(&flagOutput, "output", "o", "table", "output format: table or json")
	return c
}

// registerAddr gives c and its subcommands the --addr flag.
func registerAddr(c *cobra.Command) {
	addr := os.Getenv("BERTH_ADDR")
	if addr == "" {
		addr = defaultAPIAddr
	}
	pf := c.PersistentFlags()
	pf.StringVar(&flagAddr, "addr", addr, "address of a Berth server, host:port or https://host:port (env BERTH_ADDR)")
	pf.StringVar(&flagCAFile, "ca-file", os.Getenv("BERTH_CACERT"), "CA certificate (PEM) to verify the server with; implies https (env BERTH_CACERT)")
	pf.StringVar(&flagClientCert, "client-cert", os.Getenv("BERTH_CLIENT_CERT"), "client certificate (PEM) for servers run with --tls-verify-client (env BERTH_CLIENT_CERT)")
	pf.StringVar(&flagClientKey, "client-key", os.Getenv("BERTH_CLIENT_KEY"), "client private key (PEM) (env BERTH_CLIENT_KEY)")
	pf.StringVar(&flagToken, "token", os.Getenv("BERTH_TOKEN"), "ACL token secret sent with every request (env BERTH_TOKEN)")
}

// clients bundles the API clients of one server.
type clients struct {
	keyring     berthv1connect.KeyringServiceClient
	apps        berthv1connect.AppServiceClient
	tasks       berthv1connect.TaskServiceClient
	deployments berthv1connect.DeploymentServiceClient
	events      berthv1connect.EventServiceClient
	cluster     berthv1connect.ClusterServiceClient
	acl         berthv1connect.ACLServiceClient
	backups     berthv1connect.BackupServiceClient
	agents      berthv1connect.AgentServiceClient
}

// baseURL turns host:port or a URL into a URL; a bare host:port is https
// when a CA file or client certificate is given.
func baseURL(addr string, tlsOn bool) string {
	if strings.Contains(addr, "://") {
		return strings.TrimRight(addr, "/")
	}
	if tlsOn {
		return "https://" + addr
	}
	return "http://" + addr
}

// clientTLS builds the CLI's TLS configuration from --ca-file,
// --client-cert and --client-key; nil when none is given.
func clientTLS() (*tls.Config, error) {
	if flagCAFile == "" && flagClientCert == "" && flagClientKey == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if flagCAFile != "" {
		pem, err := os.ReadFile(flagCAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate found", flagCAFile)
		}
	}
	if (flagClientCert == "") != (flagClientKey == "") {
		return nil, errors.New("--client-cert and --client-key: give both or neither")
	}
	if flagClientCert != "" {
		pair, err := tls.LoadX509KeyPair(flagClientCert, flagClientKey)
		if err != nil {
			return nil, fmt.Errorf("--client-cert/--client-key: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

func newClients() (*clients, error) {
	switch flagOutput {
	case "table", "json":
	default:
		return nil, fmt.Errorf("--output: unknown format %q (want table or json)", flagOutput)
	}
	hc, tlsOn, err := newHTTPClient()
	if err != nil {
		return nil, err
	}
	hc.Transport = berthOnly{hc.Transport}
	u := baseURL(flagAddr, tlsOn)
	return &clients{
		apps:        berthv1connect.NewAppServiceClient(hc, u),
		tasks:       berthv1connect.NewTaskServiceClient(hc, u),
		deployments: berthv1connect.NewDeploymentServiceClient(hc, u),
		events:      berthv1connect.NewEventServiceClient(hc, u),
		cluster:     berthv1connect.NewClusterServiceClient(hc, u, rpc.WithSnapshotCodec()),
		keyring:     berthv1connect.NewKeyringServiceClient(hc, u),
		agents:      berthv1connect.NewAgentServiceClient(hc, u),
		acl:         berthv1connect.NewACLServiceClient(hc, u),
		backups:     berthv1connect.NewBackupServiceClient(hc, u),
	}, nil
}

// newHTTPClient is the HTTP client of every call to a Berth server: TLS
// from --ca-file/--client-cert/--client-key (tlsOn reports whether it is
// on) and the ACL token from --token.
func newHTTPClient() (hc *http.Client, tlsOn bool, err error) {
	tc, err := clientTLS()
	if err != nil {
		return nil, false, err
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 2 * time.Minute,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   10 * time.Second,
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	tr.Protocols.SetHTTP2(true)
	return &http.Client{Transport: withToken{flagToken, tr}}, tc != nil, nil
}

// usesTLS reports whether the CLI talks TLS to --addr.
func usesTLS() bool { return flagCAFile != "" || strings.HasPrefix(flagAddr, "https://") }

// tlsHint suggests the flag that is probably missing when a server that
// speaks TLS refused the connection.
func tlsHint(msg string) string {
	switch {
	case strings.Contains(msg, "400 Bad Request") && !strings.HasPrefix(baseURL(flagAddr, false), "https://") && flagCAFile == "":
		return " (does the server use TLS? give --ca-file or an https:// address)"
	case strings.Contains(msg, "certificate required"):
		return " (the server requires a client certificate: give --client-cert and --client-key)"
	case flagClientCert == "" && usesTLS() && (strings.Contains(msg, "client conn could not be established") ||
		strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset")):
		// TLS 1.3: the server's refusal of a missing client certificate
		// arrives after the handshake and only breaks the connection
		// (HTTP/2: "could not be established"; HTTP/1.1: a broken pipe or
		// a reset on the first write).
		return " (does the server require a client certificate? give --client-cert and --client-key)"
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return " (give the cluster's CA with --ca-file)"
	}
	return ""
}

// describeError renders an error for a person at a terminal: a server
// that cannot be reached (refused, unknown host, not a Berth API) is said
// so with the address tried; an API error is its code and the server's
// message, worded for the CLI.
func describeError(err error) string {
	if why := unreachable(err); why != "" {
		return fmt.Sprintf("cannot reach Berth at %s: %s%s", flagAddr, why, tlsHint(why))
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		if ce.Code() == connect.CodeUnavailable && strings.Contains(ce.Message(), "connect:") {
			return fmt.Sprintf("cannot reach Berth at %s: %s", flagAddr, ce.Message())
		}
		return fmt.Sprintf("%s: %s%s", ce.Code(), cliWording(ce.Message()), tlsHint(ce.Message()))
	}
	return err.Error()
}

// unreachable explains why err means that no Berth API answered at all, or
// returns "" if a Berth server did answer.
func unreachable(err error) string {
	var nb *notBerthError
	if errors.As(err, &nb) {
		return nb.Error()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Error()
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return opErr.Error()
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) && !urlErr.Timeout() {
		// The connection broke before any HTTP answer.
		return urlErr.Err.Error()
	}
	return ""
}

// notBerthError is an HTTP answer that no Connect server gives: a web
// page, a proxy's error page, another service.
type notBerthError struct {
	status, contentType string
}

func (e *notBerthError) Error() string {
	ct := e.contentType
	if ct == "" {
		ct = "no content type"
	}
	return fmt.Sprintf("no Berth API answers there (got HTTP %s, %s)", e.status, ct)
}

// berthOnly is an HTTP transport that turns answers no Connect server
// would give into a notBerthError, so that the CLI does not report a web
// server's 404 page as an API error.
type berthOnly struct{ next http.RoundTripper }

func (b berthOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	ct := resp.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/") &&
		(strings.Contains(ct, "proto") || strings.Contains(ct, "json") || strings.Contains(ct, "grpc")) {
		return resp, nil
	}
	resp.Body.Close()
	return nil, &notBerthError{status: resp.Status, contentType: ct}
}

// withToken is an HTTP transport that sends the ACL token, if any, as a
// bearer token.
type withToken struct {
	secret string
	next   http.RoundTripper
}

func (w withToken) RoundTrip(req *http.Request) (*http.Response, error) {
	if w.secret != "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+w.secret)
	}
	return w.next.RoundTrip(req)
}

// apiWords maps the API's wording in server messages to the CLI's.
var apiWords = strings.NewReplacer(
	"use force ", "use --force ",
	"types: unknown event type", "--type: unknown event type",
)

// cliWording rewrites a server message for CLI users: API fields that the
// CLI exposes as flags are named as the flags.
func cliWording(msg string) string { return apiWords.Replace(msg) }

// printJSON writes a message as indented JSON with its JSON field names,
// apps in Marathon's JSON (which app add and app update read back).
func printJSON(w io.Writer, m proto.Message) error {
	b, err := appmodel.MarshalJSON(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// table prints rows under a header, aligned.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// orNA renders an empty value as N/A.
func orNA(s string) string {
	if s == "" {
		return "N/A"
	}
	return s
}
