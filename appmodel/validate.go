package appmodel

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Violation is one broken rule of an app definition: the field path in
// Marathon JSON terms (e.g. "container.volumes[0].persistent.size") and what
// is wrong with it.
type Violation struct {
	Field       string
	Description string
}

// String renders the violation as "field: description".
func (v Violation) String() string { return v.Field + ": " + v.Description }

// pathSegmentRE is Marathon's rule for one segment of an app id.
var pathSegmentRE = regexp.MustCompile(`^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$`)

var (
	containerTypes      = []string{"MESOS", "DOCKER"}
	dockerNetworks      = []string{"HOST", "BRIDGE", "USER"}
	networkModes        = []string{NetworkModeHost, NetworkModeContainer, NetworkModeContainerBridge}
	portProtocols       = []string{"tcp", "udp", "udp,tcp", "tcp,udp"}
	volumeModes         = []string{"RW", "RO"}
	persistentTypes     = []string{"root", "path", "mount"}
	killSelections      = []string{"YOUNGEST_FIRST", "OLDEST_FIRST"}
	marathonHealthKinds = []string{"HTTP", "HTTPS", "TCP"}
	mesosHealthKinds    = []string{"COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"}
	ipProtocols         = []string{"IPv4", "IPv6"}
	readinessProtocols  = []string{"HTTP", "HTTPS"}
	taskLostBehaviors   = []string{"WAIT_FOREVER", "RELAUNCH_AFTER_TIMEOUT"}
)

type validator struct{ vs []Violation }

