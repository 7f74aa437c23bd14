// Command bench measures Berth's API writes side by side with embedded
// etcd on the same machine, disk and client, and prints a table of
// medians, spreads and ratios (issue 14). It is its own Go module so that
// Berth never depends on etcd.
//
//	cd bench && go run . -rounds 5
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

type options struct {
	rounds    int
	seq       int
	warm      int
	conc      int
	clients   int
	only      string
	figures   string
	profile   string
	dir       string
	berthOnly bool
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every figure once per side, the side going first alternating")
	flag.IntVar(&o.seq, "seq", 1000, "sequential writes per figure per round")
	flag.IntVar(&o.warm, "warm", 50, "uncounted writes before each sequential series")
	flag.IntVar(&o.conc, "ops", 4000, "writes per concurrent figure per round")
	flag.IntVar(&o.clients, "clients", 16, "concurrent clients (each with its own connection)")
	flag.StringVar(&o.figures, "figures", "", "comma-separated figure keys to run (default all): "+strings.Join(figureKeys(), ","))
	flag.BoolVar(&o.berthOnly, "berth-only", false, "measure Berth alone (for profiling)")
	flag.StringVar(&o.profile, "profile", "", "write Berth-side CPU, allocation, block and mutex profiles to files with this prefix (implies -berth-only)")
	flag.StringVar(&o.dir, "dir", "", "directory for the servers' data (default: a new temporary directory, removed at the end)")
	flag.Parse()
	if o.rounds < 1 || o.seq < 1 || o.conc < 1 || o.clients < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds, -seq, -ops and -clients must be at least 1")
		os.Exit(2)
	}
	if o.profile != "" {
		o.berthOnly = true
	}
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// figure is one row of the table.
type figure struct {
	key      string
	servers  int
	title    string
	rate     bool // writes/s (higher is better) instead of latency
	onLeader bool
	berthRaw bool // Berth's row is a raw Raft apply, etcd has none
	read     bool // reads of what the first write of the run created
}

var figures = []figure{
	{key: "1-seq", servers: 1, title: "1 server, sequential write p50 / p99", onLeader: true},
	{key: "1-conc", servers: 1, title: "1 server, %d clients (writes/s)", rate: true, onLeader: true},
	{key: "1-raw", servers: 1, title: "1 server, raw Raft apply of a create's size p50 / p99", onLeader: true, berthRaw: true},
	{key: "3-seq-leader", servers: 3, title: "3 servers, write to the leader p50 / p99", onLeader: true},
	{key: "3-seq-follower", servers: 3, title: "3 servers, write through a follower p50 / p99"},
	{key: "3-conc-leader", servers: 3, title: "3 servers, %d clients on the leader (writes/s)", rate: true, onLeader: true},
	{key: "3-conc-follower", servers: 3, title: "3 servers, %d clients on a follower (writes/s)", rate: true},
	{key: "3-raw", servers: 3, title: "3 servers, raw Raft apply of a create's size p50 / p99", onLeader: true, berthRaw: true},
	{key: "3-read-follower", servers: 3, title: "3 servers, read from a follower p50 / p99 (Berth GetApp, etcd serializable get)", read: true},
}

func figureKeys() []string {
	var keys []string
	for _, f := range figures {
		keys = append(keys, f.key)
	}
	return keys
}

// sample is one figure of one side in one round.
type sample struct {
	lat  latency
	rate float64
}

type result struct {
	berth, etcd []sample
}

func run(ctx context.Context, o options) error {
	selected := figures
	if o.figures != "" {
		want := strings.Split(o.figures, ",")
		selected = nil
		for _, f := range figures {
			if slices.Contains(want, f.key) {
				selected = append(selected, f)
			}
		}
		if len(selected) == 0 {
			return fmt.Errorf("-figures %q: no known figure (known: %s)", o.figures, strings.Join(figureKeys(), ","))
		}
	}
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "berth-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	stopProfiles, err := startProfiles(o.profile)
	if err != nil {
		return err
	}
	results := map[string]*result{}
	var entrySize int
	for _, n := range []int{1, 3} {
		var figs []figure
		for _, f := range selected {
			if f.servers == n {
				figs = append(figs, f)
			}
		}
		if len(figs) == 0 {
			continue
		}
		size, err := runTopology(ctx, o, dir, n, figs, results)
		if err != nil {
			return err
		}
		entrySize = max(entrySize, size)
	}
	if err := stopProfiles(); err != nil {
		return err
	}
	printTable(os.Stdout, o, selected, results, entrySize)
	return nil
}

