package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Defaults tuned for fast failover on a LAN. A follower notices a dead leader
// after HeartbeatTimeout..2×HeartbeatTimeout and an election takes about one
// more round trip, so failover is typically under 1.5 s.
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 20 * time.Millisecond
	DefaultSnapshotInterval   = 30 * time.Second
	DefaultSnapshotThreshold  = 8192
	DefaultTrailingLogs       = 10240
	DefaultDeadServerCleanup  = 30 * time.Second
	DefaultReconcileInterval  = time.Second
	DefaultRetryJoinInterval  = 2 * time.Second
	DefaultReconnectInterval  = 10 * time.Second
	DefaultReapTimeout        = 24 * time.Hour
	DefaultGossipInterval     = 200 * time.Millisecond
	DefaultProbeInterval      = time.Second
	DefaultProbeTimeout       = 500 * time.Millisecond
	DefaultSuspicionMult      = 4
	// Leader duties: retry backoff and failures before handing over.
	DefaultLeaderRetryBackoff           = 500 * time.Millisecond
	DefaultLeaderRetryBackoffMax        = 10 * time.Second
	DefaultLeaderFailuresBeforeTransfer = 3
	// SnapshotsRetained is how many Raft snapshots are kept on disk.
	SnapshotsRetained = 2
)

