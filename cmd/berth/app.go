package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func init() {
	appCmd := &cobra.Command{Use: "app", Short: "Manage apps (Marathon app definitions)"}
	appCmd.AddCommand(
		appAddCmd(), appListCmd(), appShowCmd(), appUpdateCmd(), appScaleCmd(),
		appStopCmd(), appStartCmd(), appRestartCmd(), appRemoveCmd(), appVersionsCmd(),
		appRollbackCmd(), appResetDelayCmd(),
	)
	rootCmd.AddCommand(clientCommand(appCmd))
}

// waitFlags are shared by commands that start a deployment.
type waitFlags struct {
	wait  bool
	force bool
}

func (w *waitFlags) register(c *cobra.Command, force bool) {
	c.Flags().BoolVar(&w.wait, "wait", false, "follow the deployment until it finishes or fails")
	if force {
		c.Flags().BoolVar(&w.force, "force", false, "cancel a running deployment of the app")
	}
}

// finish prints the deployment id and, with --wait, follows it.
func (w *waitFlags) finish(ctx context.Context, c *cobra.Command, cl *clients, what, deploymentID string) error {
	out := c.OutOrStdout()
	if deploymentID == "" {
		fmt.Fprintln(out, what)
		return nil
	}
	fmt.Fprintf(out, "%s (deployment %s)\n", what, deploymentID)
	if !w.wait {
		return nil
	}
	return watchDeployment(ctx, out, cl, deploymentID)
}

// printJSON prints the API's answer as JSON and, with --wait, follows its
// deployment (printing it as JSON lines).
func (w *waitFlags) printJSON(ctx context.Context, c *cobra.Command, cl *clients, m proto.Message, deploymentID string) error {
	if err := printJSON(c.OutOrStdout(), m); err != nil {
		return err
	}
	if !w.wait || deploymentID == "" {
		return nil
	}
	return watchDeployment(ctx, c.OutOrStdout(), cl, deploymentID)
}

// readDefinition reads a file, or stdin for "-".
func readDefinition(path string, limit int64) ([]byte, error) {
	var (
		data []byte
		err  error
	)
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, limit+1))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read app definition: %w", err)
	}
	return data, nil
}

// readAppFile reads an app definition from a file or "-" for stdin.
func readAppFile(path string) (*v1.App, error) {
	data, err := readDefinition(path, appmodel.MaxBytes)
	if err != nil {
		return nil, err
	}
	return parseAppFile(path, data)
}

func parseAppFile(path string, data []byte) (*v1.App, error) {
	app, err := appmodel.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("app definition %s: %w", path, err)
	}
	return app, nil
}

func appAddCmd() *cobra.Command {
	var w waitFlags
	c := &cobra.Command{
		Use:   "add FILE",
		Short: "Create an app from a Marathon app definition in FILE (- for stdin), or every app of a Marathon group definition",
		Long: `Create an app from a Marathon app definition in FILE (- for stdin).

A Marathon group definition ({"id": "/g", "apps": [...], "groups": [...]})
creates every app in it, ids relative to their group, in dependency order;
an app that depends on others starts once they run healthy.`,
		Args: usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			data, err := readDefinition(args[0], maxGroupBytes)
			if err != nil {
				return err
			}
			if appmodel.IsGroupDefinition(data) {
				return addGroup(c, &w, cl, args[0], data)
			}
			app, err := parseAppFile(args[0], data)
			if err != nil {
				return err
			}
			res, err := cl.apps.CreateApp(c.Context(), connect.NewRequest(&v1.CreateAppRequest{App: app}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return w.printJSON(c.Context(), c, cl, res.Msg.GetApp(), res.Msg.GetDeploymentId())
			}
			return w.finish(c.Context(), c, cl, fmt.Sprintf("Created app %s version %s", res.Msg.GetApp().GetId(), res.Msg.GetApp().GetVersion()), res.Msg.GetDeploymentId())
		},
	}
	w.register(c, false)
	return c
}

func appListCmd() *cobra.Command {
	var req v1.ListAppsRequest
	c := &cobra.Command{
		Use:   "list",
		Short: "List apps",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.apps.ListApps(c.Context(), connect.NewRequest(&req))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printAppsJSON(c.OutOrStdout(), res.Msg.GetApps(), res.Msg.GetSummaries(), false)
			}
			var deps map[string]*v1.Deployment
			if d, err := cl.deployments.ListDeployments(c.Context(), connect.NewRequest(&v1.ListDeploymentsRequest{})); err == nil {
				deps = map[string]*v1.Deployment{}
				for _, dep := range d.Msg.GetDeployments() {
					deps[dep.GetId()] = dep
				}
			}
			var rows [][]string
			for i, a := range res.Msg.GetApps() {
				var s *v1.AppSummary
				if i < len(res.Msg.GetSummaries()) {
					s = res.Msg.GetSummaries()[i]
				}
				rows = append(rows, appListRow(a, s, deps))
			}
			return table(c.OutOrStdout(), appListHeader, rows)
		},
	}
	c.Flags().StringVar(&req.IdContains, "id", "", "only apps whose id contains this")
	c.Flags().StringVar(&req.CmdContains, "cmd", "", "only apps whose cmd contains this")
	c.Flags().StringVar(&req.Label, "label", "", `only apps whose labels match this Marathon selector: "key", "key==value" (or "key=value"), "key!=value", "key in (a,b)", "key notin (a,b)"; commas join conditions`)
	return c
}