// runTopology starts n Berth servers and n etcd members, then runs the
// figures round by round, alternating which side goes first.
func runTopology(ctx context.Context, o options, dir string, n int, figs []figure, results map[string]*result) (int, error) {
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	fmt.Fprintf(os.Stderr, "starting %d Berth server(s)", n)
	b, err := startBerth(ctx, fmt.Sprintf("%s/berth-%d", dir, n), n, quiet)
	if err != nil {
		return 0, err
	}
	defer b.stop()
	var e *etcdCluster
	if !o.berthOnly {
		fmt.Fprintf(os.Stderr, " and %d etcd member(s)", n)
		if e, err = startEtcd(ctx, fmt.Sprintf("%s/etcd-%d", dir, n), n); err != nil {
			return 0, err
		}
		defer e.stop()
	}
	fmt.Fprintln(os.Stderr)
	// The size of the entry one create commits, for the raw apply.
	do, closeOp := berthCreate(b.leader().url(), fmt.Sprintf("size-%d", n))
	err = do(ctx, 0)
	closeOp()
	if err != nil {
		return 0, fmt.Errorf("berth: first create: %w", err)
	}
	size, err := createEntrySize(b.leader(), sizeAppID(b))
	if err != nil {
		return 0, err
	}
	if e != nil {
		put, closePut, err := etcdPut(e.leader(), fmt.Sprintf("size-%d", n))
		if err != nil {
			return 0, err
		}
		err = put(ctx, 0)
		closePut()
		if err != nil {
			return 0, fmt.Errorf("etcd: first put: %w", err)
		}
	}
	for round := range o.rounds {
		for _, f := range figs {
			r := results[f.key]
			if r == nil {
				r = &result{}
				results[f.key] = r
			}
			tag := fmt.Sprintf("r%d-%s", round, f.key)
			sides := []string{"berth", "etcd"}
			if round%2 == 1 {
				sides = []string{"etcd", "berth"}
			}
			for _, side := range sides {
				if side == "etcd" && (e == nil || f.berthRaw) {
					continue
				}
				var s sample
				var err error
				// On a busy machine a server may miss heartbeats and an
				// election move the leader mid-series: measure again on
				// the new leader (twice at most), and say so.
				for try := range 3 {
					if err = b.waitAgreed(ctx); err == nil && e != nil {
						err = e.waitAgreed(ctx)
					}
					if err == nil {
						s, err = measure(ctx, o, f, side, fmt.Sprintf("%s-%d", tag, try), b, e, size)
					}
					if err == nil {
						break
					}
					fmt.Fprintf(os.Stderr, "round %d %s %s: %v; measuring again\n", round+1, f.key, side, err)
				}
				if err != nil {
					return 0, fmt.Errorf("round %d, %s, %s: %w", round+1, f.key, side, err)
				}
				if side == "berth" {
					r.berth = append(r.berth, s)
				} else {
					r.etcd = append(r.etcd, s)
				}
				fmt.Fprintf(os.Stderr, "round %d %-16s %-5s %s\n", round+1, f.key, side, s.String(f))
			}
		}
	}
	return size, nil
}

func measure(ctx context.Context, o options, f figure, side, tag string, b *berthCluster, e *etcdCluster, size int) (sample, error) {
	bTarget, eTarget := b.leader(), ""
	if e != nil {
		eTarget = e.leader()
	}
	if !f.onLeader {
		bTarget = b.follower()
		if e != nil {
			eTarget = e.follower()
		}
	}
	if bTarget == nil {
		return sample{}, fmt.Errorf("berth has no leader")
	}
	newOp := func() (op, func(), error) {
		if side == "etcd" && f.read {
			return etcdGet(eTarget, etcdSizeKey(len(b.servers)))
		}
		if side == "etcd" {
			return etcdPut(eTarget, tag)
		}
		if f.berthRaw {
			return berthRawApply(bTarget, size), func() {}, nil
		}
		if f.read {
			do, closeOp := berthGet(bTarget.url(), sizeAppID(b))
			return do, closeOp, nil
		}
		do, closeOp := berthCreate(bTarget.url(), tag)
		return do, closeOp, nil
	}
	if f.rate {
		r, err := concurrent(ctx, o.conc, o.clients, newOp)
		return sample{rate: r}, err
	}
	do, closeOp, err := newOp()
	if err != nil {
		return sample{}, err
	}
	defer closeOp()
	l, err := sequential(ctx, o.seq, o.warm, do)
	return sample{lat: l}, err
}

