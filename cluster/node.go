// Package cluster is Berth's Raft and membership layer: a hashicorp/raft
// replica of the FSM stored on disk (raft-boltdb log and stable store, file
// snapshots, TCP transport), memberlist gossip through which servers find
// each other and advertise their Raft and API addresses, bootstrap of a new
// cluster once BootstrapExpect servers see each other, and a leader-side
// reconciler that adds joining servers and removes departed ones without
// ever giving up quorum.
//
// The package knows nothing of the API or the scheduler: the rpc layer
// calls Apply and forwards to LeaderAPIAddr on ErrNotLeader; the scheduler
// runs inside RunAsLeader (or a WatchLeadership loop) so that it only acts
// while this server is the leader.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Errors returned by Node methods; test with errors.Is.
var (
	// ErrNotLeader: this server is not the leader (or is handing leadership
	// over); nothing was applied. Forward to LeaderAPIAddr or retry.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrLeadershipLost: leadership was lost before the command committed.
	// It may or may not be applied; retry with the same request id.
	ErrLeadershipLost = errors.New("leadership lost before the command committed; it may or may not have been applied")
	// ErrShutdown: the node is shut down.
	ErrShutdown = errors.New("cluster node is shut down")
	// ErrNotStarted: Start has not been called (or failed).
	ErrNotStarted = errors.New("cluster node is not started")
	// ErrUnknownPeer: no server with that id is in the Raft configuration.
	ErrUnknownPeer = errors.New("no such server in the raft configuration")
	// ErrRefused: Config.CheckProposal refused the entry; nothing was
	// proposed.
	ErrRefused = errors.New("proposal refused")
	// ErrNoHandover, wrapped in an error of RunAsLeader's fn, says that
	// another server would fail the same way (the state, not this server,
	// is at fault): the work is retried here, and leadership is not handed
	// over for it.
	ErrNoHandover = errors.New("another server would fail the same way")
)

const (
	stateNew int32 = iota
	stateStarting
	stateRunning
	stateClosed
)

