package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func taskLogsCmd() *cobra.Command {
	var (
		stderr, follow bool
		lines          int
	)
	c := &cobra.Command{
		Use:   "logs TASK_ID",
		Short: "Print a task's stdout (or stderr) from its sandbox on the agent",
		Long: `Print a task's stdout (or, with --stderr, its stderr), read from the task's
sandbox through the files API of the agent that ran it. TASK_ID is a task id
(an instance's current task, the one named in its last failure, or an earlier
one whose sandbox the agent still keeps) or an instance id (its current task).
With --follow, keep printing what the task appends until it ends or you
interrupt.`,
		Args: usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if lines < 0 {
				return fmt.Errorf("--lines must be >= 0, got %d", lines)
			}
			cl, err := newClients()
			if err != nil {
				return err
			}
			req := &v1.ReadTaskLogRequest{TaskId: args[0], Follow: follow, Lines: uint32(lines), File: v1.TaskLogFile_TASK_LOG_FILE_STDOUT}
			if stderr {
				req.File = v1.TaskLogFile_TASK_LOG_FILE_STDERR
			}
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			stream, err := cl.tasks.ReadTaskLog(ctx, connect.NewRequest(req))
			if err != nil {
				return err
			}
			defer stream.Close()
			out := c.OutOrStdout()
			for stream.Receive() {
				if _, err := out.Write(stream.Msg().GetData()); err != nil {
					return err
				}
			}
			if ctx.Err() != nil {
				return nil // interrupted while following
			}
			return stream.Err()
		},
	}
	c.Flags().BoolVar(&stderr, "stderr", false, "print stderr instead of stdout")
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing appended output until the task ends")
	c.Flags().IntVarP(&lines, "lines", "n", 0, "start with the last N lines (0: the whole file)")
	return c
}
