package appmodel

import (
	"fmt"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Unsupported lists the fields of an app that Berth keeps (they round-trip
// through the API) but does not act upon on its engine, each as
// "field.path: reason", in field order; nil when Berth honours everything
// the app asks for. Fields whose absence would make running the app wrong
// are refused by Validate instead (external volumes).
func Unsupported(app *v1.App) []string {
	var out []string
	add := func(field, format string, args ...any) {
		out = append(out, field+": "+fmt.Sprintf(format, args...))
	}
	if e := app.GetExecutor(); e != "" && e != "//cmd" {
		add("executor", "custom executors are not used; the task runs with Mesos' command executor")
	}
	if app.ExecutorResources != nil {
		add("executorResources", "only used with a custom executor")
	}
	if app.ResourceLimits != nil {
		add("resourceLimits", "not passed to Mesos; the task is limited to the resources it asks for")
	}
	if app.Check != nil {
		add("check", "Mesos-native app checks are not run; use healthChecks")
	}
	if len(app.StoreUrls) > 0 {
		add("storeUrls", "the artifact store was removed in Marathon 1.5; use fetch")
	}
	if app.GetTty() {
		add("tty", "no TTY is attached to the task")
	}
	// Berth never replaces an instance whose agent is unreachable. Said
	// only when the app asks for timings of its own, not for Marathon's
	// default (0, 0) that every stateless app gets.
	if e := app.GetUnreachableStrategy().GetEnabled(); e != nil && !app.GetBackup().GetReplaceFromBackup() && (e.GetInactiveAfterSeconds() != DefaultUnreachableInactiveAfterSeconds || e.GetExpungeAfterSeconds() != DefaultUnreachableExpungeAfterSeconds) {
		add("unreachableStrategy", "instances on an unreachable agent wait for it (as \"disabled\"); they are not replaced after inactiveAfterSeconds")
	}
	if app.GetResidency().GetTaskLostBehavior() == "RELAUNCH_AFTER_TIMEOUT" {
		add("residency.taskLostBehavior", "resident instances always wait for their agent (Berth never destroys on doubt), as WAIT_FOREVER")
	}
	c := app.GetContainer()
	docker := c.GetType() == "DOCKER"
	for i, n := range app.GetNetworks() {
		field := fmt.Sprintf("networks[%d]", i)
		switch {
		case n.GetMode() == NetworkModeContainer && docker:
			add(field, "the network's name and labels are not passed to Mesos (no NetworkInfo); Docker's user network needs them")
		case n.GetMode() == NetworkModeContainer:
			add(field, "container networks are not joined (no CNI NetworkInfo is passed to Mesos); the task runs on the host network")
		case n.GetMode() == NetworkModeContainerBridge && !docker:
			add(field, "the Mesos bridge network is not joined (no CNI NetworkInfo is passed to Mesos); the task runs on the host network")
		}
	}
	if c.GetLinuxInfo() != nil {
		add("container.linuxInfo", "seccomp and IPC settings are not passed to the container")
	}
	if c.GetAppc() != nil {
		add("container.appc", "AppC images are not supported; use container.docker.image")
	}
	if d := c.GetDocker(); d != nil {
		if d.GetForcePullImage() && !docker {
			add("container.docker.forcePullImage", "not passed for the MESOS container; the agent's cached image may be used")
		}
		if d.RequirePorts != nil {
			add("container.docker.requirePorts", "ignored, as Marathon does; the app's requirePorts applies")
		}
		if d.Credential != nil {
			add("container.docker.credential", "not passed to Mesos; use pullConfig with a secret")
		}
	}
	for i, vol := range c.GetVolumes() {
		if vol.Secret != nil {
			add(fmt.Sprintf("container.volumes[%d].secret", i), "secret volumes are not mounted into the task; reference the secret from env")
		}
	}
	return out
}