// Node is one Berth server's membership in the cluster.
type Node struct {
	cfg Config
	log *slog.Logger
	hc  hclog.Logger

	state   atomic.Int32
	closeMu sync.Mutex

	// Set by Start.
	raft       *raft.Raft
	trans      raft.Transport
	snaps      raft.SnapshotStore
	bolt       *raftboltdb.BoltStore
	network    *InmemNetwork
	raftAddr   string
	gossip     *memberlist.Memberlist
	gossipAddr string

	raftStream    raft.StreamLayer    // the TLS stream layer, nil without RaftTLS
	gossipKeyring *memberlist.Keyring // nil: gossip not encrypted
	keyringPath   string              // "" in memory
	keyringMu     sync.Mutex

	members     *memberTable
	lead        *leaderBroker
	notifyCh    chan bool
	reconcileCh chan struct{}
	bootstrapCh chan struct{}

	// barrier is Barrier; tests replace it to inject failures.
	barrier func(ctx context.Context) error
	// startCommandIndex is the index of the last command entry in the
	// log found on disk at Start (see StartCommandIndex).
	startCommandIndex uint64

	hasState      atomic.Bool
	gossipApplied atomic.Uint64 // applied index gossiped while not a voter
	leaving       atomic.Bool
	// disk is the health of the Raft disk; logGuard reports failed appends
	// to it (see diskhealth.go).
	disk     *diskHealth
	logGuard *guardedLogStore
	// stableGuard keeps Raft from panicking when its term cannot be
	// persisted (see stablestore.go).
	stableGuard *guardedStableStore
	// gossipedDisk is the disk error last gossiped (membership loop only).
	gossipedDisk   string
	gossipUpdateMu sync.Mutex

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New validates cfg and returns a node that is not yet started.
func New(cfg Config) (*Node, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.InMemory && c.Network == nil {
		c.Network = NewInmemNetwork()
	}
	n := &Node{
		cfg:         c,
		log:         c.Logger.With("component", "cluster"),
		hc:          NewHCLogger(c.Logger, ""),
		lead:        newLeaderBroker(),
		notifyCh:    make(chan bool, 16),
		reconcileCh: make(chan struct{}, 1),
		bootstrapCh: make(chan struct{}, 1),
		disk:        newDiskHealth(),
	}
	n.barrier = n.Barrier
	n.members = newMemberTable(n.log, n.localMeta)
	probe := nodeMeta{Role: metaRole, Raft: c.RaftAdvertise, API: c.APIAddr, Version: c.Version, Expect: c.BootstrapExpect, HasState: true, Applied: 1 << 62}
	if probe.Raft == "" {
		probe.Raft = c.RaftBind
	}
	if _, err := probe.encode(); err != nil {
		return nil, fmt.Errorf("invalid cluster config: %w", err)
	}
	return n, nil
}

func (n *Node) localMeta() nodeMeta {
	return nodeMeta{
		Role:     metaRole,
		Raft:     n.raftAddr,
		API:      n.cfg.APIAddr,
		Version:  n.cfg.Version,
		Expect:   n.cfg.BootstrapExpect,
		HasState: n.hasState.Load(),
		Applied:  n.gossipApplied.Load(),
		Leaving:  n.leaving.Load(),
		Disk:     shorten(n.DiskError(), 160),
	}
}

// Start opens the Raft stores, starts Raft and gossip, bootstraps when the
// configuration says so, and starts the background loops. ctx bounds only
// the start-up; the node runs until Close.
func (n *Node) Start(ctx context.Context) (err error) {
	if !n.state.CompareAndSwap(stateNew, stateStarting) {
		return errors.New("cluster: Start called twice")
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.teardown()
			n.state.Store(stateClosed)
		}
	}()

	logs, stable, snaps, err := n.openStores()
	if err != nil {
		return err
	}
	n.logGuard = &guardedLogStore{LogStore: logs, onFail: n.onDiskFailure, fault: n.cfg.logFault}
	logs = n.logGuard
	n.stableGuard = newGuardedStableStore(stable, n.onDiskFailure, n.cfg.stableFault)
	stable = n.stableGuard
	n.snaps = snaps
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.openTransport(); err != nil {
		return err
	}
	hasState, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("check existing raft state: %w", err)
	}
	if n.startCommandIndex, err = lastCommandIndex(logs); err != nil {
		return err
	}
	n.hasState.Store(hasState)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeName)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.TrailingLogs = n.cfg.TrailingLogs
	rc.BatchApplyCh = true
	// A removed server stays up (as a non-member that never campaigns) so
	// that it can be re-added if it is in fact alive.
	rc.ShutdownOnRemove = false
	rc.NotifyCh = n.notifyCh
	rc.Logger = n.hc.Named("raft")
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}
	if err := n.recoverFromPeersFile(rc, logs, stable, snaps); err != nil {
		return err
	}
	r, err := raft.NewRaft(rc, n.cfg.FSM, logs, stable, snaps, n.trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r

	switch {
	case hasState:
		n.log.Info("raft state found; resuming", "last_index", r.LastIndex())
	case n.cfg.BootstrapExpect == 1 || (n.cfg.BootstrapExpect == 0 && len(n.cfg.Join) == 0):
		if err := n.bootstrap([]raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(n.raftAddr)}}); err != nil {
			return err
		}
	case n.cfg.BootstrapExpect >= 2:
		n.log.Info("waiting for servers to bootstrap the cluster", "bootstrap_expect", n.cfg.BootstrapExpect)
	default:
		n.log.Info("no raft state; waiting to be added to the cluster by its leader", "join", n.cfg.Join)
	}

	if err := n.startGossip(); err != nil {
		return err
	}

	n.spawn(n.monitorLeadership)
	n.spawn(n.leaderLoop)
	n.spawn(n.membershipLoop)
	n.spawn(n.joinLoop)
	n.spawn(n.diskLoop)
	if !n.hasState.Load() && n.cfg.BootstrapExpect >= 2 {
		n.spawn(n.bootstrapLoop)
	}
	n.state.Store(stateRunning)
	n.log.Info("cluster node started", "node", n.cfg.NodeName, "raft_addr", n.raftAddr,
		"gossip_addr", n.gossipAddr, "api_addr", n.cfg.APIAddr, "in_memory", n.cfg.InMemory)
	return nil
}

func (n *Node) spawn(f func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

func (n *Node) openStores() (raft.LogStore, raft.StableStore, raft.SnapshotStore, error) {
	if n.cfg.InMemory {
		store := raft.NewInmemStore()
		return store, store, raft.NewInmemSnapshotStore(), nil
	}
	dir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("create raft directory: %w", err)
	}
	dbPath := filepath.Join(dir, "raft.db")
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path:        dbPath,
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true},
	})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, nil, nil, fmt.Errorf("open raft log %s: locked by another process (is another berth server using data dir %s?)", dbPath, n.cfg.DataDir)
		}
		return nil, nil, nil, fmt.Errorf("open raft log %s: %w", dbPath, err)
	}
	n.bolt = bolt
	logs, err := newLogCache(bolt, logCacheEntries, logCacheBytes)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, SnapshotsRetained, n.hc.Named("raft-snapshot"))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open raft snapshot store in %s: %w", dir, err)
	}
	return logs, bolt, snaps, nil
}