func appShowCmd() *cobra.Command {
	var version string
	c := &cobra.Command{
		Use:   "show APP_ID",
		Short: "Show an app definition (Marathon JSON with -o json)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.apps.GetApp(c.Context(), connect.NewRequest(&v1.GetAppRequest{Id: args[0], Version: version}))
			if err != nil {
				return err
			}
			a, s := res.Msg.GetApp(), res.Msg.GetSummary()
			if flagOutput == "json" {
				return printAppsJSON(c.OutOrStdout(), []*v1.App{a}, []*v1.AppSummary{s}, true)
			}
			command := a.GetCmd()
			if command == "" {
				command = strings.Join(a.GetArgs(), " ")
			}
			rows := [][]string{
				{"ID", a.GetId()},
				{"VERSION", a.GetVersion()},
				{"CMD", command},
				{"INSTANCES", strconv.Itoa(int(a.GetInstances()))},
				{"CPUS", strconv.FormatFloat(a.GetCpus(), 'g', -1, 64)},
				{"MEM", strconv.FormatFloat(a.GetMem(), 'g', -1, 64)},
				{"DISK", strconv.FormatFloat(a.GetDisk(), 'g', -1, 64)},
				{"RUNNING", strconv.Itoa(int(s.GetTasksRunning()))},
				{"HEALTHY", strconv.Itoa(int(s.GetTasksHealthy()))},
				{"STOPPED", strconv.Itoa(int(s.GetInstancesStopped()))},
				{"DEPLOYMENTS", orNA(strings.Join(s.GetDeployments(), ","))},
			}
			if s.GetInstancesWaiting() > 0 && version == "" {
				rows = append(rows, waitingRows(appQueue(c.Context(), cl, a.GetId()))...)
			}
			rows = append(rows, lastFailureRows(s.GetLastTaskFailure())...)
			for i, v := range a.GetContainer().GetVolumes() {
				if p := v.GetPersistent(); p != nil {
					rows = append(rows, []string{fmt.Sprintf("VOLUME %d", i), fmt.Sprintf("%s (%g MiB, persistent)", v.GetContainerPath(), p.GetSize())})
				}
			}
			// Fields kept but not acted upon: say so rather than drop them.
			for _, u := range s.GetUnsupported() {
				rows = append(rows, []string{"UNSUPPORTED", u})
			}
			return table(c.OutOrStdout(), []string{"FIELD", "VALUE"}, rows)
		},
	}
	c.Flags().StringVar(&version, "version", "", "show this stored version")
	return c
}

// updateApp sends an update and reports its deployment.
func updateApp(c *cobra.Command, w *waitFlags, id string, app *v1.App, partial bool, what string) error {
	cl, err := newClients()
	if err != nil {
		return err
	}
	res, err := cl.apps.UpdateApp(c.Context(), connect.NewRequest(&v1.UpdateAppRequest{Id: id, App: app, Partial: partial, Force: w.force}))
	if err != nil {
		return err
	}
	if flagOutput == "json" {
		return w.printJSON(c.Context(), c, cl, res.Msg, res.Msg.GetDeploymentId())
	}
	return w.finish(c.Context(), c, cl, fmt.Sprintf("%s %s (version %s)", what, res.Msg.GetApp().GetId(), res.Msg.GetApp().GetVersion()), res.Msg.GetDeploymentId())
}

func appUpdateCmd() *cobra.Command {
	var (
		w       waitFlags
		partial bool
	)
	c := &cobra.Command{
		Use:   "update APP_ID FILE",
		Short: "Replace an app definition with FILE (- for stdin), or merge its fields with --partial",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			app, err := readAppFile(args[1])
			if err != nil {
				return err
			}
			return updateApp(c, &w, args[0], app, partial, "Updated app")
		},
	}
	c.Flags().BoolVar(&partial, "partial", false, "only change the fields given in FILE")
	w.register(c, true)
	return c
}

// parseCount parses an instance count argument. Its range is the server's
// to check, so that the CLI and the API refuse the same values alike.
func parseCount(s string) (int32, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("instances: %q is not an integer", s)
	}
	return int32(n), nil
}

