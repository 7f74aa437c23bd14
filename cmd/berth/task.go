package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/rpc"
)

func init() {
	taskCmd := &cobra.Command{Use: "task", Short: "List, kill and read the logs of tasks (one per instance)"}
	taskCmd.AddCommand(taskListCmd(), taskShowCmd(), taskKillCmd(), taskLogsCmd())
	rootCmd.AddCommand(clientCommand(taskCmd))
}

func taskListCmd() *cobra.Command {
	var appID string
	c := &cobra.Command{
		Use:   "list",
		Short: "List instances and their tasks, stopped ones included",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.tasks.ListTasks(c.Context(), connect.NewRequest(&v1.ListTasksRequest{AppId: appID}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			queues := map[string]*v1.QueueEntry{}
			var rows [][]string
			for _, t := range res.Msg.GetTasks() {
				healthy := "N/A"
				if t.Healthy != nil {
					healthy = strconv.FormatBool(t.GetHealthy())
				}
				msg := joinNonEmpty("; ", withBackoff(t, time.Now()), healthText(t))
				if waitingTask(t) {
					q, ok := queues[t.GetAppId()]
					if !ok {
						q = appQueue(c.Context(), cl, t.GetAppId())
						queues[t.GetAppId()] = q
					}
					if q != nil {
						msg = joinNonEmpty("; ", msg, "waiting: "+waitingText(q))
					}
				}
				rows = append(rows, []string{t.GetAppId(), orNA(t.GetState()), healthy, orNA(t.GetStartedAt()), orNA(t.GetHost()),
					orNA(portList(t.GetPorts())), orNA(t.GetId()), orNA(msg)})
			}
			return table(c.OutOrStdout(), []string{"APP", "STATE", "HEALTHY", "STARTED", "HOST", "PORTS", "ID", "MESSAGE"}, rows)
		},
	}
	c.Flags().StringVar(&appID, "app", "", "only tasks of this app")
	return c
}

func taskKillCmd() *cobra.Command {
	var wipe, scale bool
	c := &cobra.Command{
		Use:   "kill TASK_ID",
		Short: "Kill a task (it relaunches on its berth); --wipe destroys the berth too",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if wipe && scale {
				return fmt.Errorf("--wipe and --scale cannot be combined")
			}
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.tasks.KillTask(c.Context(), connect.NewRequest(&v1.KillTaskRequest{Id: args[0], Wipe: wipe, Scale: scale}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			what := "Killing task"
			if wipe {
				what = "Wiping instance of task"
			}
			fmt.Fprintf(c.OutOrStdout(), "%s %s\n", what, orNA(res.Msg.GetTask().GetId()))
			return nil
		},
	}
	c.Flags().BoolVar(&wipe, "wipe", false, "decommission the instance: destroy its volume, release its reservation; a fresh instance replaces it")
	c.Flags().BoolVar(&scale, "scale", false, "also lower the app's instance count by one")
	return c
}

// withBackoff is a task's message, followed by when its instance may
// relaunch while a launch backoff holds it ("berth app reset-delay" clears
// it).
// What affects its agent (draining, maintenance, gone) comes first.
func withBackoff(t *v1.TaskView, now time.Time) string {
	parts := []string{t.GetAgentNotice(), moveText(t.GetMove()), t.GetMessage()}
	if nb, err := time.Parse(time.RFC3339Nano, t.GetLaunchNotBefore()); err == nil && nb.After(now) {
		parts = append(parts, fmt.Sprintf("backoff: relaunch not before %s", t.GetLaunchNotBefore()))
	}
	kept := parts[:0]
	for _, p := range parts {
		if p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "; ")
}

// waitingTask is true for an instance meant to run without a live task.
func waitingTask(t *v1.TaskView) bool {
	return (t.GetGoal() == "Running" || t.GetGoal() == "") && (t.GetState() == "" || rpc.IsTerminalTaskState(t.GetState()))
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

func taskShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show TASK_ID",
		Short: "Show one instance's task: state, health check and readiness results, why it waits",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.tasks.ListTasks(c.Context(), connect.NewRequest(&v1.ListTasksRequest{}))
			if err != nil {
				return err
			}
			var t *v1.TaskView
			for _, tv := range res.Msg.GetTasks() {
				if tv.GetId() == args[0] || tv.GetInstanceId() == args[0] {
					t = tv
				}
			}
			if t == nil {
				return fmt.Errorf("no task or instance %s", args[0])
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), t)
			}
			healthy := "N/A"
			if t.Healthy != nil {
				healthy = strconv.FormatBool(t.GetHealthy())
			}
			rows := [][]string{
				{"ID", orNA(t.GetId())},
				{"INSTANCE", t.GetInstanceId()},
				{"APP", t.GetAppId()},
				{"GOAL", orNA(t.GetGoal())},
				{"STATE", orNA(t.GetState())},
				{"HEALTHY", healthy},
				{"HOST", orNA(t.GetHost())},
				{"AGENT", orNA(t.GetAgentId())},
				{"PORTS", orNA(portList(t.GetPorts()))},
				{"STAGED", orNA(t.GetStagedAt())},
				{"STARTED", orNA(t.GetStartedAt())},
				{"VERSION", orNA(t.GetVersion())},
				{"MESSAGE", orNA(withBackoff(t, time.Now()))},
			}
			for _, v := range t.GetLocalVolumes() {
				rows = append(rows, []string{"VOLUME", v.GetContainerPath() + " (" + v.GetPersistenceId() + ")"})
			}
			rows = append(rows, checkRows(t)...)
			if waitingTask(t) {
				rows = append(rows, waitingRows(appQueue(c.Context(), cl, t.GetAppId()))...)
			}
			return table(c.OutOrStdout(), []string{"FIELD", "VALUE"}, rows)
		},
	}
}
