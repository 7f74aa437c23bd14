package main

import (
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
)

// defaultAPIAddr is where a local server listens unless told otherwise.
const defaultAPIAddr = "127.0.0.1:7070"

// Client flags, registered on the client commands (see clientCommand); the
// daemons (server, dev, mesos-local) do not take them.
var (
	flagAddr   string
	flagOutput string
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
	c.PersistentFlags().StringVar(&flagAddr, "addr", addr, "address of a Berth server (env BERTH_ADDR)")
}

// clients bundles the API clients of one server.
type clients struct {
	apps        berthv1connect.AppServiceClient
	tasks       berthv1connect.TaskServiceClient
	deployments berthv1connect.DeploymentServiceClient
	events      berthv1connect.EventServiceClient
	cluster     berthv1connect.ClusterServiceClient
}

// baseURL turns host:port or a URL into a URL.
func baseURL(addr string) string {
	if strings.Contains(addr, "://") {
		return strings.TrimRight(addr, "/")
	}
	return "http://" + addr
}

func newClients() (*clients, error) {
	switch flagOutput {
	case "table", "json":
	default:
		return nil, fmt.Errorf("--output: unknown format %q (want table or json)", flagOutput)
	}
	hc := &http.Client{Transport: berthOnly{&http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 2 * time.Minute,
	}}}
	u := baseURL(flagAddr)
	return &clients{
		apps:        berthv1connect.NewAppServiceClient(hc, u),
		tasks:       berthv1connect.NewTaskServiceClient(hc, u),
		deployments: berthv1connect.NewDeploymentServiceClient(hc, u),
		events:      berthv1connect.NewEventServiceClient(hc, u),
		cluster:     berthv1connect.NewClusterServiceClient(hc, u),
	}, nil
}

// describeError renders an error for a person at a terminal: a server
// that cannot be reached (refused, unknown host, not a Berth API) is said
// so with the address tried; an API error is its code and the server's
// message, worded for the CLI.
func describeError(err error) string {
	if why := unreachable(err); why != "" {
		return fmt.Sprintf("cannot reach Berth at %s: %s", flagAddr, why)
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return fmt.Sprintf("%s: %s", ce.Code(), cliWording(ce.Message()))
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