func appScaleCmd() *cobra.Command {
	var w waitFlags
	c := &cobra.Command{
		Use:   "scale APP_ID N",
		Short: "Set the number of instances",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			n, err := parseCount(args[1])
			if err != nil {
				return err
			}
			return updateApp(c, &w, args[0], &v1.App{Instances: proto.Int32(n)}, true, "Scaled app")
		},
	}
	w.register(c, true)
	return c
}

func appStopCmd() *cobra.Command {
	var w waitFlags
	c := &cobra.Command{
		Use:   "stop APP_ID",
		Short: "Stop every instance (instances 0); reservations and volumes are kept",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return updateApp(c, &w, args[0], &v1.App{Instances: proto.Int32(0)}, true, "Stopping app")
		},
	}
	w.register(c, true)
	return c
}

func appStartCmd() *cobra.Command {
	var w waitFlags
	c := &cobra.Command{
		Use:   "start APP_ID [N]",
		Short: "Start a stopped app with N instances (default 1)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			n := int32(1)
			if len(args) == 2 {
				var err error
				if n, err = parseCount(args[1]); err != nil {
					return err
				}
			}
			cl, err := newClients()
			if err != nil {
				return err
			}
			cur, err := cl.apps.GetApp(c.Context(), connect.NewRequest(&v1.GetAppRequest{Id: args[0]}))
			if err != nil {
				return err
			}
			if cur.Msg.GetApp().GetInstances() > 0 && !w.force {
				return fmt.Errorf("app %s is already started with %d instances; use `berth app scale` to change that",
					cur.Msg.GetApp().GetId(), cur.Msg.GetApp().GetInstances())
			}
			return updateApp(c, &w, args[0], &v1.App{Instances: proto.Int32(n)}, true, "Starting app")
		},
	}
	w.register(c, true)
	return c
}

func appRestartCmd() *cobra.Command {
	var w waitFlags
	c := &cobra.Command{
		Use:   "restart APP_ID",
		Short: "Relaunch every instance (resident apps on the same berth)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.apps.RestartApp(c.Context(), connect.NewRequest(&v1.RestartAppRequest{Id: args[0], Force: w.force}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return w.printJSON(c.Context(), c, cl, res.Msg, res.Msg.GetDeploymentId())
			}
			return w.finish(c.Context(), c, cl, fmt.Sprintf("Restarting app %s (version %s)", args[0], res.Msg.GetVersion()), res.Msg.GetDeploymentId())
		},
	}
	w.register(c, true)
	return c
}

func appRollbackCmd() *cobra.Command {
	var (
		w  waitFlags
		to string
	)
	c := &cobra.Command{
		Use:   "rollback APP_ID",
		Short: "Redeploy a stored version of an app (see app versions)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if to == "" {
				return fmt.Errorf("app rollback needs --to VERSION (one of: berth app versions %s)", args[0])
			}
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.apps.UpdateApp(c.Context(), connect.NewRequest(&v1.UpdateAppRequest{Id: args[0], VersionToDeploy: to, Force: w.force}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return w.printJSON(c.Context(), c, cl, res.Msg, res.Msg.GetDeploymentId())
			}
			return w.finish(c.Context(), c, cl, fmt.Sprintf("Rolling app %s back to %s (version %s)", args[0], to, res.Msg.GetApp().GetVersion()), res.Msg.GetDeploymentId())
		},
	}
	c.Flags().StringVar(&to, "to", "", "the stored version to redeploy")
	w.register(c, true)
	return c
}

func appResetDelayCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reset-delay APP_ID",
		Short: "Clear the launch backoff of an app's instances: those waiting for it launch at the next offer",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.apps.ResetDelay(c.Context(), connect.NewRequest(&v1.ResetDelayRequest{Id: args[0]}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			fmt.Fprintf(c.OutOrStdout(), "Reset the launch delay of app %s (%d instances)\n", args[0], res.Msg.GetInstancesReset())
			return nil
		},
	}
}

func appRemoveCmd() *cobra.Command {
	var w waitFlags
	c := &cobra.Command{
		Use:   "remove APP_ID",
		Short: "Remove an app; its volumes are destroyed and reservations released",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.apps.DeleteApp(c.Context(), connect.NewRequest(&v1.DeleteAppRequest{Id: args[0], Force: w.force}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return w.printJSON(c.Context(), c, cl, res.Msg, res.Msg.GetDeploymentId())
			}
			return w.finish(c.Context(), c, cl, "Removing app "+args[0], res.Msg.GetDeploymentId())
		},
	}
	w.register(c, true)
	return c
}

func appVersionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "versions APP_ID",
		Short: "List the stored versions of an app, newest first",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.apps.ListAppVersions(c.Context(), connect.NewRequest(&v1.ListAppVersionsRequest{Id: args[0]}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			var rows [][]string
			for _, v := range res.Msg.GetVersions() {
				rows = append(rows, []string{v})
			}
			return table(c.OutOrStdout(), []string{"VERSION"}, rows)
		},
	}
}

