package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/backup"
	"github.com/berth-dev/berth/cluster"
	"github.com/berth-dev/berth/fsm"
	"github.com/berth-dev/berth/metrics"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/rpc"
	"github.com/berth-dev/berth/rpc/clusteradapter"
	"github.com/berth-dev/berth/rpc/marathon"
	"github.com/berth-dev/berth/scheduler"
	"github.com/berth-dev/berth/ui"
)

// version is the software version servers gossip to each other.
var version = "0.1.0-dev"

// serverOptions configures one Berth server.
type serverOptions struct {
	nodeName        string
	dataDir         string
	apiAddr         string
	apiAdvertise    string
	raftAddr        string
	raftAdvertise   string
	gossipAddr      string
	gossipAdvertise string
	// backupBinaryURL is where agents fetch the berth binary for backup
	// and restore tasks.
	backupBinaryURL string
	// migrationTarget is the staging target of migrations of apps without
	// a backup target.
	migrationTarget string
	join            []string
	bootstrapExpect int

	mesosMaster        string
	mesosRole          string
	mesosPrincipal     string
	mesosUser          string
	mesosSecretFile    string
	reservationTimeout time.Duration
	reconcileInterval  time.Duration
	reconcileTimeout   time.Duration

	deadServerCleanup time.Duration
	minQuorum         int
	leaveOnTerminate  bool

	maxApps            int
	maxInstances       int
	memoryLimit        string
	maxSnapshotSize    string
	maxInstancesPerApp int
	maxEnvBytes        int
	heartbeatTimeout   time.Duration
	electionTimeout    time.Duration
	leaderLease        time.Duration
	logLevel           string

	security securityOptions

	aclEnabled bool
	// taskUsers is --task-users; nil when not given (the default depends
	// on the command, see taskUserPolicy).
	taskUsers []string
	// anyTaskUserOnLoopback is berth dev's default: any task user while
	// the API listens on loopback only.
	anyTaskUserOnLoopback bool
	logFormat             string
	metricsAddr           string
	debugAddr             string
	// recentLogs keeps the server's recent log lines (set by runDaemon).
	recentLogs *logRing
}

func (o *serverOptions) registerServer(fs *pflag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&o.nodeName, "node-name", host, "unique name of this server (also its Raft id)")
	fs.StringVar(&o.dataDir, "data-dir", "./berth-data", "directory for the Raft log and snapshots")
	fs.StringVar(&o.apiAddr, "api-addr", defaultAPIAddr, "host:port the API listens on (advertised to other servers)")
	fs.StringVar(&o.apiAdvertise, "api-advertise", "", "API address other servers forward writes to (default: --api-addr; required when it binds 0.0.0.0)")
	fs.StringVar(&o.raftAddr, "raft-addr", "127.0.0.1:7071", "host:port for Raft traffic between servers")
	fs.StringVar(&o.raftAdvertise, "raft-advertise", "", "Raft address other servers dial (default: --raft-addr)")
	fs.StringVar(&o.gossipAddr, "gossip-addr", "127.0.0.1:7072", "host:port for gossip (TCP and UDP)")
	fs.StringVar(&o.gossipAdvertise, "gossip-advertise", "", "gossip address other servers use (default: --gossip-addr)")
	fs.StringVar(&o.migrationTarget, "migration-target", os.Getenv("BERTH_MIGRATION_TARGET"), "backup target (file:///path mounted on every agent and server, or s3://bucket/prefix) through which instances of apps without a backup target are migrated (berth dev: under --data-dir)")
	fs.StringVar(&o.backupBinaryURL, "backup-binary-url", os.Getenv("BERTH_BACKUP_BINARY_URL"), "URL agents fetch the berth binary from for backup and restore tasks (default: this server's GET /v1/binary/berth at --api-advertise)")
	fs.StringSliceVar(&o.join, "join", nil, "gossip address of a server to join (repeatable, or comma-separated)")
	fs.IntVar(&o.bootstrapExpect, "bootstrap-expect", 0, "number of servers that form a new cluster together (0: a server alone bootstraps itself)")
	fs.DurationVar(&o.deadServerCleanup, "dead-server-cleanup", cluster.DefaultDeadServerCleanup, "remove a server dead for this long from Raft, when quorum allows (negative: never)")
	fs.IntVar(&o.minQuorum, "min-quorum", 0, "fewest voters that dead-server cleanup and leaves may leave in the Raft configuration (default: --bootstrap-expect)")
	fs.BoolVar(&o.leaveOnTerminate, "leave-on-terminate", false, "leave the Raft configuration on SIGTERM/SIGINT (for a server being retired; a restart must not leave)")
	fs.DurationVar(&o.heartbeatTimeout, "raft-heartbeat-timeout", cluster.DefaultHeartbeatTimeout, "Raft heartbeat timeout")
	fs.DurationVar(&o.electionTimeout, "raft-election-timeout", cluster.DefaultElectionTimeout, "Raft election timeout")
	fs.DurationVar(&o.leaderLease, "raft-leader-lease-timeout", 0, "how long a leader keeps leading without hearing from a quorum; at most --raft-heartbeat-timeout (default: the smaller of 250ms and the heartbeat timeout). Raise all three together on slow or overloaded machines, where leadership changes often")
	o.security.register(fs)
	o.registerMesos(fs, "http://127.0.0.1:5050")
	o.registerLimits(fs)
}