func (v *validator) add(field, format string, args ...any) {
	v.vs = append(v.vs, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// oneOf checks an optional enum-like string.
func (v *validator) oneOf(field string, value *string, allowed []string) {
	if value != nil && !slices.Contains(allowed, *value) {
		v.add(field, "unknown value %q (allowed: %s)", *value, strings.Join(allowed, ", "))
	}
}

// nonNegative checks an optional double.
func (v *validator) nonNegative(field string, value *float64) {
	if value == nil {
		return
	}
	if math.IsNaN(*value) || math.IsInf(*value, 0) {
		v.add(field, "must be a finite number")
	} else if *value < 0 {
		v.add(field, "must be greater than or equal to 0 (got %s)", fmtFloat(*value))
	}
}

// nonNegativeInt checks an optional integer.
func (v *validator) nonNegativeInt(field string, value *int32) {
	if value != nil && *value < 0 {
		v.add(field, "must be greater than or equal to 0 (got %d)", *value)
	}
}

// positiveInt checks an optional integer that must be at least 1.
func (v *validator) positiveInt(field string, value *int32) {
	if value != nil && *value < 1 {
		v.add(field, "must be greater than 0 (got %d)", *value)
	}
}

func (v *validator) portNumber(field string, value *int32) {
	if value != nil && (*value < 0 || *value > 65535) {
		v.add(field, "must be a port number between 0 and 65535 (got %d)", *value)
	}
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// Validate checks an app definition against Marathon's rules, including
// the extra rules for resident apps (apps with persistent volumes). It is
// meant for a canonical app (see Canonicalize) and returns every violation
// found, in field order; nil means valid. It never panics, whatever the
// input.
func Validate(app *v1.App) []Violation {
	v := &validator{}
	if app == nil {
		v.add("app", "must be set")
		return v.vs
	}
	resident := IsResident(app)

	validateText(v, app.ProtoReflect(), "")
	validateAppID(v, "id", app.Id, true)
	validateIDRoom(v, app)
	if app.GetCmd() != "" && len(app.Args) > 0 {
		v.add("cmd", "must not be set together with args (set one of cmd or args)")
	}
	if app.GetCmd() == "" && len(app.Args) == 0 && app.Container == nil {
		v.add("cmd", "one of cmd, args or container must be set")
	}
	validateEnv(v, "env", app.Env, app)
	for k := range app.Labels {
		if k == "" {
			v.add("labels", "label names must not be empty")
		}
	}
	v.nonNegativeInt("instances", app.Instances)
	v.nonNegative("cpus", app.Cpus)
	v.nonNegative("mem", app.Mem)
	v.nonNegative("disk", app.Disk)
	v.nonNegativeInt("gpus", app.Gpus)
	if app.GetGpus() > 0 && app.GetContainer().GetType() == "DOCKER" {
		v.add("gpus", "GPUs are only supported with the MESOS container")
	}
	validateConstraints(v, "constraints", app.Constraints)
	validateContainer(v, app)
	validateNetworks(v, app)
	validatePortDefinitions(v, app)
	validateHealthChecks(v, app)
	validateReadinessChecks(v, app)
	validateCheck(v, app)
	validateResourceExtras(v, app)
	validateBackup(v, app)

	us := app.UpgradeStrategy
	if us != nil {
		for _, f := range []struct {
			name string
			val  *float64
		}{{"upgradeStrategy.minimumHealthCapacity", us.MinimumHealthCapacity}, {"upgradeStrategy.maximumOverCapacity", us.MaximumOverCapacity}} {
			if f.val != nil && !(*f.val >= 0 && *f.val <= 1) {
				v.add(f.name, "must be between 0 and 1 (got %s)", fmtFloat(*f.val))
			}
		}
		if resident && us.GetMaximumOverCapacity() != 0 {
			v.add("upgradeStrategy.maximumOverCapacity", "must be 0 for resident apps (got %s): a berth holds one task at a time", fmtFloat(us.GetMaximumOverCapacity()))
		}
	}
	validateUnreachable(v, app.UnreachableStrategy, resident && !app.GetBackup().GetReplaceFromBackup())
	if r := app.Residency; r != nil {
		v.nonNegativeInt("residency.relaunchEscalationTimeoutSeconds", r.RelaunchEscalationTimeoutSeconds)
		v.oneOf("residency.taskLostBehavior", r.TaskLostBehavior, taskLostBehaviors)
	}
	v.oneOf("killSelection", app.KillSelection, killSelections)
	v.nonNegative("backoffSeconds", app.BackoffSeconds)
	if f := app.BackoffFactor; f != nil && !(*f >= 1 && !math.IsInf(*f, 0)) {
		v.add("backoffFactor", "must be a finite number greater than or equal to 1 (got %s)", fmtFloat(*f))
	}
	v.nonNegativeInt("maxLaunchDelaySeconds", app.MaxLaunchDelaySeconds)
	v.nonNegativeInt("taskKillGracePeriodSeconds", app.TaskKillGracePeriodSeconds)
	v.nonNegativeInt("maxUnavailable", app.MaxUnavailable)
	if len(app.Uris) > 0 && len(app.Fetch) > 0 {
		v.add("uris", "must not be set together with fetch")
	}
	for i, f := range app.Fetch {
		if f.GetUri() == "" {
			v.add(fmt.Sprintf("fetch[%d].uri", i), "must not be empty")
		}
	}
	for i, u := range app.Uris {
		if u == "" {
			v.add(fmt.Sprintf("uris[%d]", i), "must not be empty")
		}
	}
	for i, d := range app.Dependencies {
		validateAppID(v, fmt.Sprintf("dependencies[%d]", i), d, false)
	}
	for i, r := range app.AcceptedResourceRoles {
		if r != "*" {
			validateRole(v, fmt.Sprintf("acceptedResourceRoles[%d]", i), r)
		}
	}
	if resident && len(app.AcceptedResourceRoles) > 0 && !(len(app.AcceptedResourceRoles) == 1 && app.AcceptedResourceRoles[0] == "*") {
		v.add("acceptedResourceRoles", `must be absent or exactly ["*"] for resident apps (new reservations use unreserved resources)`)
	}
	if app.Role != nil {
		if app.GetRole() == "*" {
			if resident {
				v.add("role", `must not be "*" for resident apps: reservations need a role`)
			}
		} else {
			validateRole(v, "role", app.GetRole())
		}
	}
	return v.vs
}

// validateSecretRef checks a reference to one of the app's secrets.
func validateSecretRef(v *validator, field, name string, app *v1.App) {
	if _, ok := app.GetSecrets()[name]; !ok {
		v.add(field, "must name one of the app's secrets (got %q)", name)
	}
}

// validateAppID checks a Marathon path id, absolute or relative.
func validateAppID(v *validator, field, id string, requireApp bool) {
	if id == "" {
		v.add(field, "must not be empty")
		return
	}
	rest := strings.TrimPrefix(id, "/")
	if rest == "" {
		if requireApp {
			v.add(field, "must name an app, not the root group")
		}
		return
	}
	for _, seg := range strings.Split(rest, "/") {
		switch {
		case seg == "." || seg == "..":
			v.add(field, "must not contain %q segments (got %q)", seg, id)
			return
		case !pathSegmentRE.MatchString(seg):
			v.add(field, "invalid path segment %q in %q: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit", seg, id)
			return
		}
	}
}

// validateRole checks a Mesos role name.
func validateRole(v *validator, field, role string) {
	switch {
	case role == "":
		v.add(field, "must not be empty")
	case role == "." || role == "..":
		v.add(field, "invalid role %q", role)
	case strings.HasPrefix(role, "-"):
		v.add(field, "invalid role %q: must not start with '-'", role)
	case strings.ContainsAny(role, " \t\n\r\x00\\"):
		v.add(field, "invalid role %q: must not contain whitespace or backslashes", role)
	}
}

// validateConstraints checks Marathon placement constraints.
func validateConstraints(v *validator, prefix string, constraints []*v1.Constraint) {
	for i, c := range constraints {
		if _, err := CompileConstraint(c); err != nil {
			v.add(fmt.Sprintf("%s[%d]", prefix, i), "%v", err)
		}
	}
}

func validateContainer(v *validator, app *v1.App) {
	c := app.Container
	if c == nil {
		return
	}
	v.oneOf("container.type", c.Type, containerTypes)
	d := c.Docker
	if c.GetType() == "DOCKER" && d.GetImage() == "" {
		v.add("container.docker.image", "must not be empty for a DOCKER container")
	}
	if d != nil {
		if d.Network != nil {
			v.oneOf("container.docker.network", d.Network, dockerNetworks)
			if len(app.Networks) > 0 {
				v.add("container.docker.network", "must not be combined with networks (deprecated and canonical network fields cannot be mixed)")
			}
		}
		for i, p := range d.Parameters {
			if p.GetKey() == "" {
				v.add(fmt.Sprintf("container.docker.parameters[%d].key", i), "must not be empty")
			}
		}
		if pc := d.PullConfig; pc != nil {
			validateSecretRef(v, "container.docker.pullConfig.secret", pc.GetSecret(), app)
			if c.GetType() == "DOCKER" {
				v.add("container.docker.pullConfig", "is only supported with the MESOS container (got DOCKER)")
			}
		}
		if len(d.PortMappings) > 0 && len(c.PortMappings) > 0 {
			v.add("container.docker.portMappings", "must not be set together with container.portMappings")
		}
		validatePortMappings(v, "container.docker.portMappings", d.PortMappings)
	}
	validatePortMappings(v, "container.portMappings", c.PortMappings)
	validateLinuxInfo(v, c)
	validateDockerExtras(v, c)

	paths := map[string]int{}
	for i, vol := range c.Volumes {
		field := fmt.Sprintf("container.volumes[%d]", i)
		if vol == nil {
			continue
		}
		if vol.ContainerPath == "" {
			v.add(field+".containerPath", "must not be empty")
		} else if j, dup := paths[vol.ContainerPath]; dup {
			v.add(field+".containerPath", "duplicate container path %q (also container.volumes[%d])", vol.ContainerPath, j)
		} else {
			paths[vol.ContainerPath] = i
		}
		kinds := 0
		for _, set := range []bool{vol.HostPath != nil, vol.Persistent != nil, vol.External != nil, vol.Secret != nil} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			v.add(field, "must be exactly one of a host volume (hostPath), persistent, external or secret volume")
		}
		v.oneOf(field+".mode", vol.Mode, volumeModes)
		if vol.HostPath != nil && vol.GetHostPath() == "" {
			v.add(field+".hostPath", "must not be empty")
		}
		if p := vol.Persistent; p != nil {
			validatePersistentVolume(v, field, vol, p)
		}
		if e := vol.External; e != nil {
			validateExternalVolume(v, field, e)
		}
		if vol.Secret != nil {
			validateSecretRef(v, field+".secret", vol.GetSecret(), app)
		}
	}
}

func validatePersistentVolume(v *validator, field string, vol *v1.Volume, p *v1.PersistentVolume) {
	cp := vol.ContainerPath
	if cp == "." || cp == ".." || strings.Contains(cp, "/") {
		v.add(field+".containerPath", "must be a relative name without '/', '.' or '..' for a persistent volume (got %q); mount it elsewhere with a host volume whose hostPath is this name", cp)
	}
	if vol.GetMode() == "RO" {
		v.add(field+".mode", "must be RW for a persistent volume")
	}
	if p.Size == nil || !(p.GetSize() > 0) || math.IsInf(p.GetSize(), 0) {
		v.add(field+".persistent.size", "must be greater than 0")
	}
	v.oneOf(field+".persistent.type", p.Type, persistentTypes)
	typ := p.GetType()
	if typ == "" {
		typ = DefaultPersistentVolumeType
	}
	if p.MaxSize != nil {
		if typ != "mount" {
			v.add(field+".persistent.maxSize", "is only allowed for mount volumes")
		} else if !(p.GetMaxSize() > p.GetSize()) || math.IsInf(p.GetMaxSize(), 0) {
			v.add(field+".persistent.maxSize", "must be greater than size (%s)", fmtFloat(p.GetSize()))
		}
	}
	if len(p.Constraints) > 0 && typ == "root" {
		v.add(field+".persistent.constraints", "only allowed on path or mount volumes")
	}
	for i, c := range p.Constraints {
		cf := fmt.Sprintf("%s.persistent.constraints[%d]", field, i)
		if c.GetField() != "path" || (c.GetOperator() != OpLike && c.GetOperator() != OpUnlike) || c.Value == nil {
			v.add(cf, `must be ["path", "LIKE" or "UNLIKE", regex]`)
			continue
		}
		if _, err := CompileConstraint(c); err != nil {
			v.add(cf, "%v", err)
		}
	}
}

func validatePortMappings(v *validator, prefix string, pms []*v1.PortMapping) {
	names := map[string]int{}
	for i, pm := range pms {
		field := fmt.Sprintf("%s[%d]", prefix, i)
		if pm == nil {
			continue
		}
		v.portNumber(field+".containerPort", pm.ContainerPort)
		v.portNumber(field+".hostPort", pm.HostPort)
		v.portNumber(field+".servicePort", pm.ServicePort)
		v.oneOf(field+".protocol", pm.Protocol, portProtocols)
		if pm.Name != nil {
			name := pm.GetName()
			if name == "" {
				v.add(field+".name", "must not be empty when set")
			} else if j, dup := names[name]; dup {
				v.add(field+".name", "duplicate port name %q (also %s[%d])", name, prefix, j)
			} else {
				names[name] = i
			}
		}
	}
}

func validateNetworks(v *validator, app *v1.App) {
	hosts, bridges, containers := 0, 0, 0
	for i, n := range app.Networks {
		if n == nil {
			continue
		}
		switch n.GetMode() {
		case NetworkModeHost:
			hosts++
		case NetworkModeContainerBridge:
			bridges++
		case NetworkModeContainer:
			containers++
		}
		v.oneOf(fmt.Sprintf("networks[%d].mode", i), n.Mode, networkModes)
		if n.Mode == nil {
			v.add(fmt.Sprintf("networks[%d].mode", i), "must be set (%s)", strings.Join(networkModes, ", "))
		}
	}
	if hosts > 0 && len(app.Networks) > 1 {
		v.add("networks", "host networking cannot be combined with other networks")
	}
	if bridges > 0 && len(app.Networks) > 1 {
		v.add("networks", "bridge networking cannot be combined with other networks")
	}
	if containers > 1 && app.GetContainer().GetType() == "DOCKER" {
		v.add("networks", "a DOCKER container joins at most one container network")
	}
	if ip := app.IpAddress; ip != nil {
		if len(app.Networks) > 0 && (ip.NetworkName != nil || len(ip.Groups) > 0 || len(ip.Labels) > 0) {
			v.add("ipAddress", "must not be combined with networks (deprecated and canonical network fields cannot be mixed)")
		}
		if len(ip.GetDiscovery().GetPorts()) > 0 {
			switch {
			case app.GetContainer().GetType() == "DOCKER":
				v.add("ipAddress.discovery.ports", "do not apply to DOCKER containers; use container.portMappings")
			case len(app.GetContainer().GetPortMappings()) > 0:
				v.add("ipAddress.discovery.ports", "must not be set together with container.portMappings")
			}
		}
	}
}

func validatePortDefinitions(v *validator, app *v1.App) {
	if len(app.PortDefinitions) > 0 && hasNonHostNetwork(app.Networks) {
		v.add("portDefinitions", "must be empty with non-host networking; use container.portMappings")
	}
	names := map[string]int{}
	ports := map[int32]int{}
	for i, pd := range app.PortDefinitions {
		field := fmt.Sprintf("portDefinitions[%d]", i)
		if pd == nil {
			continue
		}
		v.portNumber(field+".port", pd.Port)
		if p := pd.GetPort(); p != 0 {
			if j, dup := ports[p]; dup {
				v.add(field+".port", "duplicate port %d (also portDefinitions[%d])", p, j)
			} else {
				ports[p] = i
			}
		}
		v.oneOf(field+".protocol", pd.Protocol, portProtocols)
		if pd.Name != nil {
			name := pd.GetName()
			if name == "" {
				v.add(field+".name", "must not be empty when set")
			} else if j, dup := names[name]; dup {
				v.add(field+".name", "duplicate port name %q (also portDefinitions[%d])", name, j)
			} else {
				names[name] = i
			}
		}
	}
	for i, p := range app.Ports {
		v.portNumber(fmt.Sprintf("ports[%d]", i), &p)
	}
}

// appPorts returns the names of the app's ports in index order (empty for an
// unnamed port): container port mappings under non-host networking, port
// definitions under host networking.
func appPorts(app *v1.App) []string {
	var names []string
	c := app.GetContainer()
	nonHost := hasNonHostNetwork(app.Networks)
	if len(app.Networks) == 0 {
		switch c.GetDocker().GetNetwork() {
		case "BRIDGE", "USER":
			nonHost = true
		}
	}
	switch {
	case nonHost:
		pms := c.GetPortMappings()
		if len(pms) == 0 {
			pms = c.GetDocker().GetPortMappings()
		}
		for _, pm := range pms {
			names = append(names, pm.GetName())
		}
	case len(app.PortDefinitions) > 0:
		for _, pd := range app.PortDefinitions {
			names = append(names, pd.GetName())
		}
	default:
		for range app.Ports {
			names = append(names, "")
		}
	}
	return names
}

func validateHealthChecks(v *validator, app *v1.App) {
	nports := len(appPorts(app))
	var mesosChecks []int
	for i, hc := range app.HealthChecks {
		field := fmt.Sprintf("healthChecks[%d]", i)
		if hc == nil {
			continue
		}
		protocol := hc.GetProtocol()
		if hc.Protocol == nil {
			protocol = "HTTP"
		}
		switch {
		case slices.Contains(marathonHealthKinds, protocol):
		case slices.Contains(mesosHealthKinds, protocol):
			mesosChecks = append(mesosChecks, i)
		default:
			v.add(field+".protocol", "unknown value %q (allowed: %s, %s)", protocol,
				strings.Join(marathonHealthKinds, ", "), strings.Join(mesosHealthKinds, ", "))
		}
		if hc.Port != nil && hc.PortIndex != nil {
			v.add(field+".port", "must not be set together with portIndex")
		}
		if hc.Port != nil && (hc.GetPort() < 1 || hc.GetPort() > 65535) {
			v.add(field+".port", "must be a port number between 1 and 65535 (got %d)", hc.GetPort())
		}
		if hc.PortIndex != nil && (hc.GetPortIndex() < 0 || int(hc.GetPortIndex()) >= nports) {
			v.add(field+".portIndex", "must address an existing port: the app has %d port(s), got index %d", nports, hc.GetPortIndex())
		}
		if protocol == "COMMAND" {
			if hc.GetCommand().GetValue() == "" {
				v.add(field+".command.value", "must not be empty for a COMMAND check")
			}
		} else {
			if hc.Command != nil {
				v.add(field+".command", "only allowed for COMMAND checks")
			}
			if hc.Port == nil && hc.PortIndex == nil {
				v.add(field+".portIndex", "a %s check needs port or portIndex, and the app has no ports", protocol)
			}
		}
		v.nonNegativeInt(field+".gracePeriodSeconds", hc.GracePeriodSeconds)
		v.positiveInt(field+".intervalSeconds", hc.IntervalSeconds)
		v.positiveInt(field+".timeoutSeconds", hc.TimeoutSeconds)
		v.nonNegativeInt(field+".maxConsecutiveFailures", hc.MaxConsecutiveFailures)
		v.nonNegativeInt(field+".delaySeconds", hc.DelaySeconds)
		v.oneOf(field+".ipProtocol", hc.IpProtocol, ipProtocols)
	}
	// As Marathon: its own checks (run by the leader) mix with at most one
	// Mesos check (run by the executor; a TaskInfo holds one).
	if len(mesosChecks) > 1 {
		v.add(fmt.Sprintf("healthChecks[%d].protocol", mesosChecks[1]), "an app may have at most one Mesos health check (COMMAND or MESOS_*)")
	}
}

func validateReadinessChecks(v *validator, app *v1.App) {
	portNames := appPorts(app)
	for i, rc := range app.ReadinessChecks {
		field := fmt.Sprintf("readinessChecks[%d]", i)
		if rc == nil {
			continue
		}
		v.oneOf(field+".protocol", rc.Protocol, readinessProtocols)
		if rc.GetPortName() == "" || !slices.Contains(portNames, rc.GetPortName()) {
			v.add(field+".portName", "must name one of the app's ports (got %q)", rc.GetPortName())
		}
		v.positiveInt(field+".intervalSeconds", rc.IntervalSeconds)
		v.positiveInt(field+".timeoutSeconds", rc.TimeoutSeconds)
		for j, code := range rc.HttpStatusCodesForReady {
			if code < 100 || code > 599 {
				v.add(fmt.Sprintf("%s.httpStatusCodesForReady[%d]", field, j), "must be an HTTP status code (got %d)", code)
			}
		}
	}
}

// validateUnreachable checks the unreachableStrategy: "disabled" or
// {inactiveAfterSeconds, expungeAfterSeconds}; resident apps need
// "disabled" (waiting is resident) unless they opt in to replacement from
// a backup (backup.replaceFromBackup, docs/MIGRATION.md), passed here as
// resident false.
func validateUnreachable(v *validator, us *v1.UnreachableStrategy, resident bool) {
	const field = "unreachableStrategy"
	e := us.GetEnabled()
	if e == nil {
		return // absent or disabled
	}
	v.nonNegativeInt(field+".inactiveAfterSeconds", e.InactiveAfterSeconds)
	v.nonNegativeInt(field+".expungeAfterSeconds", e.ExpungeAfterSeconds)
	if e.GetExpungeAfterSeconds() < e.GetInactiveAfterSeconds() {
		v.add(field+".expungeAfterSeconds", "must be greater than or equal to inactiveAfterSeconds")
	}
	if resident {
		v.add(field, `must be "disabled" for resident apps: an instance waits for its agent (unless backup.replaceFromBackup is true: then it is replaced from its latest backup after inactiveAfterSeconds)`)
	}
}

// ValidateUpdate checks the rules that relate a new definition to the stored
// one. For a resident app, the resources reserved on its agents (cpus, mem,
// disk, gpus), its persistent volumes, requirePorts and its host ports cannot
// change. Both apps should be canonical.
func ValidateUpdate(old, updated *v1.App) []Violation {
	v := &validator{}
	if old == nil || updated == nil || !IsResident(old) {
		return nil
	}
	const immutable = "cannot change for a resident app (was %s, now %s); create a new app instead"
	for _, f := range []struct {
		name     string
		old, new float64
	}{
		{"cpus", old.GetCpus(), updated.GetCpus()},
		{"mem", old.GetMem(), updated.GetMem()},
		{"disk", old.GetDisk(), updated.GetDisk()},
		{"gpus", float64(old.GetGpus()), float64(updated.GetGpus())},
	} {
		if f.old != f.new {
			v.add(f.name, immutable, fmtFloat(f.old), fmtFloat(f.new))
		}
	}
	if !slices.EqualFunc(PersistentVolumes(old), PersistentVolumes(updated), func(a, b *v1.Volume) bool { return proto.Equal(a, b) }) {
		v.add("container.volumes", "persistent volumes of a resident app cannot change")
	}
	if old.GetRequirePorts() != updated.GetRequirePorts() {
		v.add("requirePorts", immutable, strconv.FormatBool(old.GetRequirePorts()), strconv.FormatBool(updated.GetRequirePorts()))
	}
	oldPorts, newPorts := hostPorts(old), hostPorts(updated)
	if !slices.Equal(oldPorts, newPorts) {
		field := "portDefinitions"
		if hasNonHostNetwork(updated.Networks) {
			field = "container.portMappings"
		}
		v.add(field, "host ports of a resident app cannot change (was %v, now %v)", oldPorts, newPorts)
	}
	return v.vs
}

// hostPorts lists the host ports an app asks for (0 = any port): port
// definitions under host networking, the hostPort of each port mapping
// that has one otherwise.
func hostPorts(app *v1.App) []int32 {
	var out []int32
	if hasNonHostNetwork(app.Networks) {
		for _, pm := range app.GetContainer().GetPortMappings() {
			if pm.HostPort != nil {
				out = append(out, pm.GetHostPort())
			}
		}
		return out
	}
	for _, pd := range app.PortDefinitions {
		out = append(out, pd.GetPort())
	}
	return out
}

// validateEnv checks an environment (the app's, or its backup's) whose
// fields are named prefix[NAME]. Marathon's apps take any name
// (LegacyEnvVars); only what no process environment can hold is refused.
func validateEnv(v *validator, prefix string, env map[string]*v1.EnvValue, app *v1.App) {
	for name, val := range env {
		field := fmt.Sprintf("%s[%s]", prefix, strconv.Quote(name))
		if name == "" || strings.ContainsAny(name, "=\x00") {
			v.add(field, "invalid environment variable name: must not be empty or contain '=' or NUL")
		}
		if val.GetKind() == nil {
			v.add(field, "must be a string or a secret reference")
		} else if ref, isRef := val.GetKind().(*v1.EnvValue_Secret); isRef {
			validateSecretRef(v, field+".secret", ref.Secret, app)
		}
	}
}