func (s sample) String(f figure) string {
	if f.rate {
		return fmt.Sprintf("%.0f/s", s.rate)
	}
	return fmt.Sprintf("%s / %s", ms(s.lat.p50), ms(s.lat.p99))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// median returns the median and the range of xs.
func median(xs []float64) (med, lo, hi float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

// stat summarizes one measure of a side's samples: "median (min–max)".
func stat(samples []sample, get func(sample) float64, unit string, prec int) (string, float64) {
	if len(samples) == 0 {
		return "–", 0
	}
	xs := make([]float64, len(samples))
	for i, s := range samples {
		xs[i] = get(s)
	}
	m, lo, hi := median(xs)
	return fmt.Sprintf("%.*f%s (%.*f–%.*f)", prec, m, unit, prec, lo, prec, hi), m
}

func printTable(w io.Writer, o options, figs []figure, results map[string]*result, entrySize int) {
	load, _ := exec.Command("uptime").Output()
	fmt.Fprintf(w, "\n%d rounds, %d sequential operations and %d concurrent writes per figure per round; GOMAXPROCS %d; %s",
		o.rounds, o.seq, o.conc, runtime.GOMAXPROCS(0), load)
	fmt.Fprintf(w, "Berth: CreateApp (instances 0) as Connect JSON over HTTP/1.1; raw apply: a %d-byte entry the FSM skips. etcd: a %d-byte put.\n", entrySize, etcdValueBytes)
	fmt.Fprintf(w, "Each cell: median of the rounds (min–max).\n\n")
	fmt.Fprintln(w, "| figure | etcd | Berth | ratio |")
	fmt.Fprintln(w, "|---|---|---|---|")
	p50 := func(s sample) float64 { return float64(s.lat.p50.Microseconds()) / 1000 }
	p99 := func(s sample) float64 { return float64(s.lat.p99.Microseconds()) / 1000 }
	rate := func(s sample) float64 { return s.rate }
	for _, f := range figs {
		r := results[f.key]
		if r == nil {
			continue
		}
		title := f.title
		if strings.Contains(title, "%d") {
			title = fmt.Sprintf(title, o.clients)
		}
		var eCell, bCell, ratio string
		if f.rate {
			var em, bm float64
			eCell, em = stat(r.etcd, rate, "/s", 0)
			bCell, bm = stat(r.berth, rate, "/s", 0)
			if em > 0 && bm > 0 {
				ratio = fmt.Sprintf("Berth %.2fx etcd's rate", bm/em)
			}
		} else {
			e50, em := stat(r.etcd, p50, " ms", 2)
			e99, _ := stat(r.etcd, p99, " ms", 2)
			b50, bm := stat(r.berth, p50, " ms", 2)
			b99, _ := stat(r.berth, p99, " ms", 2)
			eCell, bCell = e50+" / "+e99, b50+" / "+b99
			if len(r.etcd) == 0 {
				eCell = "–"
			}
			if em > 0 && bm > 0 {
				ratio = fmt.Sprintf("Berth p50 %.2fx etcd's", bm/em)
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", title, eCell, bCell, ratio)
	}
}

// startProfiles starts the CPU profile and turns on block and mutex
// profiling; the returned function writes them all with the allocations.
func startProfiles(prefix string) (func() error, error) {
	if prefix == "" {
		return func() error { return nil }, nil
	}
	cpu, err := os.Create(prefix + ".cpu.pprof")
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return nil, err
	}
	runtime.SetBlockProfileRate(10_000) // one sample per 10 µs blocked
	runtime.SetMutexProfileFraction(10)
	return func() error {
		pprof.StopCPUProfile()
		cpu.Close()
		for _, name := range []string{"allocs", "block", "mutex"} {
			f, err := os.Create(prefix + "." + name + ".pprof")
			if err != nil {
				return err
			}
			if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
				return err
			}
			f.Close()
		}
		return nil
	}, nil
}

// sizeAppID is the app the first create of a run made (read by the read
// figures), and etcdSizeKey the key of etcd's first put.
func sizeAppID(b *berthCluster) string { return fmt.Sprintf("/bench/size-%d/app-0", len(b.servers)) }

func etcdSizeKey(n int) string { return fmt.Sprintf("/bench/size-%d/0", n) }
