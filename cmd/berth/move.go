package main

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func init() {
	instanceCmd := &cobra.Command{Use: "instance", Short: "Move instances to new berths: migrate to another agent, replace from a backup"}
	instanceCmd.AddCommand(instanceMigrateCmd(), instanceReplaceCmd())
	rootCmd.AddCommand(clientCommand(instanceCmd))
}

func instanceMigrateCmd() *cobra.Command {
	var toAgent string
	var wait bool
	c := &cobra.Command{
		Use:   "migrate INSTANCE",
		Short: "Move an instance's berth to another agent: copy, restore onto a new berth there, launch, then destroy the old berth",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.backups.MigrateInstance(c.Context(), connect.NewRequest(&v1.MigrateInstanceRequest{InstanceId: args[0], ToAgent: toAgent}))
			if err != nil {
				return err
			}
			return moveStarted(c, cl, res.Msg, res.Msg.GetBackup(), wait)
		},
	}
	c.Flags().StringVar(&toAgent, "to-agent", "", "agent (id or hostname) of the new berth (default: any other agent)")
	c.Flags().BoolVar(&wait, "wait", false, "follow the migration (steps, bytes, downtime) until the new task is healthy; fail if it fails")
	return c
}

func instanceReplaceCmd() *cobra.Command {
	var fromBackup, toAgent string
	var wait bool
	c := &cobra.Command{
		Use:   "replace INSTANCE",
		Short: "Give an instance whose berth is lost a new berth on another agent, restored from a backup (the writes since are lost)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.backups.ReplaceInstance(c.Context(), connect.NewRequest(&v1.ReplaceInstanceRequest{InstanceId: args[0], BackupId: fromBackup, ToAgent: toAgent}))
			if err != nil {
				return err
			}
			return moveStarted(c, cl, res.Msg, res.Msg.GetRestore(), wait)
		},
	}
	c.Flags().StringVar(&fromBackup, "from-backup", "latest", "backup id, or latest (the instance's newest succeeded backup)")
	c.Flags().StringVar(&toAgent, "to-agent", "", "agent (id or hostname) of the new berth (default: any other agent)")
	c.Flags().BoolVar(&wait, "wait", false, "follow the replacement until the new task is healthy; fail if it fails")
	return c
}

// moveStarted prints a started move, or follows it with --wait.
func moveStarted(c *cobra.Command, cl *clients, msg proto.Message, b *v1.Backup, wait bool) error {
	if wait {
		return waitMove(c.Context(), c, cl, b)
	}
	if flagOutput == "json" {
		return printJSON(c.OutOrStdout(), msg)
	}
	_, err := fmt.Fprintf(c.OutOrStdout(), "%s %s of instance %s started (follow it with berth task list %s)\n", moveVerb(b), b.GetMigrationId(), b.GetInstanceId(), b.GetAppId())
	return err
}

func moveVerb(b *v1.Backup) string {
	switch {
	case b.GetReplace():
		return "replacement"
	case b.GetMigrate():
		return "migration"
	}
	return "restore to another agent"
}

// moveText is a move's one-line summary for the task list.
func moveText(m *v1.Move) string {
	if m == nil {
		return ""
	}
	s := fmt.Sprintf("%s %s", m.GetKind(), m.GetStep())
	if m.GetFromAgent() != "" {
		s += " from " + m.GetFromAgent()
	}
	if m.GetToAgent() != "" {
		s += " to " + m.GetToAgent()
	}
	if m.GetRunningAt() != nil {
		s += fmt.Sprintf(", downtime %s", time.Duration(m.GetDowntimeMs())*time.Millisecond)
	}
	if m.GetError() != "" {
		s += ": " + m.GetError()
	}
	return s
}

// waitMove follows a move: the copy's progress from the event stream, and
// the instance's move steps (polled, so a lost stream cannot hang it)
// until it is done or failed.
func waitMove(ctx context.Context, c *cobra.Command, cl *clients, b *v1.Backup) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := c.OutOrStdout()
	fmt.Fprintf(out, "%s %s of instance %s\n", moveVerb(b), b.GetMigrationId(), b.GetInstanceId())
	go func() {
		stream, err := cl.events.StreamEvents(ctx, connect.NewRequest(&v1.StreamEventsRequest{AppId: b.GetAppId(), Types: []string{"backup_progress"}}))
		if err != nil {
			return
		}
		defer stream.Close()
		for stream.Receive() {
			ev := stream.Msg()
			if ev.GetInstanceId() == b.GetInstanceId() {
				fmt.Fprintf(out, "  %s %s: %s (%.1f MB/s)\n", kindOf(ev.GetBackup()), ev.GetBackup().GetId(), ev.GetMessage(), ev.GetRateBytesPerSecond()/1e6)
			}
		}
	}()
	last := ""
	for {
		res, err := cl.tasks.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{AppId: b.GetAppId()}))
		if err != nil {
			return err
		}
		for _, t := range res.Msg.GetTasks() {
			m := t.GetMove()
			if t.GetInstanceId() != b.GetInstanceId() || m.GetId() != b.GetMigrationId() {
				continue
			}
			if txt := moveText(m); txt != last {
				last = txt
				fmt.Fprintf(out, "%s\n", txt)
			}
			switch m.GetStep() {
			case "done":
				_, err := fmt.Fprintf(out, "done: instance %s runs on agent %s (berth epoch %d), %d bytes moved, downtime %s\n", t.GetInstanceId(),
					t.GetAgentId(), t.GetBerthEpoch(), m.GetBytes(), time.Duration(m.GetDowntimeMs())*time.Millisecond)
				return err
			case "failed":
				return fmt.Errorf("%s %s failed: %s", moveVerb(b), m.GetId(), m.GetError())
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