func (n *Node) openTransport() error {
	if n.cfg.InMemory {
		n.network = n.cfg.Network
		addr := raft.ServerAddress(n.cfg.NodeName)
		t, err := n.network.addRaft(addr)
		if err != nil {
			return err
		}
		n.trans = t
		n.raftAddr = string(addr)
		return nil
	}
	var advertise net.Addr
	if n.cfg.RaftAdvertise != "" {
		a, err := net.ResolveTCPAddr("tcp", n.cfg.RaftAdvertise)
		if err != nil {
			return fmt.Errorf("RaftAdvertise %q: %w", n.cfg.RaftAdvertise, err)
		}
		advertise = a
	}
	tcfg := &raft.NetworkTransportConfig{
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  n.hc.Named("raft-net"),
		// No pipelined replication: when a follower refuses an append (its
		// disk is full), hashicorp/raft's pipeline can deadlock, and the
		// leader then sends it heartbeats but never another entry, so it
		// never catches up (hashicorp/raft#612; found by the nemesis
		// suite's disk-full fault). HashiCorp measured little gain from
		// pipelining (raft#541).
		MaxRPCsInFlight: 1,
	}
	if n.cfg.RaftTLS != nil {
		layer, err := newTLSStreamLayer(n.cfg.RaftBind, advertise, n.cfg.RaftTLS, n.log)
		if err != nil {
			return fmt.Errorf("raft transport on %s: %w", n.cfg.RaftBind, err)
		}
		tcfg.Stream = layer
		n.raftStream = layer
		t := raft.NewNetworkTransportWithConfig(tcfg)
		n.trans = t
		n.raftAddr = string(t.LocalAddr())
		return nil
	}
	t, err := raft.NewTCPTransportWithConfig(n.cfg.RaftBind, advertise, tcfg)
	if err != nil {
		if n.cfg.RaftAdvertise == "" && err.Error() == "local bind address is not advertisable" {
			return fmt.Errorf("RaftBind %q: set RaftAdvertise to an address other servers can dial", n.cfg.RaftBind)
		}
		return fmt.Errorf("raft transport on %s: %w", n.cfg.RaftBind, err)
	}
	n.trans = t
	n.raftAddr = string(t.LocalAddr())
	return nil
}

func (n *Node) startGossip() error {
	mc := memberlist.DefaultLANConfig()
	mc.Name = n.cfg.NodeName
	mc.Delegate = n.members
	mc.Events = n.members
	mc.Conflict = n.members
	mc.Logger = n.hc.Named("memberlist").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	mc.GossipInterval = n.cfg.GossipInterval
	mc.ProbeInterval = n.cfg.ProbeInterval
	mc.ProbeTimeout = n.cfg.ProbeTimeout
	mc.SuspicionMult = n.cfg.SuspicionMult
	mc.DeadNodeReclaimTime = 10 * time.Second
	kr, err := n.openKeyring()
	if err != nil {
		return err
	}
	if kr != nil {
		// Every message is encrypted, and unencrypted ones are refused:
		// a server without the key cannot join or be heard.
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
		n.gossipKeyring = kr
	}
	if n.cfg.InMemory {
		mc.Transport = n.network.addGossip(n.cfg.NodeName)
		mc.TCPTimeout = time.Second
	} else {
		host, port, err := splitHostPort(n.cfg.GossipBind)
		if err != nil {
			return fmt.Errorf("GossipBind: %w", err)
		}
		if host == "" {
			host = "0.0.0.0"
		}
		mc.BindAddr, mc.BindPort = host, port
		mc.AdvertisePort = port
		if n.cfg.GossipAdvertise != "" {
			h, p, err := splitHostPort(n.cfg.GossipAdvertise)
			if err != nil {
				return fmt.Errorf("GossipAdvertise: %w", err)
			}
			mc.AdvertiseAddr, mc.AdvertisePort = h, p
		}
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		if t, ok := mc.Transport.(*inmemGossipTransport); ok {
			_ = t.Shutdown()
		}
		return fmt.Errorf("start gossip on %s: %w", n.cfg.GossipBind, err)
	}
	n.gossip = ml
	n.gossipAddr = ml.LocalNode().Address()
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: invalid port: %w", addr, err)
	}
	return host, port, nil
}

