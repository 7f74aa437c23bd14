package main

import (
	"context"
	"fmt"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/mesoslocal"
)

func init() {
	var (
		o              serverOptions
		mesosListen    string
		agents         int
		agentResources string
	)
	c := &cobra.Command{
		Use:   "dev",
		Short: "Run Berth on one machine: a server plus an embedded Mesos master and agent",
		Long: `dev runs a single-node Berth server together with mesos-local, an
embedded Mesos-compatible master and agent(s) that run tasks as local processes
and keep persistent volumes as directories under the data dir. State survives
a restart on the same --data-dir.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if err := bindEnv(c.Flags()); err != nil {
				return err
			}
			logger, err := newLogger(o.logLevel)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()

			mesos, err := mesoslocal.New(mesoslocal.Config{
				Listen:         mesosListen,
				WorkDir:        filepath.Join(o.dataDir, "mesos"),
				Agents:         agents,
				AgentResources: agentResources,
				Logger:         logger.With("component", "mesos-local"),
			})
			if err != nil {
				return fmt.Errorf("mesos-local: %w", err)
			}
			if err := mesos.Start(ctx); err != nil {
				return fmt.Errorf("mesos-local: %w", err)
			}
			defer mesos.Close()

			o.mesosMaster = mesos.URL()
			o.nodeName = "dev"
			// Raft and gossip stay on loopback with kernel-chosen ports:
			// a cluster of one needs no fixed addresses.
			o.raftAddr, o.gossipAddr = "127.0.0.1:0", "127.0.0.1:0"
			server := o
			server.dataDir = filepath.Join(o.dataDir, "server")
			return runServer(ctx, &server, logger, func(api string) {
				fmt.Fprintf(c.OutOrStdout(), "berth dev: API on %s, mesos-local on %s, data in %s\n", api, mesos.URL(), o.dataDir)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&o.dataDir, "data-dir", "./berth-dev-data", "directory for all state: Raft, agents, sandboxes and volumes")
	f.StringVar(&o.apiAddr, "api-addr", defaultAPIAddr, "host:port the API listens on")
	f.StringVar(&mesosListen, "mesos-listen", "127.0.0.1:5050", "host:port of the embedded Mesos master")
	f.IntVar(&agents, "agents", 1, "number of embedded agents")
	f.StringVar(&agentResources, "agent-resources", "", `resources of each agent, e.g. "cpus:4;mem:8192;disk:20000;ports:[31000-32000]" (default: sized from this machine)`)
	o.registerMesos(f, "")
	rootCmd.AddCommand(c)
}
