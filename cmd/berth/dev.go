package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/mesoslocal"
	"github.com/berth-dev/berth/ui"
)

// devOptions configures `berth dev`.
type devOptions struct {
	server          serverOptions
	mesosListen     string
	agents          int
	agentResources  string
	distinctHosts   bool
	agentAttributes string
	killTasks       bool
	faultInjection  bool
	agentPing       time.Duration
}

func init() {
	var o devOptions
	c := &cobra.Command{
		Use:   "dev",
		Short: "Run Berth on one machine: a server plus an embedded Mesos master and agent",
		Long: `dev runs a single-node Berth server together with mesos-local, an
embedded Mesos-compatible master and agent(s) that run tasks as local processes
and keep persistent volumes as directories under the data dir. State survives
a restart on the same --data-dir, and so do running tasks: they keep running
while dev is stopped and are adopted when it starts again on the same
--data-dir (--kill-tasks-on-exit stops them with dev).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return runDaemon(c, &o.server, func(ctx context.Context, logger *slog.Logger) error {
				return runDev(ctx, c.OutOrStdout(), &o, logger)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&o.server.dataDir, "data-dir", "./berth-dev-data", "directory for all state: Raft, agents, sandboxes and volumes")
	f.StringVar(&o.server.apiAddr, "api-addr", defaultAPIAddr, "host:port the API listens on")
	f.StringVar(&o.mesosListen, "mesos-listen", "127.0.0.1:5050", "host:port of the embedded Mesos master")
	f.IntVar(&o.agents, "agents", 1, "number of embedded agents")
	f.StringVar(&o.agentResources, "agent-resources", "", `resources of each agent, e.g. "cpus:4;mem:8192;disk:20000;ports:[31000-32000]" (default: sized from this machine)`)
	f.BoolVar(&o.distinctHosts, "distinct-hosts", true, "give each agent its own loopback address as its hostname (127.0.0.1, 127.0.0.2, ...), so hostname:UNIQUE spreads instances and tasks bind $HOST")
	f.StringVar(&o.agentAttributes, "agent-attributes", "", `agents' attributes, "rack:r1;zone:a"; several specs separated by '|' go to the agents in turn ("rack:r1;zone:a|rack:r2;zone:b")`)
	f.BoolVar(&o.faultInjection, "fault-injection", false, "let mesos-local cut an agent off the master and reconnect it: POST /fault/partition and /fault/heal?agent_id=ID on its address (for tests and demos; not a Mesos API)")
	f.DurationVar(&o.agentPing, "agent-ping-timeout", 75*time.Second, "how long a partitioned agent stays registered before mesos-local marks it unreachable")
	f.BoolVar(&o.killTasks, "kill-tasks-on-exit", false, "kill every task when dev stops (default: tasks keep running and the next dev on this --data-dir adopts them)")
	f.BoolVar(&o.server.security.insecure, "insecure", false, "allow a non-loopback --api-addr (dev has no TLS: anyone who reaches it owns the server)")
	o.server.registerMesos(f, "")
	o.server.registerLimits(f)
	// On one machine the operator is the only user: apps may run as any
	// user (the PostgreSQL example runs as postgres) while the API listens
	// on loopback only. Bound elsewhere, dev is as strict as a server.
	o.server.anyTaskUserOnLoopback = true
	o.server.registerSecurity(f, "any user while --api-addr is loopback, else the framework user alone")
	rootCmd.AddCommand(c)
}

// runDev runs mesos-local and a single-node server in this process until ctx
// ends.
func runDev(ctx context.Context, out io.Writer, o *devOptions, logger *slog.Logger) error {
	if err := absolutePaths(map[string]*string{"--data-dir": &o.server.dataDir}); err != nil {
		return err
	}
	mesos, err := mesoslocal.New(mesoslocal.Config{
		Listen:           o.mesosListen,
		WorkDir:          filepath.Join(o.server.dataDir, "mesos"),
		Agents:           o.agents,
		AgentResources:   o.agentResources,
		DistinctHosts:    o.distinctHosts,
		AgentAttributes:  o.agentAttributes,
		KillTasksOnClose: o.killTasks,
		FaultInjection:   o.faultInjection,
		AgentPingTimeout: o.agentPing,
		Logger:           logger.With("component", "mesos-local"),
	})
	if err != nil {
		return err // mesoslocal's errors name it already
	}
	if err := mesos.Start(ctx); err != nil {
		return err
	}
	defer mesos.Close()

	server := o.server
	server.mesosMaster = mesos.URL()
	server.nodeName = "dev"
	server.dataDir = filepath.Join(o.server.dataDir, "server")
	// Raft and gossip stay on loopback with kernel-chosen ports: a cluster
	// of one needs no fixed addresses.
	server.raftAddr, server.gossipAddr = "127.0.0.1:0", "127.0.0.1:0"
	if server.migrationTarget == "" {
		// The dev agents share this machine: a directory is mounted on all.
		dir := filepath.Join(o.server.dataDir, "migration")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// Copy tasks run as the app's user (e.g. postgres), not ours.
		if err := os.Chmod(dir, 0o777); err != nil {
			return err
		}
		server.migrationTarget = "file://" + dir
	}
	return runServer(ctx, &server, logger, func(api string) {
		fmt.Fprintf(out, "berth dev: API on %s, mesos-local on %s, data in %s\n", api, mesos.URL(), o.server.dataDir)
		scheme := "http"
		if o.server.security.tlsCertFile != "" {
			scheme = "https"
		}
		fmt.Fprintf(out, "berth dev: web UI on %s://%s%s\n", scheme, api, ui.Prefix)
	})
}