// appListHeader are the columns of `dcos marathon app list`.
var appListHeader = []string{"ID", "MEM", "CPUS", "TASKS", "HEALTH", "DEPLOYMENT", "WAITING", "CONTAINER", "CMD"}

// appListRow is one app as `dcos marathon app list` shows it: TASKS is
// running/instances, HEALTH healthy/running when the app has health checks
// ("---" otherwise), DEPLOYMENT the kind of its running deployment
// (scale, deploy, restart, stop; "---" if none), WAITING whether some
// instance waits for an offer, CONTAINER the container type and CMD its
// command. deps are the running deployments by id (nil: unknown).
func appListRow(a *v1.App, s *v1.AppSummary, deps map[string]*v1.Deployment) []string {
	health := "---"
	if len(a.GetHealthChecks()) > 0 {
		health = fmt.Sprintf("%d/%d", s.GetTasksHealthy(), s.GetTasksRunning())
	}
	deployment := "---"
	for _, id := range s.GetDeployments() {
		deployment = deploymentKind(deps[id], a.GetId())
	}
	container := "mesos"
	if t := a.GetContainer().GetType(); t != "" {
		container = strings.ToLower(t)
	}
	command := a.GetCmd()
	if command == "" {
		command = strings.Join(a.GetArgs(), " ")
	}
	return []string{
		a.GetId(),
		strconv.FormatFloat(a.GetMem(), 'g', -1, 64),
		strconv.FormatFloat(a.GetCpus(), 'g', -1, 64),
		fmt.Sprintf("%d/%d", s.GetTasksRunning(), a.GetInstances()),
		health, deployment,
		strconv.FormatBool(s.GetInstancesWaiting() > 0),
		container, orNA(command),
	}
}

// deploymentKind names a deployment's action on an app as the DC/OS CLI
// does (scale, deploy, restart, stop); "deploy" when unknown.
func deploymentKind(d *v1.Deployment, appID string) string {
	for _, st := range d.GetSteps() {
		for _, act := range st.GetActions() {
			if act.GetApp() != appID {
				continue
			}
			switch act.GetAction() {
			case "ScaleApplication":
				return "scale"
			case "RestartApplication":
				return "restart"
			case "StopApplication":
				return "stop"
			}
		}
	}
	return "deploy"
}

// maxGroupBytes bounds a group definition read by app add.
const maxGroupBytes = 16 * appmodel.MaxBytes

// addGroup creates every app of a Marathon group definition, dependencies
// first; with --wait it follows each deployment in that order.
func addGroup(c *cobra.Command, w *waitFlags, cl *clients, path string, data []byte) error {
	var g appmodel.GroupDef
	if err := json.Unmarshal(data, &g); err != nil {
		return fmt.Errorf("group definition %s: %w", path, err)
	}
	if g.ScaleBy != nil || g.Version != nil {
		return fmt.Errorf("group definition %s: scaleBy and version change a group: use app scale or app rollback per app", path)
	}
	gid := "/"
	if g.ID != "" {
		gid = appmodel.ResolveID("/", g.ID)
	}
	apps, err := appmodel.FlattenGroup(g, gid, func(raw []byte, _ string) (*v1.App, error) { return appmodel.Parse(raw) })
	if err != nil {
		return fmt.Errorf("group definition %s: %w", path, err)
	}
	if len(apps) == 0 {
		return fmt.Errorf("group definition %s: no apps (Berth keeps no empty groups)", path)
	}
	ordered, ok := appmodel.DependencyOrder(apps)
	if !ok {
		return fmt.Errorf("group definition %s: the dependencies form a cycle", path)
	}
	type created struct{ app, version, deployment string }
	var done []created
	for _, ga := range ordered {
		res, err := cl.apps.CreateApp(c.Context(), connect.NewRequest(&v1.CreateAppRequest{App: ga.App}))
		if err != nil {
			return fmt.Errorf("%s (%s): %w", ga.App.GetId(), ga.Path, err)
		}
		done = append(done, created{res.Msg.GetApp().GetId(), res.Msg.GetApp().GetVersion(), res.Msg.GetDeploymentId()})
		if flagOutput == "json" {
			if err := printJSON(c.OutOrStdout(), res.Msg); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(c.OutOrStdout(), "Created app %s version %s (deployment %s)\n", done[len(done)-1].app, done[len(done)-1].version, done[len(done)-1].deployment)
	}
	if !w.wait {
		return nil
	}
	for _, d := range done {
		if d.deployment == "" {
			continue
		}
		if err := watchDeployment(c.Context(), c.OutOrStdout(), cl, d.deployment); err != nil {
			return err
		}
	}
	return nil
}