// bootstrap writes the initial configuration. ErrCantBootstrap (state
// already exists) is not an error: some server already bootstrapped us.
func (n *Node) bootstrap(servers []raft.Server) error {
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		n.log.Info("raft state already exists; not bootstrapping")
		return nil
	}
	if err != nil {
		return fmt.Errorf("bootstrap raft cluster: %w", err)
	}
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = string(s.ID)
	}
	n.log.Info("bootstrapped the raft cluster", "servers", ids)
	n.hasState.Store(true)
	return nil
}

// Close shuts the node down without leaving the cluster (like a crash, so
// it stays in the Raft configuration and is expected back). Call Leave
// first for a graceful departure. A watch sees a final "lost" event.
// Close is idempotent.
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	switch n.state.Load() {
	case stateClosed:
		return nil
	case stateNew:
		n.state.Store(stateClosed)
		n.lead.end(0)
		return nil
	}
	n.state.Store(stateClosed)
	err := n.teardown()
	n.log.Info("cluster node stopped", "node", n.cfg.NodeName)
	return err
}

// Shutdown is Close.
func (n *Node) Shutdown() error { return n.Close() }

func (n *Node) teardown() error {
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	var term uint64
	if n.raft != nil {
		term = n.raft.CurrentTerm()
	}
	// Tell leadership watchers first, so the scheduler stops before Raft.
	n.lead.end(term)
	var errs []error
	if n.gossip != nil {
		if err := n.gossip.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("stop gossip: %w", err))
		}
	}
	abandoned := false
	if n.raft != nil {
		if err := n.stopRaft(); errors.Is(err, errRaftStalled) {
			abandoned = true
			errs = append(errs, err)
		} else if err != nil {
			errs = append(errs, fmt.Errorf("stop raft: %w", err))
		}
	}
	if n.trans != nil {
		if n.network != nil {
			n.network.removeRaft(raft.ServerAddress(n.raftAddr))
		} else if c, ok := n.trans.(interface{ Close() error }); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close raft transport: %w", err))
			}
		}
	}
	// Raft's goroutine, abandoned while it waits for the disk, still
	// writes to the store: leave it open (the process is exiting).
	if n.bolt != nil && !abandoned {
		if err := n.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (n *Node) running() error {
	switch n.state.Load() {
	case stateNew, stateStarting:
		return ErrNotStarted
	case stateClosed:
		return ErrShutdown
	}
	return nil
}

// mapRaftErr turns raft's errors into this package's.
func mapRaftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrNotVoter):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return ErrLeadershipLost
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	}
	return err
}

// waitFuture waits for f or ctx. Raft resolves every future eventually
// (at the latest on shutdown), so the helper goroutine always ends.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return mapRaftErr(err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// timeoutFrom is the time left before ctx's deadline, or 0 (no limit).
func timeoutFrom(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		// Already over: propose nothing.
		return 0, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	d := time.Until(dl)
	if d <= 0 {
		return 0, context.DeadlineExceeded
	}
	return d, nil
}

// Apply proposes cmd (one FSM log entry) and waits until it is committed
// and applied on this server. resp is the FSM's return value. On a follower
// it returns ErrNotLeader at once. If ctx ends first the command may still
// commit later: the error says so, and retries must be idempotent.
func (n *Node) Apply(ctx context.Context, cmd []byte) (resp any, index uint64, err error) {
	if err := n.running(); err != nil {
		return nil, 0, err
	}
	if n.raft.State() != raft.Leader {
		return nil, 0, ErrNotLeader
	}
	if err := n.checkProposal(cmd); err != nil {
		return nil, 0, err
	}
	timeout, err := timeoutFrom(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("apply: %w", err)
	}
	type result struct {
		resp  any
		index uint64
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		f := n.raft.Apply(cmd, timeout)
		if err := f.Error(); err != nil {
			ch <- result{err: err}
			return
		}
		ch <- result{resp: f.Response(), index: f.Index()}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			if errors.Is(r.err, raft.ErrEnqueueTimeout) {
				return nil, 0, fmt.Errorf("apply: %w (raft is overloaded): %w", context.DeadlineExceeded, r.err)
			}
			return nil, 0, mapRaftErr(r.err)
		}
		return r.resp, r.index, nil
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("apply: %w; the command may still be committed", ctx.Err())
	}
}

