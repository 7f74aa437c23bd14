package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/rpc"
)

func init() {
	depCmd := &cobra.Command{Use: "deployment", Short: "Follow and cancel deployments"}
	depCmd.AddCommand(deploymentListCmd(), deploymentShowCmd(), deploymentWatchCmd(), deploymentCancelCmd())
	rootCmd.AddCommand(clientCommand(depCmd))
}

func deploymentListCmd() *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List running deployments (--all for finished ones too)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.deployments.ListDeployments(c.Context(), connect.NewRequest(&v1.ListDeploymentsRequest{IncludeFinished: all}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			var rows [][]string
			for i, d := range res.Msg.GetDeployments() {
				var current *v1.CurrentActions
				if i < len(res.Msg.GetCurrentActions()) {
					current = res.Msg.GetCurrentActions()[i]
				}
				rows = append(rows, []string{d.GetId(), strings.Join(d.GetAffectedApps(), ","), actions(d), statusName(d.GetStatus()),
					readinessSummary(current), d.GetCreatedAt().AsTime().Format(time.RFC3339)})
			}
			return table(c.OutOrStdout(), []string{"ID", "APPS", "ACTIONS", "STATUS", "READINESS", "CREATED"}, rows)
		},
	}
	c.Flags().BoolVar(&all, "all", false, "include finished deployments")
	return c
}

func deploymentWatchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch DEPLOYMENT_ID",
		Short: "Follow a deployment until it finishes or fails",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			return watchDeployment(c.Context(), c.OutOrStdout(), cl, args[0])
		},
	}
}

func deploymentCancelCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "cancel DEPLOYMENT_ID",
		Short: "Cancel a running deployment: roll it back to the previous version (--force: stop it where it stands)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.deployments.CancelDeployment(c.Context(), connect.NewRequest(&v1.CancelDeploymentRequest{Id: args[0], Force: force}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			if rb := res.Msg.GetDeploymentId(); rb != "" {
				fmt.Fprintf(c.OutOrStdout(), "Cancelled deployment %s; rolling back (deployment %s, version %s)\n", args[0], rb, res.Msg.GetVersion())
				return nil
			}
			fmt.Fprintf(c.OutOrStdout(), "Cancelled deployment %s\n", args[0])
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "stop the deployment where it stands, without a rollback (old and new instances may stay mixed)")
	return c
}

func actions(d *v1.Deployment) string {
	var out []string
	for _, s := range d.GetSteps() {
		for _, a := range s.GetActions() {
			out = append(out, a.GetAction())
		}
	}
	return strings.Join(out, ",")
}

func statusName(s v1.DeploymentStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "DEPLOYMENT_STATUS_"))
}

