// Package mesoslocal is an embedded Mesos master with agents in one process.
//
// It speaks the Mesos v1 scheduler API (POST /api/v1/scheduler, RecordIO
// event streams in protobuf or JSON) and a subset of the v1 operator API
// (POST /api/v1), closely enough that a scheduler built on mesos-go cannot
// tell it from a Mesos 1.11 master. Its port also serves what agents serve
// on theirs for task sandboxes, the files API (/files/read, /files/browse,
// files.go), and offers name that port as the agent's address (Offer.url). Agents run command tasks as local
// processes, keep persistent volumes as directories under the work dir and
// checkpoint their reservations and volumes so that a restart brings them
// back. In simulation mode tasks run without processes, for scale tests.
//
// All master and agent state lives behind one mutex (Cluster.mu); task
// processes, HTTP streams and timers report back through methods that take
// it. Nothing here blocks on I/O while holding the mutex except small
// checkpoint writes; events are queued under it and encoded by each
// stream's writer. Resource bookkeeping is indexed by resource identity and
// kept per agent (resindex.go), and allocation rounds visit only agents
// whose free resources or filters changed (allocator.go), so the cost of a
// call or a round does not grow with the number of agents or reservations.
package mesoslocal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/allocator"
	"github.com/mesos/mesos-go/api/v1/lib/maintenance"
)

// OperationRecord describes one operation mesos-local applied.
type OperationRecord struct {
	Time           time.Time
	Op             string // RESERVE, UNRESERVE, CREATE, DESTROY, LAUNCH, LAUNCH_GROUP, KILL, TEARDOWN
	FrameworkID    string
	StreamID       string
	AgentID        string
	TaskIDs        []string
	PersistenceIDs []string
	Resources      string // formatted when read (Operations)

	res rset
}

// Cluster is a Mesos master plus agents.
type Cluster struct {
	cfg      Config
	log      *slog.Logger
	masterID string

	ln     net.Listener
	srv    *http.Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	started     bool
	closed      bool
	frameworks  map[string]*framework
	removed     map[string]bool // framework ids that were torn down or timed out
	completedFw []*framework
	agents      map[string]*agent
	agentList   []*agent // stable order for allocation
	offers      map[string]*offer
	retrying    map[*task]struct{} // tasks with an unacknowledged agent update
	operators   map[*stream]struct{}
	ops         []OperationRecord
	nextFwID    int
	nextOfferID int
	nextAgentID int
	allocTick   int
	allocKick   chan struct{}
	dirty       []*agent  // agents whose free resources changed since their last allocation
	allDirty    bool      // every agent needs a look (frameworks, roles or filters changed)
	wakes       wakeQueue // agents whose refused resources become offerable again
	// schedule is the maintenance schedule (nil: none); down holds the
	// machines (machineKey) that are DOWN. See drain.go.
	schedule *maintenance.Schedule
	down     map[string]bool
	// inverse offers (inverse.go): outstanding by id and by
	// framework/agent, filters from answers, and the answers by agent and
	// framework.
	inverse        map[string]*inverseOffer
	inverseByKey   map[string]*inverseOffer
	inverseRefused map[string]time.Time
	inverseStatus  map[string]map[string]allocator.InverseOfferStatus

	// afterAllocate, when set (by tests, before Start), runs at the end of
	// every allocation round with the frameworks it considered.
	afterAllocate func(now time.Time, fws []*framework)
	startTime     time.Time
	// counters are the /metrics/snapshot counters (metrics.go).
	counters map[string]float64
	// partitions are the agents cut off the master by fault injection
	// (partition.go), by agent id.
	partitions map[string]*partition
}

// New validates cfg and prepares a cluster; Start binds and serves.
func New(cfg Config) (*Cluster, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("mesos-local config: %w", err)
	}
	cl := &Cluster{
		cfg:        c,
		log:        c.Logger,
		masterID:   newUUIDString(),
		frameworks: map[string]*framework{},
		removed:    map[string]bool{},
		agents:     map[string]*agent{},
		offers:     map[string]*offer{},
		retrying:   map[*task]struct{}{},
		operators:  map[*stream]struct{}{},
		allocKick:  make(chan struct{}, 1),
		down:       map[string]bool{},

		inverse:        map[string]*inverseOffer{},
		inverseByKey:   map[string]*inverseOffer{},
		inverseRefused: map[string]time.Time{},
		inverseStatus:  map[string]map[string]allocator.InverseOfferStatus{},
	}
	if !c.Simulate && os.Geteuid() == 0 {
		if dir := closedAncestor(c.WorkDir); dir != "" {
			cl.log.Warn("tasks that run as a user other than root cannot reach the work dir: they will fail at launch; use a work dir whose parents other users may enter (e.g. under /var/lib or /srv)",
				"work_dir", c.WorkDir, "closed_dir", dir)
		}
	}
	return cl, nil
}

