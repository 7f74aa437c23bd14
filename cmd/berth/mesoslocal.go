package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/mesoslocal"
)

func init() { rootCmd.AddCommand(newMesosLocalCmd()) }

// newMesosLocalCmd is `berth mesos-local`: a Mesos master and agents in one
// process, for machines without a Mesos cluster.
func newMesosLocalCmd() *cobra.Command {
	var (
		cfg       mesoslocal.Config
		logLevel  string
		logFormat string
		simRun    time.Duration
		debugAddr string
	)
	cmd := &cobra.Command{
		Use:   "mesos-local",
		Short: "Run an embedded Mesos-compatible master with local agents",
		Long: `mesos-local runs a Mesos master and one or more agents in one process.
It speaks the Mesos v1 scheduler and operator HTTP APIs, runs tasks as local
processes and keeps persistent volumes and reservations under the work dir,
so they survive a restart. As Mesos agents with checkpointing, it leaves the
tasks of checkpointing frameworks (Berth is one) running when it stops or
crashes, and adopts them when it starts again on the same work dir
(--kill-tasks-on-exit stops them with it). With --simulate, agents run tasks
without processes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			logger, err := newLogger(logLevel, logFormat, nil)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			cfg.SimTaskDuration = simRun
			if debugAddr != "" {
				// Go's pprof, as berth server --debug-addr serves it.
				if err := loopbackOnly("--debug-addr", debugAddr); err != nil {
					return err
				}
				l, err := listenSide("--debug-addr", debugAddr)
				if err != nil {
					return err
				}
				sideCtx, stopSide := context.WithCancel(context.Background())
				defer serveSide(sideCtx, "pprof", l, pprofHandler(), logger)()
				defer stopSide()
			}
			c, err := mesoslocal.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := c.Start(ctx); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mesos-local listening on %s (agents: %v)\n", c.URL(), c.AgentIDs())
			<-ctx.Done()
			cfg.Logger.Info("shutting down mesos-local")
			return c.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", mesosLocalEnvOr("BERTH_MESOS_LOCAL_LISTEN", "127.0.0.1:5050"), "master HTTP address HOST:PORT (env BERTH_MESOS_LOCAL_LISTEN)")
	f.StringVar(&cfg.WorkDir, "work-dir", mesosLocalEnvOr("BERTH_MESOS_LOCAL_WORK_DIR", "./mesos-local-data"), "directory for agent checkpoints, sandboxes and volumes (env BERTH_MESOS_LOCAL_WORK_DIR)")
	f.IntVar(&cfg.Agents, "agents", 1, "number of agents")
	f.StringVar(&cfg.AgentResources, "agent-resources", os.Getenv("BERTH_MESOS_LOCAL_AGENT_RESOURCES"), `resources of each agent, e.g. "cpus:4;mem:8192;disk:20000;ports:[31000-32000]" (default: sized from this machine)`)
	f.BoolVar(&cfg.Simulate, "simulate", false, "simulate tasks without running processes")
	f.BoolVar(&cfg.KillTasksOnClose, "kill-tasks-on-exit", false, "kill every task when mesos-local stops (default: tasks of checkpointing frameworks keep running and are adopted by the next start)")
	f.DurationVar(&simRun, "simulate-task-duration", 0, "with --simulate, how long a task runs before finishing (0: until killed)")
	f.DurationVar(&cfg.AllocationInterval, "allocation-interval", time.Second, "offer batching interval")
	f.StringVar(&cfg.Hostname, "hostname", "", "agents' hostname in offers (default: the listen host, or 127.0.0.1)")
	f.BoolVar(&cfg.DistinctHosts, "distinct-hosts", false, "give each agent its own loopback address as its hostname (127.0.0.1, 127.0.0.2, ...) instead of --hostname")
	f.StringVar(&cfg.AgentAttributes, "agent-attributes", os.Getenv("BERTH_MESOS_LOCAL_AGENT_ATTRIBUTES"), `agents' attributes, "rack:r1;zone:a"; several specs separated by '|' go to the agents in turn (env BERTH_MESOS_LOCAL_AGENT_ATTRIBUTES)`)
	f.BoolVar(&cfg.FaultInjection, "fault-injection", false, "serve /fault/partition and /fault/heal?agent_id=ID to cut an agent off the master and reconnect it (for tests and demos; not a Mesos API)")
	f.DurationVar(&cfg.AgentPingTimeout, "agent-ping-timeout", 75*time.Second, "how long a partitioned agent stays registered before it is marked unreachable (Mesos: agent_ping_timeout × max_agent_ping_timeouts)")
	f.StringVar(&debugAddr, "debug-addr", "", "loopback host:port to serve Go's pprof on (/debug/pprof/; off by default)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	return cmd
}

func mesosLocalEnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
