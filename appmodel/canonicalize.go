package appmodel

import (
	"strings"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Marathon's defaults (Marathon 1.10, app.raml / AppDefinition.scala /
// AppNormalization.scala). maxLaunchDelaySeconds is 300 s since Marathon 1.8.
const (
	DefaultInstances             = 1
	DefaultCpus                  = 1.0
	DefaultMem                   = 128.0
	DefaultDisk                  = 0.0
	DefaultGpus                  = 0
	DefaultBackoffSeconds        = 1.0
	DefaultBackoffFactor         = 1.15
	DefaultMaxLaunchDelaySeconds = 300
	DefaultKillSelection         = "YOUNGEST_FIRST"
	DefaultMinimumHealthCapacity = 1.0
	DefaultMaximumOverCapacity   = 1.0
	DefaultHealthProtocol        = "HTTP"
	DefaultHealthPath            = "/"
	DefaultHealthGracePeriod     = 300
	DefaultHealthInterval        = 60
	DefaultHealthTimeout         = 20
	DefaultHealthMaxFailures     = 3
	DefaultHealthDelaySeconds    = 15
	DefaultReadinessInterval     = 30
	DefaultReadinessTimeout      = 10
	DefaultReadinessName         = "readinessCheck"
	DefaultReadinessProtocol     = "HTTP"
	DefaultReadinessPath         = "/"
	DefaultReadinessPortName     = "http"
	DefaultReadinessStatusCode   = 200
	DefaultResidencyRelaunch     = 3600
	DefaultResidencyTaskLost     = "WAIT_FOREVER"
	DefaultPersistentVolumeType  = "root"
	DefaultContainerType         = "MESOS"
	DefaultPortProtocol          = "tcp"
	DefaultPortName              = "default"
	UnreachableDisabled          = "disabled"
	// Marathon's defaults for an enabled unreachable strategy (RAML
	// UnreachableEnabled); a stateless app gets them when it names none.
	DefaultUnreachableInactiveAfterSeconds = 0
	DefaultUnreachableExpungeAfterSeconds  = 0
	residentMinimumHealthCapacity          = 0.5
	residentMaximumOverCapacity            = 0.0
)

// Network modes of App.networks.
const (
	NetworkModeHost            = "host"
	NetworkModeContainer       = "container"
	NetworkModeContainerBridge = "container/bridge"
)

// Canonicalize applies Marathon's normalization and defaults to app in place
// and returns it: the id is made absolute, deprecated fields (uris, ports,
// ipAddress, container.docker.network, container.docker.portMappings) are
// translated into their canonical forms, networks default to host, port
// definitions and port mappings get Marathon's defaults, and every scalar that
// Marathon defaults is set explicitly (instances, cpus, mem, disk, gpus,
// backoff, killSelection, upgradeStrategy, unreachableStrategy, health and
// readiness check fields, persistent volume type, container type).
//
// Translations that would lose information (both uris and fetch, both
// container.portMappings and container.docker.portMappings, deprecated and
// canonical network fields together, an unknown docker network, discovery
// ports on a Docker container) are left untouched so that Validate reports
// them. Canonicalize is idempotent and never fails; a nil app is returned as
// is.
//
// An explicitly empty "portDefinitions": [] (or "ports": []) means no ports,
// and "container.portMappings": [] no port mappings, as in Marathon: no
// default is added (see ExplicitlyEmpty).
func Canonicalize(app *v1.App) *v1.App {
	if app == nil {
		return nil
	}
	canonicalizePresence(app)
	app.Id = NormalizeID(app.Id)
	for i, d := range app.Dependencies {
		app.Dependencies[i] = NormalizeID(d)
	}
	normalizeFetch(app)
	normalizeNetworks(app)

	// Port definitions: the deprecated ports list becomes port definitions;
	// non-host networking has none, host networking defaults to one.
	migratedPortDefs := len(app.PortDefinitions)
	if len(app.PortDefinitions) == 0 && len(app.Ports) > 0 {
		for _, p := range app.Ports {
			app.PortDefinitions = append(app.PortDefinitions, &v1.PortDefinition{Port: proto.Int32(p)})
		}
		migratedPortDefs = len(app.PortDefinitions)
	}
	app.Ports = nil
	nonHost := hasNonHostNetwork(app.Networks)
	if nonHost {
		app.PortDefinitions = nil
	} else if len(app.PortDefinitions) == 0 && !ExplicitlyEmpty(app, "portDefinitions") {
		app.PortDefinitions = []*v1.PortDefinition{{Port: proto.Int32(0), Name: proto.String(DefaultPortName)}}
	}
	for _, pd := range app.PortDefinitions {
		if pd == nil {
			continue
		}
		if pd.Port == nil {
			pd.Port = proto.Int32(0)
		}
		if pd.Protocol == nil {
			pd.Protocol = proto.String(DefaultPortProtocol)
		}
	}

	normalizeContainer(app, nonHost, migratedPortDefs)

	if app.Instances == nil {
		app.Instances = proto.Int32(DefaultInstances)
	}
	if app.Cpus == nil {
		app.Cpus = proto.Float64(DefaultCpus)
	}
	if app.Mem == nil {
		app.Mem = proto.Float64(DefaultMem)
	}
	if app.Disk == nil {
		app.Disk = proto.Float64(DefaultDisk)
	}
	if app.Gpus == nil {
		app.Gpus = proto.Int32(DefaultGpus)
	}
	if app.BackoffSeconds == nil {
		app.BackoffSeconds = proto.Float64(DefaultBackoffSeconds)
	}
	if app.BackoffFactor == nil {
		app.BackoffFactor = proto.Float64(DefaultBackoffFactor)
	}
	if app.MaxLaunchDelaySeconds == nil {
		app.MaxLaunchDelaySeconds = proto.Int32(DefaultMaxLaunchDelaySeconds)
	}
	if app.KillSelection == nil {
		app.KillSelection = proto.String(DefaultKillSelection)
	}
	// requirePorts only applies to host networking.
	if app.RequirePorts == nil || nonHost {
		app.RequirePorts = proto.Bool(false)
	}

	resident := IsResident(app)
	if app.UpgradeStrategy == nil {
		app.UpgradeStrategy = &v1.UpgradeStrategy{}
	}
	if app.UpgradeStrategy.MinimumHealthCapacity == nil {
		if resident {
			app.UpgradeStrategy.MinimumHealthCapacity = proto.Float64(residentMinimumHealthCapacity)
		} else {
			app.UpgradeStrategy.MinimumHealthCapacity = proto.Float64(DefaultMinimumHealthCapacity)
		}
	}
	if app.UpgradeStrategy.MaximumOverCapacity == nil {
		if resident {
			app.UpgradeStrategy.MaximumOverCapacity = proto.Float64(residentMaximumOverCapacity)
		} else {
			app.UpgradeStrategy.MaximumOverCapacity = proto.Float64(DefaultMaximumOverCapacity)
		}
	}
	if app.UnreachableStrategy.GetKind() == nil {
		if resident {
			app.UnreachableStrategy = &v1.UnreachableStrategy{Kind: &v1.UnreachableStrategy_Disabled{Disabled: &v1.UnreachableDisabled{}}}
		} else {
			app.UnreachableStrategy = &v1.UnreachableStrategy{Kind: &v1.UnreachableStrategy_Enabled{Enabled: &v1.UnreachableEnabled{
				InactiveAfterSeconds: proto.Int32(DefaultUnreachableInactiveAfterSeconds),
				ExpungeAfterSeconds:  proto.Int32(DefaultUnreachableExpungeAfterSeconds),
			}}}
		}
	}
	if resident {
		if app.Residency == nil {
			app.Residency = &v1.Residency{}
		}
		if app.Residency.RelaunchEscalationTimeoutSeconds == nil {
			app.Residency.RelaunchEscalationTimeoutSeconds = proto.Int32(DefaultResidencyRelaunch)
		}
		if app.Residency.TaskLostBehavior == nil {
			app.Residency.TaskLostBehavior = proto.String(DefaultResidencyTaskLost)
		}
	}

	hasPorts := len(app.PortDefinitions) > 0 || len(app.GetContainer().GetPortMappings()) > 0
	for _, hc := range app.HealthChecks {
		canonicalizeHealthCheck(hc, hasPorts)
	}
	for _, rc := range app.ReadinessChecks {
		canonicalizeReadinessCheck(rc)
	}
	canonicalizeCheck(app.Check)
	canonicalizePresence(app)
	return app
}

// NormalizeID makes a Marathon path id absolute and drops trailing
// slashes. It deliberately does not resolve "." or ".." segments, so that
// Validate can refuse them instead of silently moving the app.
func NormalizeID(id string) string {
	if id == "" {
		return id
	}
	if !strings.HasPrefix(id, "/") {
		id = "/" + id
	}
	for len(id) > 1 && strings.HasSuffix(id, "/") {
		id = strings.TrimSuffix(id, "/")
	}
	return id
}

// normalizeFetch turns the pre-1.0 uris list into fetch entries.
func normalizeFetch(app *v1.App) {
	if len(app.Uris) == 0 || len(app.Fetch) > 0 {
		return // both set: left for Validate
	}
	for _, u := range app.Uris {
		app.Fetch = append(app.Fetch, &v1.FetchUri{Uri: u, Extract: proto.Bool(isExtractable(u))})
	}
	app.Uris = nil
}

// isExtractable mirrors Marathon's FetchUri.isExtract: archives the Mesos
// fetcher unpacks.
func isExtractable(uri string) bool {
	for _, ext := range []string{".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip"} {
		if strings.HasSuffix(uri, ext) {
			return true
		}
	}
	return false
}

// normalizeNetworks translates the deprecated ipAddress and
// container.docker.network fields into networks (Marathon 1.5's
// NetworkTranslation), then defaults networks to [host].
func normalizeNetworks(app *v1.App) {
	dockerNet := app.GetContainer().GetDocker().GetNetwork()
	hasDockerNet := app.GetContainer().GetDocker() != nil && app.Container.Docker.Network != nil
	ip := app.IpAddress
	if len(app.Networks) > 0 {
		// Canonical networks given; any deprecated field alongside is a
		// conflict that Validate reports. A network without a mode is a
		// container network (network.raml's default).
		for _, n := range app.Networks {
			if n != nil && n.Mode == nil {
				n.Mode = proto.String(NetworkModeContainer)
			}
		}
		return
	}
	var networks []*v1.Network
	switch {
	case ip != nil && hasDockerNet:
		switch dockerNet {
		case "HOST":
			networks = []*v1.Network{{Mode: proto.String(NetworkModeHost)}}
		case "USER":
			networks = []*v1.Network{{Mode: proto.String(NetworkModeContainer), Name: ip.NetworkName, Labels: ip.Labels}}
		case "BRIDGE":
			networks = []*v1.Network{{Mode: proto.String(NetworkModeContainerBridge), Labels: ip.Labels}}
		default:
			return
		}
	case ip != nil:
		networks = []*v1.Network{{Mode: proto.String(NetworkModeContainer), Name: ip.NetworkName, Labels: ip.Labels}}
	case hasDockerNet:
		switch dockerNet {
		case "HOST":
			networks = []*v1.Network{{Mode: proto.String(NetworkModeHost)}}
		case "USER":
			networks = []*v1.Network{{Mode: proto.String(NetworkModeContainer)}}
		case "BRIDGE":
			networks = []*v1.Network{{Mode: proto.String(NetworkModeContainerBridge)}}
		default:
			return
		}
	default:
		networks = []*v1.Network{{Mode: proto.String(NetworkModeHost)}}
	}
	app.Networks = networks
	if d := app.GetContainer().GetDocker(); d != nil {
		d.Network = nil
	}
	if ip != nil {
		// No container but ipAddress: an empty Mesos container.
		if app.Container == nil {
			app.Container = &v1.Container{Type: proto.String(DefaultContainerType)}
		}
		discovery := ip.GetDiscovery().GetPorts()
		switch {
		case len(discovery) == 0:
			app.IpAddress = nil
		case app.Container.GetType() == "DOCKER" || len(app.Container.PortMappings) > 0 || len(app.Container.GetDocker().GetPortMappings()) > 0:
			// Discovery ports do not apply to Docker, and must not be
			// combined with port mappings: keep only them for Validate.
			app.IpAddress = &v1.IpAddress{Discovery: ip.Discovery}
		default:
			for _, p := range discovery {
				if p == nil {
					continue
				}
				pm := &v1.PortMapping{ContainerPort: proto.Int32(p.Number), Labels: p.Labels}
				if p.Name != "" {
					pm.Name = proto.String(p.Name)
				}
				if p.Protocol != "" {
					pm.Protocol = proto.String(p.Protocol)
				}
				app.Container.PortMappings = append(app.Container.PortMappings, pm)
			}
			app.IpAddress = nil
		}
	}
}

// hasNonHostNetwork reports whether any network is not host mode.
func hasNonHostNetwork(networks []*v1.Network) bool {
	for _, n := range networks {
		if n.GetMode() != NetworkModeHost {
			return true
		}
	}
	return false
}

func hasBridgeNetwork(networks []*v1.Network) bool {
	for _, n := range networks {
		if n.GetMode() == NetworkModeContainerBridge {
			return true
		}
	}
	return false
}

// normalizeContainer moves docker port mappings to the container, applies
// Marathon's port mapping defaults for the networking mode, and defaults the
// container type and volume fields.
func normalizeContainer(app *v1.App, nonHost bool, migratedPortDefs int) {
	if app.Container == nil && nonHost {
		app.Container = &v1.Container{Type: proto.String(DefaultContainerType)}
	}
	c := app.Container
	if c == nil {
		return
	}
	if c.Type == nil {
		c.Type = proto.String(DefaultContainerType)
	}
	if d := c.Docker; d != nil && len(d.PortMappings) > 0 {
		if len(c.PortMappings) > 0 {
			// Both set: a conflict Validate reports; change nothing.
			return
		}
		c.PortMappings = d.PortMappings
		d.PortMappings = nil
	}
	switch {
	case !nonHost:
		// Host networking uses port definitions; port mappings do not apply.
		c.PortMappings = nil
	case len(c.PortMappings) == 0 && !ExplicitlyEmpty(app, "container.portMappings"):
		c.PortMappings = []*v1.PortMapping{{Name: proto.String(DefaultPortName)}}
	}
	if nonHost {
		// One port mapping per declared port definition (Marathon's
		// maybeAddPortMappings).
		for len(c.PortMappings) < migratedPortDefs {
			c.PortMappings = append(c.PortMappings, &v1.PortMapping{})
		}
	}
	bridge := hasBridgeNetwork(app.Networks)
	for _, pm := range c.PortMappings {
		if pm == nil {
			continue
		}
		if pm.ContainerPort == nil {
			pm.ContainerPort = proto.Int32(0)
		}
		if pm.Protocol == nil {
			pm.Protocol = proto.String(DefaultPortProtocol)
		}
		// In bridge mode a missing host port means "any port" (0).
		if bridge && pm.HostPort == nil {
			pm.HostPort = proto.Int32(0)
		}
	}
	for _, v := range c.Volumes {
		if v == nil {
			continue
		}
		if v.Mode == nil && (v.Persistent != nil || v.HostPath != nil) {
			v.Mode = proto.String("RW")
		}
		if p := v.Persistent; p != nil && p.Type == nil {
			if p.GetProfileName() != "" {
				p.Type = proto.String("mount")
			} else {
				p.Type = proto.String(DefaultPersistentVolumeType)
			}
		}
	}
}

// canonicalizeHealthCheck fills in Marathon's health check defaults.
func canonicalizeHealthCheck(hc *v1.HealthCheck, appHasPorts bool) {
	if hc == nil {
		return
	}
	if hc.Protocol == nil {
		hc.Protocol = proto.String(DefaultHealthProtocol)
	}
	protocol := hc.GetProtocol()
	if protocol != "COMMAND" && appHasPorts && hc.Port == nil && hc.PortIndex == nil {
		hc.PortIndex = proto.Int32(0)
	}
	switch protocol {
	case "HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS":
		if hc.Path == nil {
			hc.Path = proto.String(DefaultHealthPath)
		}
	}
	switch protocol {
	case "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP":
		if hc.IpProtocol == nil {
			hc.IpProtocol = proto.String("IPv4")
		}
	}
	if hc.GracePeriodSeconds == nil {
		hc.GracePeriodSeconds = proto.Int32(DefaultHealthGracePeriod)
	}
	if hc.IntervalSeconds == nil {
		hc.IntervalSeconds = proto.Int32(DefaultHealthInterval)
	}
	if hc.TimeoutSeconds == nil {
		hc.TimeoutSeconds = proto.Int32(DefaultHealthTimeout)
	}
	if hc.MaxConsecutiveFailures == nil {
		hc.MaxConsecutiveFailures = proto.Int32(DefaultHealthMaxFailures)
	}
	if hc.DelaySeconds == nil {
		hc.DelaySeconds = proto.Int32(DefaultHealthDelaySeconds)
	}
	if hc.IgnoreHttp1Xx == nil {
		hc.IgnoreHttp1Xx = proto.Bool(false)
	}
}

// canonicalizeReadinessCheck fills in Marathon's readiness check defaults and
// converts the API docs' millisecond interval/timeout fields to seconds.
func canonicalizeReadinessCheck(rc *v1.ReadinessCheck) {
	if rc == nil {
		return
	}
	if rc.Name == nil {
		rc.Name = proto.String(DefaultReadinessName)
	}
	if rc.Protocol == nil {
		rc.Protocol = proto.String(DefaultReadinessProtocol)
	}
	if rc.Path == nil {
		rc.Path = proto.String(DefaultReadinessPath)
	}
	if rc.PortName == nil {
		rc.PortName = proto.String(DefaultReadinessPortName)
	}
	if rc.IntervalSeconds == nil && rc.Interval != nil {
		rc.IntervalSeconds = proto.Int32(msToSeconds(rc.GetInterval()))
	}
	if rc.TimeoutSeconds == nil && rc.Timeout != nil {
		rc.TimeoutSeconds = proto.Int32(msToSeconds(rc.GetTimeout()))
	}
	rc.Interval, rc.Timeout = nil, nil
	if rc.IntervalSeconds == nil {
		rc.IntervalSeconds = proto.Int32(DefaultReadinessInterval)
	}
	if rc.TimeoutSeconds == nil {
		rc.TimeoutSeconds = proto.Int32(DefaultReadinessTimeout)
	}
	if len(rc.HttpStatusCodesForReady) == 0 {
		rc.HttpStatusCodesForReady = []int32{DefaultReadinessStatusCode}
	}
	if rc.PreserveLastResponse == nil {
		rc.PreserveLastResponse = proto.Bool(false)
	}
}

// msToSeconds rounds a millisecond duration up to whole seconds.
func msToSeconds(ms int32) int32 {
	if ms <= 0 {
		return ms / 1000
	}
	return int32((int64(ms) + 999) / 1000)
}

// Marathon's defaults of an app check (check.raml).
const (
	DefaultCheckInterval = 60
	DefaultCheckTimeout  = 20
	DefaultCheckDelay    = 15
	DefaultCheckScheme   = "HTTP"
)

// canonicalizeCheck fills in Marathon's defaults of an app check.
func canonicalizeCheck(c *v1.AppCheck) {
	if c == nil {
		return
	}
	if c.IntervalSeconds == nil {
		c.IntervalSeconds = proto.Int32(DefaultCheckInterval)
	}
	if c.TimeoutSeconds == nil {
		c.TimeoutSeconds = proto.Int32(DefaultCheckTimeout)
	}
	if c.DelaySeconds == nil {
		c.DelaySeconds = proto.Int32(DefaultCheckDelay)
	}
	if h := c.Http; h != nil && h.Scheme == nil {
		h.Scheme = proto.String(DefaultCheckScheme)
	}
}