// checkProposal asks Config.CheckProposal about cmd, with the versions
// that the servers of the Raft configuration gossip.
func (n *Node) checkProposal(cmd []byte) error {
	if n.cfg.CheckProposal == nil {
		return nil
	}
	c, err := n.configuration()
	if err != nil {
		return err
	}
	versions := make([]string, 0, len(c.Servers))
	for _, s := range c.Servers {
		v := ""
		if string(s.ID) == n.cfg.NodeName {
			v = n.cfg.Version
		} else if m, ok := n.members.get(string(s.ID)); ok {
			v = m.Version
		}
		versions = append(versions, v)
	}
	if err := n.cfg.CheckProposal(cmd, versions); err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return nil
}

// lastCommandIndex returns the index of the last LogCommand entry in the
// log (0 if none): what the FSM will have applied once the log is replayed.
// Entries after it (a new leader's no-op, configuration changes) never
// reach the FSM.
func lastCommandIndex(logs raft.LogStore) (uint64, error) {
	first, err := logs.FirstIndex()
	if err != nil {
		return 0, fmt.Errorf("read raft log: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return 0, fmt.Errorf("read raft log: %w", err)
	}
	for i := last; i >= first && i > 0; i-- {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return 0, fmt.Errorf("read raft log entry %d: %w", i, err)
		}
		if l.Type == raft.LogCommand {
			return i, nil
		}
	}
	return 0, nil
}

// StartCommandIndex is the index of the last command entry of the log this
// server found on disk when it started: once its FSM has applied that
// index, it holds everything it had before the restart.
func (n *Node) StartCommandIndex() uint64 { return n.startCommandIndex }

// Barrier waits until every entry committed before it is applied to the
// local FSM. Leader only (ErrNotLeader otherwise). Call it after gaining
// leadership and before reading state to act on it.
func (n *Node) Barrier(ctx context.Context) error {
	if err := n.running(); err != nil {
		return err
	}
	timeout, err := timeoutFrom(ctx)
	if err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	if err := waitFuture(ctx, n.raft.Barrier(timeout)); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	return nil
}

// VerifyLeader confirms with a quorum that this server is still leader
// (for linearizable reads). Returns ErrNotLeader otherwise.
func (n *Node) VerifyLeader(ctx context.Context) error {
	if err := n.running(); err != nil {
		return err
	}
	if err := waitFuture(ctx, n.raft.VerifyLeader()); err != nil {
		return fmt.Errorf("verify leader: %w", err)
	}
	return nil
}

// IsLeader reports whether this server is the Raft leader right now.
func (n *Node) IsLeader() bool {
	return n.running() == nil && n.raft.State() == raft.Leader
}

// Leader returns the current leader's id (node name), Raft address and
// advertised API address as this server knows them; empty strings when
// there is no known leader. apiAddr is empty if the leader's gossip
// metadata has not reached this server yet.
func (n *Node) Leader() (id, raftAddr, apiAddr string) {
	if n.running() != nil {
		return "", "", ""
	}
	addr, sid := n.raft.LeaderWithID()
	if sid == "" {
		return "", "", ""
	}
	id, raftAddr = string(sid), string(addr)
	if id == n.cfg.NodeName {
		return id, raftAddr, n.cfg.APIAddr
	}
	if m, ok := n.members.get(id); ok {
		apiAddr = m.APIAddr
	}
	return id, raftAddr, apiAddr
}

// LeaderAPIAddr is the advertised API address of the current leader, or ""
// if unknown. The rpc layer forwards writes there.
func (n *Node) LeaderAPIAddr() string {
	_, _, api := n.Leader()
	return api
}

// WaitForLeader polls until some leader is known (with its API address if
// this server has APIAddr set, meaning the cluster gossips API addresses),
// or ctx ends.
func (n *Node) WaitForLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if err := n.running(); err != nil {
			return err
		}
		if id, _, api := n.Leader(); id != "" && (api != "" || n.cfg.APIAddr == "") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Term is the current Raft term.
func (n *Node) Term() uint64 {
	if n.running() != nil {
		return 0
	}
	return n.raft.CurrentTerm()
}

// Name is this server's node name (its Raft id).
func (n *Node) Name() string { return n.cfg.NodeName }

// RaftAddr is the advertised Raft address (known after Start).
func (n *Node) RaftAddr() string { return n.raftAddr }

// GossipAddr is the advertised gossip address (known after Start); give it
// to other servers' Join.
func (n *Node) GossipAddr() string { return n.gossipAddr }

// APIAddr is the advertised API address from the configuration.
func (n *Node) APIAddr() string { return n.cfg.APIAddr }