// watchDeployment prints the deployment's progress and the app's instances
// until it finishes. It fails if the deployment fails or is cancelled. With
// -o json it prints the deployment as one line of JSON each time it changes.
func watchDeployment(ctx context.Context, out io.Writer, cl *clients, id string) error {
	var last string
	for {
		res, err := cl.deployments.GetDeployment(ctx, connect.NewRequest(&v1.GetDeploymentRequest{Id: id}))
		if err != nil {
			return err
		}
		d := res.Msg.GetDeployment()
		var line string
		if flagOutput == "json" {
			b, err := protojson.Marshal(d)
			if err != nil {
				return err
			}
			line = string(b)
		} else {
			line = fmt.Sprintf("deployment %s: %s, step %d/%d (%s)", d.GetId(), statusName(d.GetStatus()), d.GetCurrentStep(), len(d.GetSteps()), actions(d))
			if tasks := instanceProgress(ctx, cl, d.GetAffectedApps()); tasks != "" {
				line += " " + tasks
			}
			if d.GetMessage() != "" {
				line += ": " + d.GetMessage()
			}
		}
		if line != last {
			if flagOutput == "json" {
				fmt.Fprintln(out, line)
			} else {
				fmt.Fprintf(out, "%s %s\n", time.Now().Format("15:04:05"), line)
			}
			last = line
		}
		switch d.GetStatus() {
		case v1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCEEDED:
			return nil
		case v1.DeploymentStatus_DEPLOYMENT_STATUS_FAILED:
			printFailureHints(ctx, out, cl, d.GetAffectedApps())
			return fmt.Errorf("deployment %s failed: %s", id, d.GetMessage())
		case v1.DeploymentStatus_DEPLOYMENT_STATUS_CANCELED:
			return fmt.Errorf("deployment %s was cancelled", id)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// instanceProgress summarises the instances of the given apps, e.g.
// "[/db: 1 pending, 1 running, 1 healthy]".
func instanceProgress(ctx context.Context, cl *clients, apps []string) string {
	var parts []string
	for _, app := range apps {
		res, err := cl.tasks.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{AppId: app}))
		if err != nil {
			continue
		}
		target := -1 // unknown: the app is gone (or going)
		if a, err := cl.apps.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: app})); err == nil {
			target = int(a.Msg.GetApp().GetInstances())
		}
		part := app + ": " + progressSummary(res.Msg.GetTasks(), target)
		if q := appQueue(ctx, cl, app); q != nil {
			part += "; waiting: " + waitingText(q)
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return ""
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// progressOrder is the order of instance states in a progress line, from
// not yet launched to gone; other (terminal) states come before stopped.
var progressOrder = []string{"pending", "staging", "starting", "running", "killing"}

// progressSummary counts instances by where they stand, e.g. "1 pending,
// 2 running, 2 healthy". Instances the app wants (target; negative if
// unknown) that the scheduler has not created yet are pending too.
func progressSummary(tasks []*v1.TaskView, target int) string {
	counts := map[string]int{}
	healthy, wanted := 0, 0
	for _, t := range tasks {
		counts[instanceState(t)]++
		if t.GetHealthy() {
			healthy++
		}
		if t.GetGoal() == "Running" {
			wanted++
		}
	}
	if target > wanted {
		counts["pending"] += target - wanted
	}
	var others []string
	for s := range counts {
		if !slices.Contains(progressOrder, s) && s != "stopped" && s != "removing" {
			others = append(others, s)
		}
	}
	sort.Strings(others)
	var cs []string
	for _, s := range slices.Concat(progressOrder, others, []string{"stopped", "removing"}) {
		if counts[s] > 0 {
			cs = append(cs, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	if healthy > 0 {
		cs = append(cs, fmt.Sprintf("%d healthy", healthy))
	}
	if len(cs) == 0 {
		return "no instances"
	}
	return strings.Join(cs, ", ")
}

// instanceState names where an instance stands: its task's Mesos state
// while it has a live task; "pending" when it should run but no task was
// launched yet; the final state (failed, killed, ...) of a task that ended
// and waits to be relaunched; "stopped" or "removing" once it should not
// run and its task is gone.
func instanceState(t *v1.TaskView) string {
	ended := t.GetState() == "" || rpc.IsTerminalTaskState(t.GetState())
	switch {
	case ended && t.GetGoal() == "Stopped":
		return "stopped"
	case ended && t.GetGoal() == "Decommissioned":
		return "removing"
	case t.GetState() == "":
		return "pending"
	}
	return strings.ToLower(strings.TrimPrefix(t.GetState(), "TASK_"))
}

func deploymentShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show DEPLOYMENT_ID",
		Short: "Show a deployment: its steps, current actions with readiness results, and why instances wait",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.deployments.GetDeployment(c.Context(), connect.NewRequest(&v1.GetDeploymentRequest{Id: args[0]}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			d := res.Msg.GetDeployment()
			rows := [][]string{
				{"ID", d.GetId()},
				{"VERSION", d.GetVersion()},
				{"STATUS", statusName(d.GetStatus())},
				{"STEP", fmt.Sprintf("%d/%d", d.GetCurrentStep(), len(d.GetSteps()))},
				{"APPS", strings.Join(d.GetAffectedApps(), ",")},
				{"ACTIONS", actions(d)},
				{"CREATED", d.GetCreatedAt().AsTime().Format(time.RFC3339)},
			}
			if d.GetMessage() != "" {
				rows = append(rows, []string{"MESSAGE", d.GetMessage()})
			}
			for _, act := range res.Msg.GetCurrentActions().GetActions() {
				rows = append(rows, []string{"CURRENT ACTION", act.GetAction() + " " + act.GetApp()})
				for _, r := range act.GetReadinessCheckResults() {
					rows = append(rows, []string{"  READINESS " + r.GetName(), r.GetTaskId() + ": " + readinessText(r)})
				}
			}
			if d.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
				for _, app := range d.GetAffectedApps() {
					if q := appQueue(c.Context(), cl, app); q != nil {
						rows = append(rows, []string{"WAITING " + app, fmt.Sprintf("%d instance(s): %s", len(q.GetInstanceIds()), waitingText(q))})
					}
				}
			}
			return table(c.OutOrStdout(), []string{"FIELD", "VALUE"}, rows)
		},
	}
}
