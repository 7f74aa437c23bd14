package main

import (
	"context"
	"fmt"
	"io"
	"sync"
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
			ctx, events := moveEventsFirst(c.Context(), cl, wait)
			res, err := cl.backups.MigrateInstance(ctx, connect.NewRequest(&v1.MigrateInstanceRequest{InstanceId: args[0], ToAgent: toAgent}))
			if err != nil {
				return err
			}
			return moveStarted(ctx, c, cl, res.Msg, res.Msg.GetBackup(), events)
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
			ctx, events := moveEventsFirst(c.Context(), cl, wait)
			res, err := cl.backups.ReplaceInstance(ctx, connect.NewRequest(&v1.ReplaceInstanceRequest{InstanceId: args[0], BackupId: fromBackup, ToAgent: toAgent}))
			if err != nil {
				return err
			}
			return moveStarted(ctx, c, cl, res.Msg, res.Msg.GetRestore(), events)
		},
	}
	c.Flags().StringVar(&fromBackup, "from-backup", "latest", "backup id, or latest (the instance's newest succeeded backup)")
	c.Flags().StringVar(&toAgent, "to-agent", "", "agent (id or hostname) of the new berth (default: any other agent)")
	c.Flags().BoolVar(&wait, "wait", false, "follow the replacement until the new task is healthy; fail if it fails")
	return c
}

// moveStarted prints a started move, or follows it with --wait (events
// not nil).
func moveStarted(ctx context.Context, c *cobra.Command, cl *clients, msg proto.Message, b *v1.Backup, events <-chan *v1.Event) error {
	if events != nil {
		return waitMove(ctx, c, cl, b, events)
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

// moveEventsFirst attaches to the copy and move events before a move is
// requested (when follow is set), so that --wait misses none of its steps:
// a step, such as a live copy of a small volume, can be over before the
// first poll of the task list. The events come on the returned channel
// until ctx (the returned one, cancelled with the command) ends; nil
// without follow. A stream that cannot be attached leaves the channel
// empty: the poll in waitMove still follows the move.
func moveEventsFirst(ctx context.Context, cl *clients, follow bool) (context.Context, <-chan *v1.Event) {
	if !follow {
		return ctx, nil
	}
	ch := make(chan *v1.Event, 4096)
	attached := make(chan struct{})
	go func() {
		defer close(ch)
		stream, err := cl.events.StreamEvents(ctx, connect.NewRequest(&v1.StreamEventsRequest{
			Types: []string{"backup_progress", "instance_move_event"}}))
		if err != nil {
			close(attached)
			return
		}
		defer stream.Close()
		once := sync.OnceFunc(func() { close(attached) })
		defer once()
		for stream.Receive() {
			once() // the first event is event_stream_attached
			select {
			case ch <- stream.Msg():
			default: // a slow terminal: the poll still reports each step
			}
		}
	}()
	select {
	case <-attached:
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	return ctx, ch
}

// waitMove follows a move: its steps with their reasons and the copy's
// progress from the event stream, and the instance's move steps (polled,
// so a lost stream cannot hang it) until it is done or failed.
func waitMove(ctx context.Context, c *cobra.Command, cl *clients, b *v1.Backup, events <-chan *v1.Event) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &lockedWriter{w: c.OutOrStdout()}
	fmt.Fprintf(out, "%s %s of instance %s\n", moveVerb(b), b.GetMigrationId(), b.GetInstanceId())
	go func() {
		for {
			var ev *v1.Event
			select {
			case <-ctx.Done():
				return
			case ev = <-events:
				if ev == nil {
					return
				}
			}
			if ev.GetInstanceId() != b.GetInstanceId() {
				continue
			}
			if ev.GetType() == "instance_move_event" {
				// Each step with its reason (a live copy skipped or
				// failed says why), as the scheduler published it.
				if ev.GetMove().GetId() == b.GetMigrationId() {
					fmt.Fprintf(out, "  event: %s\n", ev.GetMessage())
				}
				continue
			}
			if ev.GetType() == "backup_progress" {
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

// lockedWriter serialises the writes of waitMove's two goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