// Start binds the listener, recovers checkpointed agents (creating new ones
// up to Config.Agents) and serves until Close. ctx only bounds start-up.
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("mesos-local: already started")
	}
	c.started = true
	c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("mesos-local: listen on %s: %w", c.cfg.Listen, err)
	}
	c.ln = ln
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.startTime = time.Now()
	if err := c.recoverAgents(); err != nil {
		ln.Close()
		c.cancel()
		return fmt.Errorf("mesos-local: recover agents: %w", err)
	}
	if err := c.startAgentAPIs(ctx); err != nil {
		ln.Close()
		c.closeAgentAPIs()
		c.cancel()
		return fmt.Errorf("mesos-local: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/scheduler", c.handleScheduler)
	mux.HandleFunc("/api/v1", c.handleOperator)
	mux.HandleFunc("/api/v1/", c.handleOperator)
	mux.HandleFunc("/files/read", c.handleFilesRead)
	mux.HandleFunc("/files/browse", c.handleFilesBrowse)
	mux.HandleFunc("/metrics/snapshot", c.handleMetricsSnapshot)
	mux.HandleFunc("/slave(1)/metrics/snapshot", c.handleMetricsSnapshot)
	if c.cfg.FaultInjection {
		c.handleFaults(mux)
	}
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"version":%q}`, mesosVersion)
	})
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		if err := c.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("mesos-local HTTP server stopped", "err", err)
		}
	}()
	go func() {
		defer c.wg.Done()
		c.allocationLoop()
	}()
	c.log.Info("mesos-local started", "addr", c.Addr(), "master_id", c.masterID, "agents", len(c.agentList), "simulate", c.cfg.Simulate, "work_dir", c.cfg.WorkDir)
	return nil
}

// Addr is the bound "host:port" (empty before Start).
func (c *Cluster) Addr() string {
	if c.ln == nil {
		return ""
	}
	return c.ln.Addr().String()
}

// URL is "http://" + Addr().
func (c *Cluster) URL() string { return "http://" + c.Addr() }

// Close stops serving and waits for all goroutines. As a Mesos agent
// restart, it leaves the task processes of checkpointing frameworks
// running (unless Config.KillTasksOnClose) and kills the others. Agents'
// checkpoints stay, so a new Cluster on the same work dir recovers them
// and adopts the tasks still running (recover.go).
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed || !c.started || c.cancel == nil {
		c.closed = true
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cancel()
	for s := range c.operators {
		s.close()
	}
	for _, fw := range c.frameworks {
		if fw.sub != nil {
			fw.sub.close()
		}
		if fw.failoverTimer != nil {
			fw.failoverTimer.Stop()
		}
	}
	for _, a := range c.agentList {
		for t := range a.tasks {
			if t.runner != nil {
				c.leaveOrKill(t)
			}
		}
	}
	c.closeAgentAPIs()
	c.mu.Unlock()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.srv.Shutdown(sctx)
	if err != nil {
		c.srv.Close()
	}
	c.wg.Wait()
	c.log.Info("mesos-local stopped", "addr", c.Addr())
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	return err
}

// Operations returns the operations applied so far, oldest first.
func (c *Cluster) Operations() []OperationRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]OperationRecord(nil), c.ops...)
	for i := range out {
		if out[i].res != nil {
			out[i].Resources = rset(nil).plus(out[i].res...).String()
		}
	}
	return out
}

// AgentIDs lists the agents in creation order.
func (c *Cluster) AgentIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.agentList))
	for _, a := range c.agentList {
		ids = append(ids, a.id)
	}
	return ids
}

// MasterID is this run's master id (new on every start).
func (c *Cluster) MasterID() string { return c.masterID }

// recordOp logs and records an applied operation. Called with c.mu held.
// The resources are formatted only when read (Operations) or logged at
// debug level: at 100,000 resident instances (three operations each, a
// kilobyte of labelled resources per line) formatting and writing them
// was a good part of an ACCEPT's cost, and hundreds of MiB of log.
func (c *Cluster) recordOp(op string, fw *framework, agentID string, taskIDs, persistenceIDs []string, res rset) {
	rec := OperationRecord{Time: time.Now(), Op: op, AgentID: agentID, TaskIDs: taskIDs, PersistenceIDs: persistenceIDs, res: res}
	if fw != nil {
		rec.FrameworkID, rec.StreamID = fw.id, fw.streamID
	}
	if len(c.ops) >= c.cfg.MaxOperationRecords {
		n := copy(c.ops, c.ops[len(c.ops)/10+1:])
		c.ops = c.ops[:n]
	}
	c.ops = append(c.ops, rec)
	attrs := []any{"op", op, "framework_id", rec.FrameworkID, "stream_id", rec.StreamID, "agent_id", agentID}
	if len(taskIDs) > 0 {
		attrs = append(attrs, "task_ids", taskIDs)
	}
	if len(persistenceIDs) > 0 {
		attrs = append(attrs, "persistence_ids", persistenceIDs)
	}
	if len(res) > 0 && c.log.Enabled(context.Background(), slog.LevelDebug) {
		attrs = append(attrs, "resources", rset(nil).plus(res...).String())
	}
	c.log.Info("operation applied", attrs...)
}

func newUUID() []byte {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return b
}

func formatUUID(b []byte) string {
	h := hex.EncodeToString(b)
	if len(h) != 32 {
		return h
	}
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func newUUIDString() string { return formatUUID(newUUID()) }

func nowSeconds() float64 { return float64(time.Now().UnixNano()) / 1e9 }

func timeInfo(t time.Time) *mesos.TimeInfo {
	if t.IsZero() {
		return nil
	}
	return &mesos.TimeInfo{Nanoseconds: t.UnixNano()}
}
