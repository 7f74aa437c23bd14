package appmodel

import (
	"fmt"
	"math"
	"slices"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Rules of the field groups of Marathon's app RAML beyond the core ones:
// app checks, Linux settings, executor resources, resource limits, the
// artifact store and CSI volumes.

var (
	checkSchemes    = []string{"HTTP", "HTTPS"}
	ipcModes        = []string{"PRIVATE", "SHARE_PARENT"}
	csiAccessModes  = []string{"SINGLE_NODE_WRITER", "SINGLE_NODE_READER_ONLY", "MULTI_NODE_READER_ONLY", "MULTI_NODE_SINGLE_WRITER", "MULTI_NODE_MULTI_WRITER"}
	csiAccessTypes  = []string{"block", "mount"}
	executorMinimum = struct{ cpus, mem, disk float64 }{0.1, 32, 10}
)

// validateCheck checks the app check: exactly one of http, tcp and exec,
// a port of the app for http and tcp, a command for exec.
func validateCheck(v *validator, app *v1.App) {
	c := app.Check
	if c == nil {
		return
	}
	kinds := 0
	for _, set := range []bool{c.Http != nil, c.Tcp != nil, c.Exec != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		v.add("check", "must specify exactly one of http, tcp or exec (got %d)", kinds)
	}
	nports := len(appPorts(app))
	checkPort := func(field string, port, portIndex *int32) {
		v.portNumber(field+".port", port)
		switch {
		case port != nil && portIndex != nil:
			v.add(field+".port", "must not be set together with portIndex")
		case portIndex != nil && (*portIndex < 0 || int(*portIndex) >= nports):
			v.add(field+".portIndex", "must address an existing port: the app has %d port(s), got index %d", nports, *portIndex)
		case port == nil && portIndex == nil && nports == 0:
			v.add(field+".portIndex", "a check needs port or portIndex, and the app has no ports")
		}
	}
	if h := c.Http; h != nil {
		checkPort("check.http", h.Port, h.PortIndex)
		v.oneOf("check.http.scheme", h.Scheme, checkSchemes)
		if h.Path != nil && h.GetPath() == "" {
			v.add("check.http.path", "must not be empty when set")
		}
	}
	if t := c.Tcp; t != nil {
		checkPort("check.tcp", t.Port, t.PortIndex)
	}
	if e := c.Exec; e != nil {
		validateMesosCommand(v, "check.exec.command", e.Command)
	}
	v.nonNegativeInt("check.intervalSeconds", c.IntervalSeconds)
	v.nonNegativeInt("check.timeoutSeconds", c.TimeoutSeconds)
	v.nonNegativeInt("check.delaySeconds", c.DelaySeconds)
}

// validateMesosCommand checks a command given as shell or argv, never both.
func validateMesosCommand(v *validator, field string, c *v1.MesosCommand) {
	switch {
	case c == nil:
		v.add(field, `must be set: {"shell": "..."} or {"argv": [...]}`)
	case c.Shell != nil && len(c.Argv) > 0:
		v.add(field, "must specify shell or argv, not both")
	case c.Shell != nil:
		if c.GetShell() == "" {
			v.add(field+".shell", "must not be empty")
		}
	case len(c.Argv) == 0:
		v.add(field, `must specify shell or a non-empty argv`)
	}
}

// validateLinuxInfo checks container.linuxInfo (Mesos LinuxInfo): a MESOS
// container; an IPC mode; /dev/shm's size only with a private IPC
// namespace; a seccomp profile or unconfined, not both.
func validateLinuxInfo(v *validator, c *v1.Container) {
	li := c.GetLinuxInfo()
	if li == nil {
		return
	}
	if c.GetType() == "DOCKER" {
		v.add("container.linuxInfo", "is only supported with the MESOS container (got DOCKER)")
	}
	if s := li.Seccomp; s != nil {
		if s.GetUnconfined() && s.GetProfileName() != "" {
			v.add("container.linuxInfo.seccomp.profileName", "must not be set when unconfined is true")
		}
		if !s.GetUnconfined() && s.ProfileName != nil && s.GetProfileName() == "" {
			v.add("container.linuxInfo.seccomp.profileName", "must not be empty when set")
		}
	}
	if ipc := li.IpcInfo; ipc != nil {
		if ipc.Mode == nil {
			v.add("container.linuxInfo.ipcInfo.mode", "must be set (%s)", "PRIVATE, SHARE_PARENT")
		}
		v.oneOf("container.linuxInfo.ipcInfo.mode", ipc.Mode, ipcModes)
		v.nonNegativeInt("container.linuxInfo.ipcInfo.shmSize", ipc.ShmSize)
		if ipc.ShmSize != nil && ipc.GetMode() == "SHARE_PARENT" {
			v.add("container.linuxInfo.ipcInfo.shmSize", "is only allowed with mode PRIVATE")
		}
	}
}

// validateResourceExtras checks executorResources (RAML minimums) and
// resourceLimits (a limit is at least what the app asks for).
func validateResourceExtras(v *validator, app *v1.App) {
	if er := app.ExecutorResources; er != nil {
		for _, f := range []struct {
			name string
			val  *float64
			min  float64
		}{
			{"executorResources.cpus", er.Cpus, executorMinimum.cpus},
			{"executorResources.mem", er.Mem, executorMinimum.mem},
			{"executorResources.disk", er.Disk, executorMinimum.disk},
		} {
			if f.val != nil && !(*f.val >= f.min && !math.IsInf(*f.val, 0)) {
				v.add(f.name, "must be a finite number greater than or equal to %s (got %s)", fmtFloat(f.min), fmtFloat(*f.val))
			}
		}
	}
	if rl := app.ResourceLimits; rl != nil {
		for _, f := range []struct {
			name      string
			limit     *v1.ResourceLimit
			requested float64
		}{
			{"resourceLimits.cpus", rl.Cpus, CPUs(app)},
			{"resourceLimits.mem", rl.Mem, Mem(app)},
		} {
			val, ok := f.limit.GetKind().(*v1.ResourceLimit_Value)
			switch {
			case f.limit == nil || (!ok && f.limit.GetUnlimited()):
			case !ok:
				v.add(f.name, `must be a number or "unlimited"`)
			case math.IsNaN(val.Value) || math.IsInf(val.Value, 0):
				v.add(f.name, "must be a finite number")
			case val.Value < f.requested:
				v.add(f.name, "must be greater than or equal to the requested %s (got %s)", fmtFloat(f.requested), fmtFloat(val.Value))
			}
		}
	}
	for i, u := range app.StoreUrls {
		if u == "" {
			v.add(fmt.Sprintf("storeUrls[%d]", i), "must not be empty")
		}
	}
}

// validateDockerExtras checks the legacy registry credential and AppC
// image.
func validateDockerExtras(v *validator, c *v1.Container) {
	if cr := c.GetDocker().GetCredential(); cr != nil && cr.GetPrincipal() == "" {
		v.add("container.docker.credential.principal", "must not be empty")
	}
	if a := c.GetAppc(); a != nil {
		if a.GetImage() == "" {
			v.add("container.appc.image", "must not be empty")
		}
		if a.Id != nil && len(a.GetId()) < 7 {
			v.add("container.appc.id", "must be at least 7 characters (got %q)", a.GetId())
		}
		if c.GetType() == "DOCKER" {
			v.add("container.appc", "is only supported with the MESOS container (got DOCKER)")
		}
	}
}

// validateExternalVolume checks an external volume. Berth refuses them:
// it has no volume driver, so the task would run without its data, on a
// directory that vanishes with it, which for a stateful service is worse
// than not running.
func validateExternalVolume(v *validator, field string, e *v1.ExternalVolume) {
	v.add(field+".external", "external volumes are not supported by Berth (no volume driver): the task would run without its data; use a persistent volume")
	if e.GetName() == "" {
		v.add(field+".external.name", "must not be empty")
	}
	if o := e.CsiOptions; o != nil {
		if e.GetProvider() != "csi" {
			v.add(field+".external.provider", `must be "csi" for CSI options`)
		}
		if o.GetPluginName() == "" {
			v.add(field+".external.options.pluginName", "must not be empty")
		}
		cp := o.GetCapability()
		if !slices.Contains(csiAccessModes, cp.GetAccessMode()) {
			v.add(field+".external.options.capability.accessMode", "unknown value %q (allowed: %v)", cp.GetAccessMode(), csiAccessModes)
		}
		if !slices.Contains(csiAccessTypes, cp.GetAccessType()) {
			v.add(field+".external.options.capability.accessType", "unknown value %q (allowed: %v)", cp.GetAccessType(), csiAccessTypes)
		}
	}
	v.nonNegativeInt(field+".external.size", e.Size)
}