// registerLimits registers the caps on what clients may ask for.
func (o *serverOptions) registerLimits(fs *pflag.FlagSet) {
	fs.IntVar(&o.maxApps, "max-apps", rpc.DefaultMaxApps, "most apps the cluster holds")
	fs.IntVar(&o.maxInstances, "max-instances", rpc.DefaultMaxInstances, "most instances of all apps together")
	fs.IntVar(&o.maxInstancesPerApp, "max-instances-per-app", appmodel.DefaultMaxInstances, "most instances of one app")
	fs.IntVar(&o.maxEnvBytes, "max-env-bytes", appmodel.DefaultMaxEnvBytes, "most bytes of env names and values of one app")
	fs.StringVar(&o.maxSnapshotSize, "max-snapshot-size", "1GiB", "largest snapshot a restore may send (berth cluster snapshot restore; e.g. 2GiB)")
	fs.StringVar(&o.memoryLimit, "memory-limit", "", "soft limit on the server's memory (Go's GOMEMLIMIT, e.g. 300MiB): the garbage collector works harder near it; default: GOMEMLIMIT's, else none")
}

func (o *serverOptions) registerMesos(fs *pflag.FlagSet, master string) {
	if master != "" {
		fs.StringVar(&o.mesosMaster, "mesos-master", master, "URL of the Mesos master")
	}
	fs.StringVar(&o.mesosRole, "mesos-role", "berth", "Mesos role for reservations")
	fs.StringVar(&o.mesosPrincipal, "mesos-principal", "berth", "Mesos principal of the framework and its reservations")
	fs.StringVar(&o.mesosUser, "mesos-user", "", "FrameworkInfo.user (default: the current user)")
	fs.StringVar(&o.mesosSecretFile, "mesos-secret-file", "", "file holding the principal's secret, for HTTP basic framework authentication")
	o.security.registerMesos(fs)
	fs.DurationVar(&o.reservationTimeout, "reservation-timeout", 20*time.Second, "unpin an instance whose reservation never shows up in an offer after this long")
	fs.DurationVar(&o.reconcileInterval, "reconcile-interval", 10*time.Minute, "period of task reconciliation with Mesos")
	fs.DurationVar(&o.reconcileTimeout, "reconciliation-timeout", 60*time.Second, "after subscribing, how long to wait for Mesos to answer for every known task before logging reconciliation as incomplete")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "host:port to serve GET /metrics on as well (it is always served on the API address)")
	fs.StringVar(&o.debugAddr, "debug-addr", "", "loopback host:port to serve Go's pprof on (/debug/pprof/; off by default)")
}

// registerSecurity registers the ACL and task-user flags. taskUsersDefault
// describes the default of --task-users for the help text.
func (o *serverOptions) registerSecurity(fs *pflag.FlagSet, taskUsersDefault string) {
	fs.BoolVar(&o.aclEnabled, "acl-enabled", false, "require an ACL token on every API call (bootstrap with `berth acl bootstrap`)")
	fs.StringSliceVar(&o.taskUsers, "task-users", nil, "users that apps' tasks may run as, comma-separated; * allows any user (default: "+taskUsersDefault+")")
}

