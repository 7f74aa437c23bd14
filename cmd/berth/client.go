package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// defaultAPIAddr is where a local server listens unless told otherwise.
const defaultAPIAddr = "127.0.0.1:7070"

// Global client flags.
var (
	flagAddr   string
	flagOutput string
)

func init() {
	addr := os.Getenv("BERTH_ADDR")
	if addr == "" {
		addr = defaultAPIAddr
	}
	rootCmd.PersistentFlags().StringVar(&flagAddr, "addr", addr, "address of a Berth server (env BERTH_ADDR)")
	rootCmd.PersistentFlags().StringVarP(&flagOutput, "output", "o", "table", "output format: table or json")
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
	hc := &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 2 * time.Minute,
	}}
	u := baseURL(flagAddr)
	return &clients{
		apps:        berthv1connect.NewAppServiceClient(hc, u),
		tasks:       berthv1connect.NewTaskServiceClient(hc, u),
		deployments: berthv1connect.NewDeploymentServiceClient(hc, u),
		events:      berthv1connect.NewEventServiceClient(hc, u),
		cluster:     berthv1connect.NewClusterServiceClient(hc, u),
	}, nil
}

// describeError renders an API error as the server's message.
func describeError(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		if ce.Code() == connect.CodeUnavailable && strings.Contains(ce.Message(), "connect:") {
			return fmt.Sprintf("cannot reach Berth at %s: %s", flagAddr, ce.Message())
		}
		return fmt.Sprintf("%s: %s", ce.Code(), ce.Message())
	}
	return err.Error()
}

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
