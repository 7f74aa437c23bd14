package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func init() {
	depCmd := &cobra.Command{Use: "deployment", Short: "Follow and cancel deployments"}
	depCmd.AddCommand(deploymentListCmd(), deploymentWatchCmd(), deploymentCancelCmd())
	rootCmd.AddCommand(depCmd)
}

func deploymentListCmd() *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List running deployments (--all for finished ones too)",
		Args:  cobra.NoArgs,
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
			for _, d := range res.Msg.GetDeployments() {
				rows = append(rows, []string{d.GetId(), strings.Join(d.GetAffectedApps(), ","), actions(d), statusName(d.GetStatus()), d.GetCreatedAt().AsTime().Format(time.RFC3339)})
			}
			return table(c.OutOrStdout(), []string{"ID", "APPS", "ACTIONS", "STATUS", "CREATED"}, rows)
		},
	}
	c.Flags().BoolVar(&all, "all", false, "include finished deployments")
	return c
}

func deploymentWatchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a deployment until it finishes or fails",
		Args:  cobra.ExactArgs(1),
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
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a running deployment where it stands",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			if _, err := cl.deployments.CancelDeployment(c.Context(), connect.NewRequest(&v1.CancelDeploymentRequest{Id: args[0]})); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "Cancelled deployment %s\n", args[0])
			return nil
		},
	}
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
// until it finishes. It fails if the deployment fails or is cancelled.
func watchDeployment(ctx context.Context, out io.Writer, cl *clients, id string) error {
	var last string
	for {
		res, err := cl.deployments.GetDeployment(ctx, connect.NewRequest(&v1.GetDeploymentRequest{Id: id}))
		if err != nil {
			return err
		}
		d := res.Msg.GetDeployment()
		line := fmt.Sprintf("deployment %s: %s, step %d/%d (%s)", d.GetId(), statusName(d.GetStatus()), d.GetCurrentStep(), len(d.GetSteps()), actions(d))
		if tasks := instanceProgress(ctx, cl, d.GetAffectedApps()); tasks != "" {
			line += " " + tasks
		}
		if d.GetMessage() != "" {
			line += ": " + d.GetMessage()
		}
		if line != last {
			fmt.Fprintf(out, "%s %s\n", time.Now().Format("15:04:05"), line)
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

// instanceProgress summarises task states of the given apps, e.g.
// "[/db: 1 running, 1 healthy]".
func instanceProgress(ctx context.Context, cl *clients, apps []string) string {
	var parts []string
	for _, app := range apps {
		res, err := cl.tasks.ListTasks(ctx, connect.NewRequest(&v1.ListTasksRequest{AppId: app}))
		if err != nil {
			continue
		}
		counts := map[string]int{}
		healthy := 0
		for _, t := range res.Msg.GetTasks() {
			state := strings.ToLower(strings.TrimPrefix(t.GetState(), "TASK_"))
			if state == "" {
				state = "stopped"
			}
			counts[state]++
			if t.GetHealthy() {
				healthy++
			}
		}
		var cs []string
		for _, s := range []string{"staging", "starting", "running", "killing", "stopped"} {
			if counts[s] > 0 {
				cs = append(cs, fmt.Sprintf("%d %s", counts[s], s))
			}
		}
		if healthy > 0 {
			cs = append(cs, fmt.Sprintf("%d healthy", healthy))
		}
		if len(cs) == 0 {
			cs = append(cs, "no instances")
		}
		parts = append(parts, app+": "+strings.Join(cs, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return "[" + strings.Join(parts, "; ") + "]"
}