// taskUserPolicy returns the allowlist of task users (nil: any) and the
// user of tasks of apps that name none (the framework user).
func (o *serverOptions) taskUserPolicy(apiAddr string) (allowed []string, frameworkUser string, err error) {
	frameworkUser = o.mesosUser
	if frameworkUser == "" {
		// As the scheduler does (FrameworkInfo.user).
		if cu, err := user.Current(); err == nil && cu.Username != "" {
			frameworkUser = cu.Username
		} else {
			frameworkUser = "root"
		}
	}
	switch {
	case slices.Contains(o.taskUsers, "*"):
		if len(o.taskUsers) > 1 {
			return nil, "", fmt.Errorf("--task-users: * allows any user and cannot be combined with names")
		}
		return nil, frameworkUser, nil
	case o.taskUsers != nil:
		allowed = make([]string, 0, len(o.taskUsers))
		for _, u := range o.taskUsers {
			if u = strings.TrimSpace(u); u == "" {
				return nil, "", fmt.Errorf("--task-users: empty user name in %q", strings.Join(o.taskUsers, ","))
			}
			allowed = append(allowed, u)
		}
		return allowed, frameworkUser, nil
	case o.anyTaskUserOnLoopback && isLoopback(apiAddr):
		return nil, frameworkUser, nil
	}
	return []string{frameworkUser}, frameworkUser, nil
}

// bindEnv lets every flag of fs fall back to BERTH_<FLAG_NAME> when the flag
// is not given on the command line.
func bindEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		env := "BERTH_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	return errors.Join(errs...)
}

// runDaemon applies BERTH_* environment fallbacks to c's flags, builds the
// logger from o's log flags (keeping recent lines in o.recentLogs), and
// runs fn until SIGINT or SIGTERM.
func runDaemon(c *cobra.Command, o *serverOptions, fn func(ctx context.Context, logger *slog.Logger) error) error {
	if err := bindEnv(c.Flags()); err != nil {
		return err
	}
	o.recentLogs = newLogRing(defaultLogRingBytes)
	logger, err := newLogger(o.logLevel, o.logFormat, o.recentLogs)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return fn(ctx, logger)
}

// absolutePaths makes each non-empty path flag absolute, once, at start-up:
// the working directory of the process is not the one of the tasks, logs or
// tools that later see these paths.
func absolutePaths(flags map[string]*string) error {
	for flag, p := range flags {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("%s %q: %w", flag, *p, err)
		}
		*p = abs
	}
	return nil
}

func init() {
	var o serverOptions
	c := &cobra.Command{
		Use:   "server",
		Short: "Run a Berth server (one of three or five; alone it is a cluster of one)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return runDaemon(c, &o, func(ctx context.Context, logger *slog.Logger) error {
				return runServer(ctx, &o, logger, nil)
			})
		},
	}
	o.registerServer(c.Flags())
	o.registerSecurity(c.Flags(), "the framework user alone: --mesos-user, or the current user")
	rootCmd.AddCommand(c)
}

