package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// `berth agent`: the Mesos agents, and the operator calls that take them
// away, through Berth's AgentService (the Mesos operator API underneath,
// so these work against a real Mesos master as against mesos-local).
func init() {
	agentCmd := &cobra.Command{Use: "agent", Short: "List Mesos agents; drain them, mark them gone, schedule maintenance"}
	maintCmd := &cobra.Command{Use: "maintenance", Short: "Schedule, start and stop maintenance of agents' machines"}
	maintCmd.AddCommand(agentMaintScheduleCmd(), agentMaintMachinesCmd("start", "Bring the agents' machines DOWN (their agents are removed, their tasks lost)"),
		agentMaintMachinesCmd("stop", "Bring the machines UP again and take them out of the schedule"))
	agentCmd.AddCommand(agentListCmd(), agentDrainCmd(), agentGoneCmd(), agentReactivateCmd(), maintCmd)
	rootCmd.AddCommand(clientCommand(agentCmd))
}

func agentListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the agents: state (active, draining, drained, deactivated), resources total/reserved/used, maintenance",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.agents.ListAgents(c.Context(), connect.NewRequest(&v1.ListAgentsRequest{}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			var rows [][]string
			for _, a := range res.Msg.GetAgents() {
				state := a.GetState()
				if a.GetDrainMarkGone() {
					state += " (then gone)"
				}
				maint := ""
				if a.GetMaintenanceStart() != "" {
					maint = "from " + a.GetMaintenanceStart()
					if a.GetMaintenanceDuration() != "" {
						maint += " for " + a.GetMaintenanceDuration()
					}
				}
				rows = append(rows, []string{a.GetId(), a.GetHostname(), state,
					resourceCell(a.GetTotal()), resourceCell(a.GetReserved()), resourceCell(a.GetAllocated()),
					attributesCell(a.GetAttributes()), maint})
			}
			return table(c.OutOrStdout(), []string{"ID", "HOSTNAME", "STATE", "TOTAL", "RESERVED", "USED", "ATTRIBUTES", "MAINTENANCE"}, rows)
		},
	}
}

func resourceCell(r *v1.AgentResources) string {
	s := fmt.Sprintf("cpus:%g mem:%g disk:%g", round3(r.GetCpus()), round3(r.GetMem()), round3(r.GetDisk()))
	if r.GetGpus() > 0 {
		s += fmt.Sprintf(" gpus:%g", r.GetGpus())
	}
	return s
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

func attributesCell(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+":"+m[k])
	}
	return strings.Join(parts, ";")
}

func agentDrainCmd() *cobra.Command {
	var grace time.Duration
	var markGone bool
	c := &cobra.Command{
		Use:   "drain AGENT",
		Short: "Drain an agent: no more offers, its tasks killed (instances there wait; with --mark-gone their berths are lost and made anew elsewhere)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			req := &v1.DrainAgentRequest{AgentId: args[0], MarkGone: markGone}
			if c.Flags().Changed("grace") {
				if grace < 0 {
					return fmt.Errorf("--grace: %v must not be negative", grace)
				}
				g := grace.Seconds()
				req.MaxGraceSeconds = &g
			}
			if _, err := cl.agents.DrainAgent(c.Context(), connect.NewRequest(req)); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "agent %s draining\n", args[0])
			return nil
		},
	}
	c.Flags().DurationVar(&grace, "grace", 0, "cap on each task's kill grace period (default: the task's own)")
	c.Flags().BoolVar(&markGone, "mark-gone", false, "mark the agent gone once drained (its volumes are lost)")
	return c
}

// agentIDCmd is a command that makes one call on one agent id.
func agentIDCmd(use, short, done string, call func(c *cobra.Command, cl *clients, id string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " AGENT",
		Short: short,
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			if err := call(c, cl, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "agent %s %s\n", args[0], done)
			return nil
		},
	}
}

func agentGoneCmd() *cobra.Command {
	return agentIDCmd("gone", "Mark an agent gone for good (MARK_AGENT_GONE): its tasks and berths are lost; instances get new, empty berths elsewhere",
		"marked gone", func(c *cobra.Command, cl *clients, id string) error {
			_, err := cl.agents.MarkAgentGone(c.Context(), connect.NewRequest(&v1.MarkAgentGoneRequest{AgentId: id}))
			return err
		})
}

func agentReactivateCmd() *cobra.Command {
	return agentIDCmd("reactivate", "Reactivate a drained or deactivated agent: it makes offers again",
		"reactivated", func(c *cobra.Command, cl *clients, id string) error {
			_, err := cl.agents.ReactivateAgent(c.Context(), connect.NewRequest(&v1.ReactivateAgentRequest{AgentId: id}))
			return err
		})
}

func agentMaintScheduleCmd() *cobra.Command {
	var start string
	var duration time.Duration
	c := &cobra.Command{
		Use:   "schedule AGENT...",
		Short: "Schedule maintenance of the agents' machines: their offers carry the unavailability, no new berth goes there",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			if duration < 0 {
				return fmt.Errorf("--duration: %v must not be negative", duration)
			}
			req := &v1.ScheduleMaintenanceRequest{AgentIds: args, Start: start, DurationSeconds: duration.Seconds()}
			if _, err := cl.agents.ScheduleMaintenance(c.Context(), connect.NewRequest(req)); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "maintenance scheduled for %s\n", strings.Join(args, ", "))
			return nil
		},
	}
	c.Flags().StringVar(&start, "start", "", "start of the window, RFC 3339 (default: now)")
	c.Flags().DurationVar(&duration, "duration", 0, "length of the window (default: no end)")
	return c
}

func agentMaintMachinesCmd(verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " AGENT...",
		Short: short,
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			req := connect.NewRequest(&v1.MaintenanceMachinesRequest{Agents: args})
			if verb == "start" {
				_, err = cl.agents.StartMaintenance(c.Context(), req)
			} else {
				_, err = cl.agents.StopMaintenance(c.Context(), req)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "maintenance %sed for %s\n", verb, strings.Join(args, ", "))
			return nil
		},
	}
}