// Config configures one Berth server's Raft and gossip layer. Zero durations
// and counts take the defaults above. Call New to validate it.
type Config struct {
	// NodeName is this server's unique name; it is also its Raft server id
	// and its memberlist name. Letters, digits, '.', '_' and '-'.
	NodeName string
	// DataDir holds the Raft log (<DataDir>/raft/raft.db) and snapshots
	// (<DataDir>/raft/snapshots). Not used when InMemory is set.
	DataDir string

	// RaftBind is the host:port the Raft TCP transport listens on (port 0
	// picks a free port). RaftAdvertise is the address other servers dial;
	// empty means the bound address, which must then be a specific IP.
	RaftBind      string
	RaftAdvertise string

	// GossipBind is the host:port memberlist listens on (TCP and UDP; port 0
	// picks a free port). GossipAdvertise is the address other servers use;
	// empty means the bound address (or a private IP when bound to 0.0.0.0).
	GossipBind      string
	GossipAdvertise string

	// APIAddr is this server's advertised API address (host:port), gossiped
	// so that followers can forward writes to the leader.
	APIAddr string

	// Join lists gossip addresses (host:port) of servers to join. Joining is
	// retried in the background until one answers.
	Join []string

	// BootstrapExpect is the number of servers that form a new cluster. When
	// that many servers with the same BootstrapExpect see each other through
	// gossip and none has Raft state, the one with the lowest name bootstraps
	// the cluster with all of them. 0 or 1: a server with no Raft state and
	// no Join bootstraps itself alone (and with 1, also when Join is set); a
	// server with Join and BootstrapExpect 0 waits to be added by the leader.
	BootstrapExpect int

	// FSM is the replicated state machine (the fsm package's FSM).
	FSM raft.FSM
	// Logger receives all logs, including raft's and memberlist's.
	Logger *slog.Logger
	// Version is this server's software version, gossiped to others.
	Version string
	// VerifySnapshot, if set, checks snapshot data before RestoreSnapshot
	// hands it to Raft (for example by restoring it into a scratch FSM):
	// raft panics if the FSM fails to restore a snapshot.
	VerifySnapshot func(data io.Reader) error
	// DiscardVerified, if set, is called when a RestoreSnapshot is over
	// (raft.Restore returned, or it failed before): VerifySnapshot may keep
	// what it decoded for the FSM's Restore of the same data, which a
	// failed restore never reached.
	DiscardVerified func()
	// CheckProposal, if set, is asked by Apply before proposing an entry,
	// with the gossiped version of every server in the Raft configuration
	// ("" when unknown). An error refuses the proposal (ErrRefused): the
	// fsm package uses it to hold back command types that some server is
	// too old to apply (fsm.CheckProposal).
	CheckProposal func(cmd []byte, versions []string) error

	// Leader duties (RunAsLeader): after a failure (barrier or leader work)
	// the work is retried after LeaderRetryBackoff, doubling up to
	// LeaderRetryBackoffMax; after LeaderFailuresBeforeTransfer failures in
	// a row the leader hands leadership to another voter (alone, it keeps
	// retrying and logs an error every time).
	LeaderRetryBackoff           time.Duration
	LeaderRetryBackoffMax        time.Duration
	LeaderFailuresBeforeTransfer int

	// Raft timing. LeaderLeaseTimeout must not exceed HeartbeatTimeout and
	// ElectionTimeout must be at least HeartbeatTimeout.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// Snapshots: taken every SnapshotInterval when at least SnapshotThreshold
	// entries were applied since the last one; TrailingLogs entries are kept
	// in the log after a snapshot so that slow followers can catch up.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64

	// DeadServerCleanup is how long a server must be failed (in gossip, or
	// absent from it) before the leader removes it from the Raft
	// configuration, as long as the remaining voters keep a healthy quorum.
	// Negative disables automatic removal.
	DeadServerCleanup time.Duration
	// MinQuorum is the fewest voters that automatic removals (dead-server
	// cleanup) and graceful leaves may leave in the Raft configuration, as
	// Consul's autopilot MinQuorum: a rolling restart or a run of failures
	// never shrinks the cluster to a size where one disk holds the only
	// copy of acknowledged writes. 0 means BootstrapExpect.
	MinQuorum int
	// ReconcileInterval is how often the leader reconciles gossip members
	// with the Raft configuration (it also reacts to every gossip event).
	ReconcileInterval time.Duration
	// RetryJoinInterval is how often Join is retried while this server sees
	// no other server.
	RetryJoinInterval time.Duration
	// DiskProbeInterval is how often a server whose Raft log could not be
	// written probes its disk (default 2s).
	DiskProbeInterval time.Duration
	// logFault, in tests, fails every log append with its result.
	logFault func() error
	// stableFault, in tests, fails every write of Raft's stable store
	// (current term, vote) with its result.
	stableFault func() error
	// ReconnectInterval is how often failed members are re-contacted so that
	// a healed partition or a restarted server without Join is found again.
	ReconnectInterval time.Duration
	// ReapTimeout is how long failed and left members are remembered.
	ReapTimeout time.Duration

	// Gossip timing (memberlist). Defaults are memberlist's LAN profile.
	GossipInterval time.Duration
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	SuspicionMult  int

	// RaftTLS, if set, runs the Raft transport over mutual TLS: only peers
	// whose certificate carries the server identity may connect.
	RaftTLS *RaftTLS
	// GossipKey, if set, encrypts gossip (memberlist keyring, AES with a
	// 16, 24 or 32-byte key). It seeds the keyring kept in the data dir;
	// once that exists (after the first start or a rotation), it wins.
	GossipKey []byte

	// InMemory uses in-memory Raft stores and transports and an in-memory
	// gossip transport instead of disk and sockets (for unit tests). Nodes
	// sharing Network can form a cluster; with Network nil the node gets a
	// private network. Bind and advertise addresses are ignored.
	InMemory bool
	Network  *InmemNetwork
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	setDur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDur(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	setDur(&c.ElectionTimeout, DefaultElectionTimeout)
	setDur(&c.LeaderLeaseTimeout, min(DefaultLeaderLeaseTimeout, c.HeartbeatTimeout))
	setDur(&c.CommitTimeout, DefaultCommitTimeout)
	setDur(&c.SnapshotInterval, DefaultSnapshotInterval)
	setDur(&c.DeadServerCleanup, DefaultDeadServerCleanup)
	if c.MinQuorum == 0 {
		c.MinQuorum = c.BootstrapExpect
	}
	setDur(&c.ReconcileInterval, DefaultReconcileInterval)
	setDur(&c.RetryJoinInterval, DefaultRetryJoinInterval)
	setDur(&c.DiskProbeInterval, DefaultDiskProbeInterval)
	setDur(&c.ReconnectInterval, DefaultReconnectInterval)
	setDur(&c.ReapTimeout, DefaultReapTimeout)
	setDur(&c.GossipInterval, DefaultGossipInterval)
	setDur(&c.ProbeInterval, DefaultProbeInterval)
	setDur(&c.ProbeTimeout, DefaultProbeTimeout)
	setDur(&c.LeaderRetryBackoff, DefaultLeaderRetryBackoff)
	setDur(&c.LeaderRetryBackoffMax, max(DefaultLeaderRetryBackoffMax, c.LeaderRetryBackoff))
	if c.LeaderFailuresBeforeTransfer == 0 {
		c.LeaderFailuresBeforeTransfer = DefaultLeaderFailuresBeforeTransfer
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = DefaultSuspicionMult
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate checks a defaulted configuration; every error names the field.
func (c *Config) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if err := validateNodeName(c.NodeName); err != nil {
		add("NodeName: %w", err)
	}
	if c.FSM == nil {
		add("FSM: must be set")
	}
	if c.BootstrapExpect < 0 {
		add("BootstrapExpect: must be >= 0, got %d", c.BootstrapExpect)
	}
	if c.MinQuorum < 0 {
		add("MinQuorum: must be >= 0, got %d", c.MinQuorum)
	}
	if !c.InMemory {
		if c.DataDir == "" {
			add("DataDir: must be set")
		}
		if err := validateHostPort(c.RaftBind, false); err != nil {
			add("RaftBind: %w", err)
		}
		if c.RaftAdvertise != "" {
			if err := validateHostPort(c.RaftAdvertise, true); err != nil {
				add("RaftAdvertise: %w", err)
			}
		}
		if err := validateHostPort(c.GossipBind, false); err != nil {
			add("GossipBind: %w", err)
		}
		if c.GossipAdvertise != "" {
			if err := validateHostPort(c.GossipAdvertise, true); err != nil {
				add("GossipAdvertise: %w", err)
			}
		}
	}
	if c.GossipKey != nil {
		if err := memberlist.ValidateKey(c.GossipKey); err != nil {
			add("GossipKey: %w", err)
		}
	}
	if c.APIAddr != "" {
		if err := validateHostPort(c.APIAddr, true); err != nil {
			add("APIAddr: %w", err)
		}
	}
	for i, j := range c.Join {
		if err := validateHostPort(j, true); err != nil {
			add("Join[%d]: %w", i, err)
		}
	}
	positive := []struct {
		name string
		d    time.Duration
		min  time.Duration
	}{
		{"HeartbeatTimeout", c.HeartbeatTimeout, 5 * time.Millisecond},
		{"ElectionTimeout", c.ElectionTimeout, 5 * time.Millisecond},
		{"LeaderLeaseTimeout", c.LeaderLeaseTimeout, 5 * time.Millisecond},
		{"CommitTimeout", c.CommitTimeout, time.Millisecond},
		{"SnapshotInterval", c.SnapshotInterval, 5 * time.Millisecond},
		{"ReconcileInterval", c.ReconcileInterval, time.Millisecond},
		{"RetryJoinInterval", c.RetryJoinInterval, time.Millisecond},
		{"ReconnectInterval", c.ReconnectInterval, time.Millisecond},
		{"ReapTimeout", c.ReapTimeout, time.Millisecond},
		{"GossipInterval", c.GossipInterval, time.Millisecond},
		{"ProbeInterval", c.ProbeInterval, time.Millisecond},
		{"ProbeTimeout", c.ProbeTimeout, time.Millisecond},
	}
	for _, p := range positive {
		if p.d < p.min {
			add("%s: must be at least %s, got %s", p.name, p.min, p.d)
		}
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		add("LeaderLeaseTimeout: %s must not exceed HeartbeatTimeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		add("ElectionTimeout: %s must be at least HeartbeatTimeout %s", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	if c.ProbeTimeout > c.ProbeInterval {
		add("ProbeTimeout: %s must not exceed ProbeInterval %s", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.SuspicionMult < 1 {
		add("SuspicionMult: must be >= 1, got %d", c.SuspicionMult)
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid cluster config: %w", errors.Join(errs...))
	}
	return nil
}

func validateNodeName(name string) error {
	if name == "" {
		return errors.New("must be set")
	}
	if len(name) > 128 {
		return fmt.Errorf("%q is longer than 128 characters", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("%q contains %q; use letters, digits, '.', '_' and '-'", name, r)
		}
	}
	return nil
}

// validateHostPort checks "host:port". With advertise set, the port must
// not be 0 and the host must not be empty or unspecified (0.0.0.0, ::).
func validateHostPort(addr string, advertise bool) error {
	if addr == "" {
		return errors.New("must be set (host:port)")
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("%q has an invalid port %q", addr, portStr)
	}
	if advertise {
		if port == 0 {
			return fmt.Errorf("%q: port 0 cannot be advertised or dialed", addr)
		}
		if host == "" {
			return fmt.Errorf("%q: host must be set", addr)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return fmt.Errorf("%q: %s cannot be advertised or dialed; give a specific address", addr, host)
		}
	}
	return nil
}