// runServer runs a server until ctx ends: Raft and gossip, the API, and, while
// this server leads, the Mesos scheduler. ready, if set, is called with the
// bound API address once the API serves.
func runServer(ctx context.Context, o *serverOptions, logger *slog.Logger, ready func(apiAddr string)) error {
	// `berth cluster leave` ends the server too, once it has left.
	ctx, leftCluster := context.WithCancel(ctx)
	defer leftCluster()
	var left atomic.Bool
	if o.nodeName == "" {
		return errors.New("--node-name: must be set (no hostname available)")
	}
	if o.dataDir == "" {
		return errors.New("--data-dir: must be set")
	}
	if err := applyMemoryLimit(o.memoryLimit, logger); err != nil {
		return err
	}
	maxSnapshot, err := parseSize("--max-snapshot-size", o.maxSnapshotSize)
	if err != nil {
		return err
	}
	paths := o.security.paths()
	paths["--data-dir"], paths["--mesos-secret-file"] = &o.dataDir, &o.mesosSecretFile
	if err := absolutePaths(paths); err != nil {
		return err
	}
	sec, err := resolveSecurity(&o.security, map[string]string{"--api-addr": o.apiAddr, "--raft-addr": o.raftAddr, "--gossip-addr": o.gossipAddr}, logger)
	if err != nil {
		return err
	}
	sec.reloadOnSIGHUP(ctx, logger)
	schedCfg := scheduler.Config{
		MesosMaster:           o.mesosMaster,
		Role:                  o.mesosRole,
		Principal:             o.mesosPrincipal,
		User:                  o.mesosUser,
		ReservationTimeout:    o.reservationTimeout,
		ReconcileInterval:     o.reconcileInterval,
		ReconciliationTimeout: o.reconcileTimeout,
		MesosTLS:              sec.mesosTLS,
		Logger:                logger,
	}
	if o.leaderLease < 0 || o.leaderLease > o.heartbeatTimeout {
		return fmt.Errorf("--raft-leader-lease-timeout %s: must not be negative nor exceed --raft-heartbeat-timeout %s (raise both)", o.leaderLease, o.heartbeatTimeout)
	}
	if o.mesosSecretFile != "" {
		secret, err := os.ReadFile(o.mesosSecretFile)
		if err != nil {
			return fmt.Errorf("--mesos-secret-file: %w", err)
		}
		schedCfg.Secret = strings.TrimSpace(string(secret))
		if schedCfg.Secret == "" {
			return fmt.Errorf("--mesos-secret-file: %s is empty", o.mesosSecretFile)
		}
	}
	if err := schedCfg.Validate(); err != nil {
		return fmt.Errorf("--mesos-master/--mesos-role: %w", err)
	}
	mesosOperator, err := scheduler.NewOperatorClient(schedCfg)
	if err != nil {
		return fmt.Errorf("--mesos-master: %w", err)
	}
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if o.debugAddr != "" {
		if err := loopbackOnly("--debug-addr", o.debugAddr); err != nil {
			return err
		}
	}
	reg := metrics.New()
	reg.MustRegister(metrics.DiskCollector(o.dataDir))
	if err := metrics.InstallGoMetrics(); err != nil {
		return fmt.Errorf("metrics: install the go-metrics sink: %w", err)
	}
	sideCtx, stopSide := context.WithCancel(context.Background())
	var sideWaits []func()
	defer func() {
		stopSide()
		for _, wait := range sideWaits {
			wait()
		}
	}()
	for _, side := range []struct {
		flag, addr, what string
		h                http.Handler
	}{
		{"--metrics-addr", o.metricsAddr, "metrics", metricsOnly(reg.Handler())},
		{"--debug-addr", o.debugAddr, "pprof", pprofHandler()},
	} {
		if side.addr == "" {
			continue
		}
		l, err := listenSide(side.flag, side.addr)
		if err != nil {
			return err
		}
		sideWaits = append(sideWaits, serveSide(sideCtx, side.what, l, side.h, logger))
	}

	lis, err := net.Listen("tcp", o.apiAddr)
	if err != nil {
		return fmt.Errorf("--api-addr: %w", err)
	}
	defer lis.Close()
	apiAddr := lis.Addr().String()
	advertise := apiAddr
	if o.apiAdvertise != "" {
		advertise = o.apiAdvertise
	}
	schedCfg.BinaryURL = o.backupBinaryURL
	schedCfg.MigrationTarget = o.migrationTarget
	if schedCfg.BinaryURL == "" {
		scheme := "http"
		if sec.tlsOn() {
			scheme = "https"
		}
		schedCfg.BinaryURL = scheme + "://" + advertise + "/v1/binary/berth"
	}

	taskUsers, frameworkUser, err := o.taskUserPolicy(apiAddr)
	if err != nil {
		return err
	}

	state := fsm.New(logger.With("component", "fsm"))
	state.SetObserver(reg.FSM)
	// An online copy whose container's outcome is lost is decided by its
	// target: succeeded only if the backup's manifest is there.
	schedCfg.BackupManifest = func(ctx context.Context, b *v1.Backup) (bool, error) {
		env := map[string]string{}
		if app, err := state.State().Snapshot().App(b.GetAppId()); err == nil && app != nil {
			env = appmodel.BackupEnv(app)
		}
		return backup.HasManifest(ctx, b.GetTarget(), env, b.GetId())
	}
	node, err := cluster.New(cluster.Config{
		NodeName:           o.nodeName,
		DataDir:            filepath.Clean(o.dataDir),
		RaftBind:           o.raftAddr,
		RaftAdvertise:      o.raftAdvertise,
		GossipBind:         o.gossipAddr,
		GossipAdvertise:    o.gossipAdvertise,
		APIAddr:            advertise,
		Join:               o.join,
		BootstrapExpect:    o.bootstrapExpect,
		FSM:                state,
		Logger:             logger,
		Version:            version,
		DeadServerCleanup:  o.deadServerCleanup,
		MinQuorum:          o.minQuorum,
		HeartbeatTimeout:   o.heartbeatTimeout,
		ElectionTimeout:    o.electionTimeout,
		LeaderLeaseTimeout: o.leaderLease,
		RaftTLS:            sec.raftTLS(),
		GossipKey:          sec.gossipKey,
		// Check a snapshot before Raft sees it: Raft cannot recover from
		// an FSM that fails to restore. The store decoded to check it is
		// the one the FSM's Restore then installs (same bytes).
		VerifySnapshot:  state.PrepareRestore,
		DiscardVerified: state.DiscardPrepared,
		// Hold back command types that some server is too old to apply.
		CheckProposal: fsm.CheckProposal,
	})
	if err != nil {
		return err
	}
	if err := node.Start(ctx); err != nil {
		return fmt.Errorf("start cluster node: %w", err)
	}
	defer node.Close()

	events := rpc.NewEventBroker(1024, logger)
	defer events.Close()
	// What the scheduler knows while it leads and does not replicate.
	live := scheduler.NewLive()
	apiCfg := rpc.Config{
		Live:       live,
		Store:      state.State,
		Cluster:    clusteradapter.New(node),
		Events:     events,
		Publisher:  events,
		Logger:     logger.With("component", "api"),
		TLS:        sec.apiTLS(o.security.tlsVerifyClient),
		HTTPClient: sec.peerClient(),
		ServerName: sec.serverName,
		Keyring:    clusteradapter.Keyring{Node: node},
		// berth agent: the Mesos operator API with the framework's
		// credentials.
		MesosOperator:   mesosOperator,
		MesosMasterURL:  o.mesosMaster,
		MigrationTarget: o.migrationTarget,
		Limits: appmodel.Limits{
			MaxInstances: int32(min(o.maxInstancesPerApp, math.MaxInt32)),
			MaxEnvBytes:  o.maxEnvBytes,
		},
		MaxApps:      o.maxApps,
		MaxInstances: o.maxInstances,
		// A follower keeps a streamed snapshot here while forwarding it.
		SpoolDir:         o.dataDir,
		MaxSnapshotBytes: int(maxSnapshot),
		OnLeft:           func() { left.Store(true); leftCluster() },
		// Marathon's /v2 REST API, next to Connect on the same address.
		REST: marathon.New(marathon.Config{
			Store: state.State, Version: version, MesosMaster: o.mesosMaster,
			Logger: logger.With("component", "marathon-api"),
		}).Handler,

		ACLEnabled:      o.aclEnabled,
		TaskUsers:       taskUsers,
		DefaultTaskUser: frameworkUser,

		Metrics:             reg,
		SchedulerSubscribed: reg.Scheduler.IsSubscribed,

		UI: ui.Handler(),
	}
	if o.recentLogs != nil {
		apiCfg.RecentLogs = o.recentLogs.WriteSince
	}
	api := rpc.NewServer(apiCfg)
	serveCtx, stopServe := context.WithCancel(context.Background())
	serveDone := make(chan error, 1)
	go func() {
		// A restarted server applies its log only once it hears from a
		// leader (or becomes one). Serving before that would answer reads
		// from an empty store, so the API waits until the log it had on
		// disk is applied; connections queue meanwhile.
		if err := waitReplayed(serveCtx, state, node.StartCommandIndex(), logger); err != nil {
			serveDone <- nil
			return
		}
		serveDone <- api.Serve(serveCtx, lis)
	}()
	logger.Info("berth server started", "node", o.nodeName, "api", apiAddr, "raft", node.RaftAddr(),
		"gossip", node.GossipAddr(), "mesos_master", o.mesosMaster, "data_dir", o.dataDir,
		"tls", sec.tlsOn(), "tls_verify_client", o.security.tlsVerifyClient, "server_identity", sec.serverName, "gossip_encrypted", sec.gossipKey != nil,
		"acl_enabled", o.aclEnabled, "task_users", taskUsersText(taskUsers))
	if ready != nil {
		ready(apiAddr)
	}

	leaderDone := make(chan error, 1)
	go func() {
		// The cluster retries the scheduler when it stops, and hands
		// leadership to another server when it keeps stopping.
		leaderDone <- node.RunAsLeader(ctx, func(lctx context.Context, term uint64) error {
			deps := scheduler.Deps{
				Store: func() scheduler.Store { return schedulerStore{state.State()} },
				Commit: func(ctx context.Context, plan *v1.SchedulerPlanCommand) error {
					// The plan applies only in the term it was decided in.
					plan.IfLeaderTerm = term
					return applyCommand(ctx, node, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, plan)
				},
				SetFrameworkID: func(ctx context.Context, id string) error {
					return applyCommand(ctx, node, v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: id})
				},
				Publish:  events.Publish,
				Observer: reg.Scheduler,
				Live:     live,
			}
			// The leader's backup duties (progress, totals, retention)
			// last as long as this term's scheduler.
			dutiesCtx, stopDuties := context.WithCancel(lctx)
			defer stopDuties()
			go api.RunBackupDuties(dutiesCtx)
			// A fresh scheduler per attempt: nothing a previous term or
			// attempt remembered in memory may leak into this one.
			err := scheduler.New(schedCfg, deps).Run(lctx)
			switch {
			case err == nil:
				return nil
			case errors.Is(err, scheduler.ErrFrameworkRemoved), errors.Is(err, scheduler.ErrNoFrameworkID):
				// The replicated state is at fault: every server would
				// stop the same way. Retry here (and log) until an
				// operator acts; moving leadership would not help.
				return fmt.Errorf("scheduler (operator action needed): %w: %w", cluster.ErrNoHandover, err)
			default:
				return fmt.Errorf("scheduler: %w", err)
			}
		})
	}()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-serveDone:
		logger.Error("API server stopped", "err", serveErr)
	}
	logger.Info("shutting down", "node", o.nodeName, "leave", o.leaveOnTerminate)
	// A stop is a restart unless told otherwise: the server stays in the
	// Raft configuration (leaving on every SIGTERM let a rolling restart
	// shrink the cluster to one voter), and a leader hands leadership over
	// first. A retired server leaves (`berth cluster leave`, or
	// --leave-on-terminate).
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	switch {
	case left.Load():
	case o.leaveOnTerminate:
		if err := node.Leave(stopCtx); err != nil {
			logger.Warn("leave the cluster", "err", err)
		}
	default:
		if err := node.StepDown(stopCtx); err != nil {
			logger.Warn("hand leadership over before stopping", "err", err)
		}
	}
	cancel()
	stopServe()
	<-leaderDone
	if serveErr == nil {
		<-serveDone
	}
	return serveErr
}