// AppliedIndex is the index of the last entry applied to the local FSM.
func (n *Node) AppliedIndex() uint64 {
	if n.running() != nil {
		return 0
	}
	return n.raft.AppliedIndex()
}

// CommitIndex is the latest log index known committed: on a follower, as
// the leader last told it (readiness compares it with AppliedIndex).
func (n *Node) CommitIndex() uint64 {
	if n.running() != nil {
		return 0
	}
	return n.raft.CommitIndex()
}

// Stats returns raft's statistics plus this node's identity and gossip
// counts, for diagnostics.
func (n *Node) Stats() map[string]string {
	out := map[string]string{
		"node_name":   n.cfg.NodeName,
		"raft_addr":   n.raftAddr,
		"gossip_addr": n.gossipAddr,
		"api_addr":    n.cfg.APIAddr,
		"version":     n.cfg.Version,
	}
	if n.running() != nil {
		out["state"] = "not running"
		return out
	}
	for k, v := range n.raft.Stats() {
		out[k] = v
	}
	alive := 0
	for _, m := range n.members.snapshot() {
		if m.Status == StatusAlive {
			alive++
		}
	}
	out["gossip_members_alive"] = strconv.Itoa(alive)
	return out
}

// Peer is one server in the Raft configuration.
type Peer struct {
	ID      string
	Address string
	// Voter is false for a non-voter (a joining server still catching up).
	Voter  bool
	Leader bool
}

func (n *Node) configuration() (raft.Configuration, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, fmt.Errorf("read raft configuration: %w", mapRaftErr(err))
	}
	return f.Configuration(), nil
}

// Peers lists the Raft configuration as this server knows it.
func (n *Node) Peers() ([]Peer, error) {
	if err := n.running(); err != nil {
		return nil, err
	}
	c, err := n.configuration()
	if err != nil {
		return nil, err
	}
	_, leaderID := n.raft.LeaderWithID()
	out := make([]Peer, 0, len(c.Servers))
	for _, s := range c.Servers {
		out = append(out, Peer{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leaderID})
	}
	return out, nil
}

// RemovePeer removes a server from the Raft configuration. Leader only
// (ErrNotLeader otherwise). Meant for servers that are gone: a server that
// is still alive in gossip is added back by the leader's reconciliation,
// so stop it (or have it Leave) first.
func (n *Node) RemovePeer(ctx context.Context, id string) error {
	if err := n.running(); err != nil {
		return err
	}
	if !n.IsLeader() {
		return ErrNotLeader
	}
	c, err := n.configuration()
	if err != nil {
		return err
	}
	if !hasServer(c, id) {
		return fmt.Errorf("remove peer %q: %w", id, ErrUnknownPeer)
	}
	if err := waitFuture(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, 0)); err != nil {
		return fmt.Errorf("remove peer %q: %w", id, err)
	}
	n.log.Info("removed server from the raft configuration", "server", id)
	return nil
}

func hasServer(c raft.Configuration, id string) bool {
	for _, s := range c.Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// TransferLeadership hands leadership to the voter `to`, or to the most
// up-to-date voter when to is empty, and waits for it. Leader only.
func (n *Node) TransferLeadership(ctx context.Context, to string) error {
	if err := n.running(); err != nil {
		return err
	}
	if !n.IsLeader() {
		return ErrNotLeader
	}
	var f raft.Future
	if to == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		if to == n.cfg.NodeName {
			return fmt.Errorf("transfer leadership to %q: it is already the leader", to)
		}
		c, err := n.configuration()
		if err != nil {
			return err
		}
		var target *raft.Server
		for i := range c.Servers {
			if string(c.Servers[i].ID) == to {
				target = &c.Servers[i]
			}
		}
		if target == nil {
			return fmt.Errorf("transfer leadership to %q: %w", to, ErrUnknownPeer)
		}
		if target.Suffrage != raft.Voter {
			return fmt.Errorf("transfer leadership to %q: it is not a voter", to)
		}
		f = n.raft.LeadershipTransferToServer(target.ID, target.Address)
	}
	if err := waitFuture(ctx, f); err != nil {
		return fmt.Errorf("transfer leadership: %w", err)
	}
	return nil
}

