package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func init() {
	// Not a clientCommand: debug's --output is a file, not a format.
	opCmd := &cobra.Command{Use: "operator", Short: "Operate and troubleshoot a Berth cluster"}
	registerAddr(opCmd)
	opCmd.AddCommand(operatorDebugCmd())
	rootCmd.AddCommand(opCmd)
}

// debugOptions configures `berth operator debug`.
type debugOptions struct {
	duration, interval time.Duration
	output             string
}

func operatorDebugCmd() *cobra.Command {
	var o debugOptions
	c := &cobra.Command{
		Use:   "debug",
		Short: "Collect a debug bundle from every server: metrics, profiles, logs, members, peers, scheduler summary",
		Long: `debug collects, from every server of the cluster (found through the server at
--addr), metrics scrapes every --interval for --duration, goroutine, heap and
CPU profiles, the server's log lines of that window, and from the cluster its
members, Raft peers and the leader's scheduler state summary (counts only),
into one .tar.gz for a bug report. Environment values and secret sources of
every app are removed from everything collected.`,
		Args: usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if o.duration < time.Second {
				return fmt.Errorf("--duration: %s is too short (at least 1s)", o.duration)
			}
			if o.interval <= 0 || o.interval > o.duration {
				return fmt.Errorf("--interval: %s must be positive and at most --duration (%s)", o.interval, o.duration)
			}
			if o.output == "" {
				o.output = "berth-debug-" + time.Now().UTC().Format("20060102T150405Z") + ".tar.gz"
			}
			return runDebug(c.Context(), c.OutOrStdout(), o)
		},
	}
	c.Flags().DurationVar(&o.duration, "duration", 30*time.Second, "how long to collect metrics and the CPU profile (at most 30s of CPU profile)")
	c.Flags().DurationVar(&o.interval, "interval", 10*time.Second, "time between two metrics scrapes of a server")
	c.Flags().StringVar(&o.output, "output", "", "file to write the bundle to (default berth-debug-<time>.tar.gz)")
	return c
}

// bundle is the debug bundle being collected: files by path, and the
// problems met (a server that did not answer is noted, not fatal).
type bundle struct {
	mu     sync.Mutex
	files  map[string][]byte
	binary map[string]bool
	errs   []string
}

func (b *bundle) add(name string, data []byte, binary bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files[name] = data
	if binary {
		b.binary[name] = true
	}
}

func (b *bundle) fail(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs = append(b.errs, fmt.Sprintf(format, args...))
}

func (b *bundle) addJSON(name string, m proto.Message) {
	data, err := appmodel.MarshalJSON(m)
	if err != nil {
		b.fail("%s: %v", name, err)
		return
	}
	b.add(name, data, false)
}

func runDebug(ctx context.Context, out io.Writer, o debugOptions) error {
	flagOutput = "table" // newClients checks it; the bundle has its own formats
	cl, err := newClients()
	if err != nil {
		return err
	}
	b := &bundle{files: map[string][]byte{}, binary: map[string]bool{}, errs: []string{}}
	start := time.Now()

	members, err := cl.cluster.Members(ctx, connect.NewRequest(&v1.MembersRequest{}))
	if err != nil {
		return fmt.Errorf("cluster members: %w", err)
	}
	b.addJSON("cluster/members.json", members.Msg)
	if peers, err := cl.cluster.ListPeers(ctx, connect.NewRequest(&v1.ListPeersRequest{})); err != nil {
		b.fail("raft list-peers: %v", err)
	} else {
		b.addJSON("cluster/peers.json", peers.Msg)
	}
	leader, err := cl.cluster.Leader(ctx, connect.NewRequest(&v1.LeaderRequest{}))
	if err != nil {
		b.fail("cluster leader: %v", err)
	} else {
		b.addJSON("cluster/leader.json", leader.Msg)
	}
	secrets, err := secretValues(ctx, cl)
	if err != nil {
		// Without the list of values to remove, nothing collected can be
		// shown to be free of them.
		return fmt.Errorf("list apps (to keep their env values out of the bundle): %w", err)
	}

	hc, tlsOn, err := newHTTPClient()
	if err != nil {
		return err
	}
	hc.Timeout = o.duration + time.Minute
	var wg sync.WaitGroup
	var servers []string
	for _, m := range members.Msg.GetMembers() {
		name, api := m.GetName(), m.GetApiAddr()
		if api == "" || m.GetStatus() != "alive" {
			b.fail("server %s: skipped (status %s, API address %q)", name, m.GetStatus(), api)
			continue
		}
		servers = append(servers, name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			collectServer(ctx, hc, b, "servers/"+safeName(name)+"/", baseURL(api, tlsOn), start, o)
		}()
		if m.GetLeader() {
			get(ctx, hc, b, "cluster/scheduler-summary.json", baseURL(api, tlsOn)+"/v1/debug/scheduler", false)
		}
	}
	fmt.Fprintf(out, "collecting from %d servers (%s) for %s...\n", len(servers), strings.Join(servers, ", "), o.duration)
	wg.Wait()

	// A binary profile cannot be scrubbed: one holding a secret value is
	// left out, and the manifest says so.
	for name, data := range b.files {
		if b.binary[name] && containsAny(data, secrets) {
			delete(b.files, name)
			b.fail("%s: left out, it holds an env value or secret", name)
		}
	}
	manifest := map[string]any{
		"started":  start.UTC().Format(time.RFC3339Nano),
		"duration": o.duration.String(),
		"interval": o.interval.String(),
		"addr":     flagAddr,
		"servers":  servers,
		"problems": b.errs,
	}
	mj, _ := json.MarshalIndent(manifest, "", "  ")
	b.add("manifest.json", mj, false)
	if err := b.write(o.output, secrets); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	fmt.Fprintf(out, "wrote %s (%d files", o.output, len(b.files))
	if len(b.errs) > 0 {
		fmt.Fprintf(out, "; %d problems, see manifest.json", len(b.errs))
	}
	fmt.Fprintln(out, ")")
	return nil
}