// taskUsersText renders the task-user allowlist for the log.
func taskUsersText(users []string) string {
	if users == nil {
		return "any"
	}
	return strings.Join(users, ",")
}

// applyCommand commits one FSM command through Raft on this (leader) server
// and returns the FSM's refusal, if any.
func applyCommand(ctx context.Context, node *cluster.Node, t v1.CommandType, msg proto.Message) error {
	data, err := fsm.Encode(t, msg)
	if err != nil {
		return err
	}
	resp, _, err := node.Apply(ctx, data)
	if err != nil {
		return err
	}
	if r, ok := resp.(*fsm.ApplyResult); ok && r.Err != nil {
		return r.Err
	}
	return nil
}

// waitReplayed waits until the local FSM has applied the log up to index.
func waitReplayed(ctx context.Context, state *fsm.FSM, index uint64, logger *slog.Logger) error {
	if state.State().LastIndex() >= index {
		return nil
	}
	logger.Info("replaying the raft log before serving the API", "applied", state.State().LastIndex(), "last_index", index)
	if err := fsm.WaitIndex(ctx, state.State, index); err != nil {
		return err
	}
	logger.Info("raft log replayed", "applied", state.State().LastIndex())
	return nil
}

// schedulerStore hands the state store to the scheduler, which reads it
// through its own interfaces (it does not import fsm).
type schedulerStore struct{ *fsm.Store }

// Snapshot implements scheduler.Store.
func (s schedulerStore) Snapshot() scheduler.StateReader { return s.Store.Snapshot() }