// Members lists the servers known through gossip (including failed and
// left ones, until reaped), sorted by name, with Leader and Voter filled in
// from this server's Raft state.
func (n *Node) Members() []Member {
	ms := n.members.snapshot()
	if n.running() != nil {
		return ms
	}
	_, leaderID := n.raft.LeaderWithID()
	voters := map[string]bool{}
	if c, err := n.configuration(); err == nil {
		for _, s := range c.Servers {
			voters[string(s.ID)] = s.Suffrage == raft.Voter
		}
	}
	for i := range ms {
		ms[i].Leader = ms[i].Name == string(leaderID)
		ms[i].Voter = voters[ms[i].Name]
		if ms[i].Name == n.cfg.NodeName {
			// Our own entry reflects what we last gossiped; report now.
			ms[i].HasRaftState = n.hasState.Load()
			ms[i].DiskError = n.DiskError()
			if n.leaving.Load() {
				ms[i].Status = StatusLeft
			}
		}
	}
	return ms
}

// Leave departs the cluster gracefully: a leader first hands leadership to
// another voter; then the server announces its departure through gossip
// and waits until the leader has removed it from the Raft configuration
// (or ctx ends). Call Close afterwards.
func (n *Node) Leave(ctx context.Context) error {
	if err := n.running(); err != nil {
		return err
	}
	self := n.cfg.NodeName
	c, err := n.configuration()
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	inConfig := hasServer(c, self)
	otherVoters, selfVoter := 0, false
	for _, s := range c.Servers {
		switch {
		case string(s.ID) == self:
			selfVoter = s.Suffrage == raft.Voter
		case s.Suffrage == raft.Voter:
			otherVoters++
		}
	}
	if selfVoter && otherVoters > 0 && otherVoters < n.cfg.MinQuorum {
		return fmt.Errorf("leave: the cluster would keep %d voters, fewer than its minimum quorum of %d (--min-quorum); start a replacement first, lower --min-quorum on every server, or remove this server with `berth cluster raft remove-peer %s`", otherVoters, n.cfg.MinQuorum, self)
	}
	if !n.leaving.CompareAndSwap(false, true) {
		return errors.New("leave: already leaving")
	}
	n.log.Info("leaving the cluster", "node", self)
	if inConfig && otherVoters > 0 && n.IsLeader() {
		if err := waitFuture(ctx, n.raft.LeadershipTransfer()); err != nil {
			n.log.Warn("leave: leadership transfer failed; removing ourselves as leader", "err", err)
			if err := waitFuture(ctx, n.raft.RemoveServer(raft.ServerID(self), 0, 0)); err != nil {
				return fmt.Errorf("leave: remove %s from the raft configuration: %w", self, err)
			}
			inConfig = false
		}
	}

	n.members.setLocalStatus(self, StatusLeft)
	announced := time.Now()
	leaveTimeout := 5 * time.Second
	if d, err := timeoutFrom(ctx); err == nil && d > 0 && d < leaveTimeout {
		leaveTimeout = d
	}
	// Announce the departure in our metadata first (see nodeMeta.Leaving),
	// then leave gossip.
	n.gossipUpdateMu.Lock()
	err = n.gossip.UpdateNode(leaveTimeout)
	n.gossipUpdateMu.Unlock()
	if err != nil {
		n.log.Warn("leave: gossip metadata update", "err", err)
	}
	if err := n.gossip.Leave(leaveTimeout); err != nil {
		n.log.Warn("leave: gossip leave broadcast", "err", err)
	}
	if !inConfig || otherVoters == 0 {
		n.log.Info("left the cluster", "node", self)
		return nil
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	// A leader that removes a server stops replicating to it as soon as it
	// appends the new configuration, after one last attempt to send it
	// (hashicorp/raft's startStopReplication): if that attempt fails (a
	// busy machine, a dropped connection), this server never learns of its
	// removal. A leader that contacted us after we announced our departure
	// and then went silent has removed us (or is gone, and the next leader
	// removes a server gossip says left): that ends the wait too. Without
	// any leader in contact since, the wait goes on.
	silent := 5 * n.cfg.HeartbeatTimeout
	for {
		c, err := n.configuration()
		if err != nil {
			return fmt.Errorf("leave: %w", err)
		}
		if !hasServer(c, self) {
			n.log.Info("left the cluster; removed from the raft configuration", "node", self)
			return nil
		}
		if last := n.raft.LastContact(); !n.IsLeader() && last.After(announced) && time.Since(last) > silent {
			n.log.Info("left the cluster; the leader stopped replicating to this server (removed from its configuration)",
				"node", self, "last_contact", last)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("leave: %s is still in the raft configuration (is there a leader?): %w", self, ctx.Err())
		case <-t.C:
		}
	}
}

// StepDown prepares a shutdown that is not a departure (a restart, an
// upgrade): the server stays in the Raft configuration and is expected
// back, but a leader first hands leadership to another voter, so the
// cluster does not wait an election timeout for a new one. Call Close
// afterwards.
func (n *Node) StepDown(ctx context.Context) error {
	if err := n.running(); err != nil || !n.IsLeader() {
		return err
	}
	c, err := n.configuration()
	if err != nil {
		return err
	}
	for _, s := range c.Servers {
		if string(s.ID) != n.cfg.NodeName && s.Suffrage == raft.Voter {
			return n.TransferLeadership(ctx, "")
		}
	}
	return nil // alone: nobody to hand over to
}

// WatchLeadership subscribes to this server's leadership transitions; see
// LeadershipWatch. Close the watch when done.
func (n *Node) WatchLeadership() *LeadershipWatch { return n.lead.subscribe() }

// RunAsLeader runs fn while this server is leader, after a Barrier (so the
// FSM holds every committed entry); term is the Raft term of this
// leadership. fn's context is cancelled the moment leadership is lost or the
// node shuts down; fn must then return promptly, and it is never running
// twice at once.
//
// Leader duties cannot stop silently (as Nomad's leader loop): when the
// barrier fails, or fn returns while still leader (an error or not), the
// work is retried with backoff. After LeaderFailuresBeforeTransfer failures
// in a row, leadership is handed to another voter, which may do better;
// a server alone keeps retrying and logs an error each time, and so does a
// server whose fn fails with ErrNoHandover.
//
// RunAsLeader returns when ctx ends (ctx.Err()) or the node shuts down
// (ErrShutdown), after fn has returned.
func (n *Node) RunAsLeader(ctx context.Context, fn func(ctx context.Context, term uint64) error) error {
	w := n.WatchLeadership()
	defer w.Close()
	var run taskRunner
	defer run.stop()
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			return err
		}
		run.stop()
		if !ev.Leader {
			n.log.Info("leadership lost; leader work stopped", "term", ev.Term)
			continue
		}
		term := ev.Term
		run.start(ctx, func(lctx context.Context) { n.leaderDuties(lctx, term, fn) })
	}
}