// collectServer collects one server's part of the bundle under dir.
func collectServer(ctx context.Context, hc *http.Client, b *bundle, dir, base string, start time.Time, o debugOptions) {
	get(ctx, hc, b, dir+"health.json", base+"/v1/health", false)
	get(ctx, hc, b, dir+"ready.json", base+"/v1/ready", false)
	get(ctx, hc, b, dir+"goroutine-start.txt", base+"/v1/debug/pprof/goroutine?debug=2", false)
	cpu := min(o.duration, 30*time.Second)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		get(ctx, hc, b, dir+"cpu.pprof", fmt.Sprintf("%s/v1/debug/pprof/profile?seconds=%d", base, int(cpu.Seconds())), true)
	}()
	deadline := start.Add(o.duration)
	for i := 0; ; i++ {
		get(ctx, hc, b, fmt.Sprintf("%smetrics/%03d.prom", dir, i), base+"/metrics", false)
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		select {
		case <-ctx.Done():
			b.fail("%s: interrupted", dir)
			wg.Wait()
			return
		case <-time.After(min(o.interval, wait)):
		}
	}
	wg.Wait()
	get(ctx, hc, b, dir+"goroutine.txt", base+"/v1/debug/pprof/goroutine?debug=2", false)
	get(ctx, hc, b, dir+"heap.pprof", base+"/v1/debug/pprof/heap", true)
	get(ctx, hc, b, dir+"logs.txt", base+"/v1/debug/logs?since="+url.QueryEscape(start.UTC().Format(time.RFC3339Nano)), false)
}

// get fetches u into the bundle as name; a failure is noted in the bundle.
func get(ctx context.Context, hc *http.Client, b *bundle, name, u string, binary bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		b.fail("%s: %v", name, err)
		return
	}
	resp, err := hc.Do(req)
	if err != nil {
		b.fail("%s: %v", name, err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.fail("%s: %v", name, err)
		return
	}
	// /v1/ready answers 503 with its reason: that is worth keeping too.
	if resp.StatusCode != http.StatusOK && !(resp.StatusCode == http.StatusServiceUnavailable && strings.HasSuffix(u, "/v1/ready")) {
		b.fail("%s: GET %s: %s: %s", name, u, resp.Status, bytes.TrimSpace(data))
		return
	}
	b.add(name, data, binary)
}

// secretValues returns every app's env values and secret sources, which
// must never enter a bundle.
func secretValues(ctx context.Context, cl *clients) ([]string, error) {
	res, err := cl.apps.ListApps(ctx, connect.NewRequest(&v1.ListAppsRequest{}))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range res.Msg.GetApps() {
		for _, e := range a.GetEnv() {
			if v := e.GetValue(); v != "" {
				out = append(out, v)
			}
		}
		for _, s := range a.GetSecrets() {
			if v := s.GetSource(); v != "" {
				out = append(out, v)
			}
		}
	}
	if tok := os.Getenv("BERTH_TOKEN"); tok != "" {
		out = append(out, tok)
	}
	// Longest first, so a value containing another is removed whole.
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// redacted is what replaces a secret value in a bundle.
const redacted = "[REDACTED]"

// scrub removes every secret value from a text file. Values shorter than
// 4 bytes (e.g. "1", "on") are too common to be secrets, and removing
// them would wreck every file.
func scrub(data []byte, secrets []string) []byte {
	for _, s := range secrets {
		if len(s) >= 4 {
			data = bytes.ReplaceAll(data, []byte(s), []byte(redacted))
		}
	}
	return data
}

// write writes the bundle as a .tar.gz, text files scrubbed of secrets
// (binary profiles holding one were dropped before).
func (b *bundle) write(file string, secrets []string) error {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(b.files))
	for n := range b.files {
		names = append(names, n)
	}
	sort.Strings(names)
	now := time.Now()
	var werr error
	for _, n := range names {
		data := b.files[n]
		if !b.binary[n] {
			data = scrub(data, secrets)
		}
		hdr := &tar.Header{Name: path.Join("berth-debug", n), Mode: 0o600, Size: int64(len(data)), ModTime: now, Typeflag: tar.TypeReg}
		if werr = tw.WriteHeader(hdr); werr != nil {
			break
		}
		if _, werr = tw.Write(data); werr != nil {
			break
		}
	}
	return errors.Join(werr, tw.Close(), zw.Close(), f.Close())
}

// containsAny reports whether data holds any secret of 4 bytes or more,
// compressed profiles included.
func containsAny(data []byte, secrets []string) bool {
	plain := data
	if zr, err := gzip.NewReader(bytes.NewReader(data)); err == nil {
		if b, err := io.ReadAll(zr); err == nil {
			plain = b
		}
	}
	for _, s := range secrets {
		if len(s) >= 4 && (bytes.Contains(plain, []byte(s)) || bytes.Contains(data, []byte(s))) {
			return true
		}
	}
	return false
}

// safeName makes a server name usable as a path element.
func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, s)
	if s == "" || s == "." || s == ".." {
		return "_"
	}
	return s
}