// leaderHealthyRun is how long leader work must run before a later failure
// counts as a first failure again.
const leaderHealthyRun = time.Minute

// leaderDuties runs fn for one leadership term until lctx ends, retrying
// failures and handing leadership over when they persist.
func (n *Node) leaderDuties(lctx context.Context, term uint64, fn func(ctx context.Context, term uint64) error) {
	backoff := n.cfg.LeaderRetryBackoff
	failures := 0
	for lctx.Err() == nil {
		started := time.Now()
		err := n.barrier(lctx)
		if err == nil {
			n.log.Info("leadership established; starting leader work", "term", term, "attempt", failures+1)
			err = fn(lctx, term)
			if err == nil {
				err = errors.New("leader work returned while still leader")
			}
			err = fmt.Errorf("leader work: %w", err)
		} else {
			err = fmt.Errorf("establish leadership: %w", err)
		}
		if lctx.Err() != nil {
			return // leadership lost or shutting down: nothing failed
		}
		if time.Since(started) >= leaderHealthyRun {
			failures, backoff = 0, n.cfg.LeaderRetryBackoff
		}
		switch {
		case !n.IsLeader():
			// Stepping down: the loss cancels lctx as soon as it is
			// observed. Not a failure of the duties themselves.
			n.log.Info("leader duties interrupted by a loss of leadership", "term", term, "err", err)
		default:
			failures++
			n.log.Error("leader duties failed; retrying", "term", term, "failures", failures, "retry_in", backoff, "err", err)
		}
		if failures >= n.cfg.LeaderFailuresBeforeTransfer && !errors.Is(err, ErrNoHandover) && n.otherVoters() > 0 {
			n.log.Error("leader duties keep failing; handing leadership to another server", "term", term, "failures", failures)
			if terr := n.TransferLeadership(lctx, ""); terr != nil {
				if lctx.Err() != nil {
					return
				}
				n.log.Error("leadership transfer failed; retrying leader duties here", "term", term, "err", terr)
			} else {
				return // lctx is cancelled as the loss is observed
			}
		}
		t := time.NewTimer(backoff)
		select {
		case <-lctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, n.cfg.LeaderRetryBackoffMax)
	}
}

// otherVoters counts the voters of the Raft configuration other than this
// server.
func (n *Node) otherVoters() int {
	c, err := n.configuration()
	if err != nil {
		return 0
	}
	count := 0
	for _, s := range c.Servers {
		if string(s.ID) != n.cfg.NodeName && s.Suffrage == raft.Voter {
			count++
		}
	}
	return count
}
