package appmodel

import (
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The questions the scheduler asks about an app. Each answers for any app,
// canonical or not: a field the app leaves out counts as Marathon's default,
// the same default Canonicalize writes in.

// PersistentVolumes returns the app's persistent volumes in order.
func PersistentVolumes(app *v1.App) []*v1.Volume {
	var out []*v1.Volume
	for _, vol := range app.GetContainer().GetVolumes() {
		if vol.GetPersistent() != nil {
			out = append(out, vol)
		}
	}
	return out
}

// IsResident reports whether the app has at least one persistent volume, which
// makes every instance of it resident on its berth.
func IsResident(app *v1.App) bool { return len(PersistentVolumes(app)) > 0 }

// Instances is the number of instances the app asks for (negative counts
// as 0).
func Instances(app *v1.App) int {
	if app.Instances == nil {
		return DefaultInstances
	}
	return int(max(app.GetInstances(), 0))
}

// CPUs is the app's cpus.
func CPUs(app *v1.App) float64 {
	if app.Cpus == nil {
		return DefaultCpus
	}
	return app.GetCpus()
}

// Mem is the app's mem in MiB.
func Mem(app *v1.App) float64 {
	if app.Mem == nil {
		return DefaultMem
	}
	return app.GetMem()
}

// Disk is the app's sandbox disk in MiB.
func Disk(app *v1.App) float64 {
	if app.Disk == nil {
		return DefaultDisk
	}
	return app.GetDisk()
}

// GPUs is the app's gpus.
func GPUs(app *v1.App) float64 {
	if app.Gpus == nil {
		return DefaultGpus
	}
	return float64(app.GetGpus())
}

// BackoffDelay is how long to wait before the next launch after failures
// consecutive failures, in seconds: backoffSeconds × backoffFactor^(n-1),
// at most maxLaunchDelaySeconds; 0 without failures.
func BackoffDelay(app *v1.App, failures uint32) float64 {
	if failures == 0 {
		return 0
	}
	base := DefaultBackoffSeconds
	if app.BackoffSeconds != nil {
		base = app.GetBackoffSeconds()
	}
	factor := DefaultBackoffFactor
	if app.BackoffFactor != nil {
		factor = app.GetBackoffFactor()
	}
	maxDelay := float64(DefaultMaxLaunchDelaySeconds)
	if app.MaxLaunchDelaySeconds != nil {
		maxDelay = float64(app.GetMaxLaunchDelaySeconds())
	}
	d := base * math.Pow(factor, float64(failures-1))
	if d > maxDelay || math.IsInf(d, 0) || math.IsNaN(d) {
		d = maxDelay
	}
	return max(d, 0)
}

// MinimumHealthCapacity is upgradeStrategy.minimumHealthCapacity: by
// default 0.5 for a resident app, 1 otherwise.
func MinimumHealthCapacity(app *v1.App) float64 {
	if us := app.GetUpgradeStrategy(); us != nil && us.MinimumHealthCapacity != nil {
		return us.GetMinimumHealthCapacity()
	}
	if IsResident(app) {
		return residentMinimumHealthCapacity
	}
	return DefaultMinimumHealthCapacity
}

// MaximumOverCapacity is upgradeStrategy.maximumOverCapacity, 1 by default.
// A resident app never runs an extra instance (a berth holds one task at a
// time): always 0.
func MaximumOverCapacity(app *v1.App) float64 {
	if IsResident(app) {
		return residentMaximumOverCapacity
	}
	if us := app.GetUpgradeStrategy(); us != nil && us.MaximumOverCapacity != nil {
		return us.GetMaximumOverCapacity()
	}
	return DefaultMaximumOverCapacity
}

// KillSelection is YOUNGEST_FIRST or OLDEST_FIRST: which instances go
// first when the app scales down.
func KillSelection(app *v1.App) string {
	if app.GetKillSelection() == "" {
		return DefaultKillSelection
	}
	return strings.ToUpper(app.GetKillSelection())
}

// HealthProtocol is a health check's protocol in upper case, HTTP by
// default.
func HealthProtocol(hc *v1.HealthCheck) string {
	if hc.GetProtocol() == "" {
		return DefaultHealthProtocol
	}
	return strings.ToUpper(hc.GetProtocol())
}

// HealthPath is the path an HTTP(S) health check requests, "/" by default.
func HealthPath(hc *v1.HealthCheck) string {
	if hc.GetPath() == "" {
		return DefaultHealthPath
	}
	return hc.GetPath()
}

// IsMarathonCheck reports whether a health check is one Marathon (here: the
// leader) runs itself, HTTP, HTTPS or TCP, rather than the Mesos executor.
func IsMarathonCheck(hc *v1.HealthCheck) bool {
	switch HealthProtocol(hc) {
	case "HTTP", "HTTPS", "TCP":
		return true
	}
	return false
}

// HealthCheckWithDefaults returns a copy of hc with Marathon's defaults for
// the fields it leaves out (timings, protocol, path).
func HealthCheckWithDefaults(hc *v1.HealthCheck) *v1.HealthCheck {
	c := proto.Clone(hc).(*v1.HealthCheck)
	if c == nil {
		c = &v1.HealthCheck{}
	}
	canonicalizeHealthCheck(c, false)
	return c
}

// ReadinessPortName is the name of the port a readiness check probes,
// "http" by default.
func ReadinessPortName(rc *v1.ReadinessCheck) string {
	if rc.GetPortName() == "" {
		return DefaultReadinessPortName
	}
	return rc.GetPortName()
}

// ReadinessPath is the path a readiness check requests, "/" by default.
func ReadinessPath(rc *v1.ReadinessCheck) string {
	if rc.GetPath() == "" {
		return DefaultReadinessPath
	}
	return rc.GetPath()
}

// ReadinessStatusCodes are the HTTP status codes that mean ready, [200] by
// default.
func ReadinessStatusCodes(rc *v1.ReadinessCheck) []int32 {
	if len(rc.GetHttpStatusCodesForReady()) == 0 {
		return []int32{DefaultReadinessStatusCode}
	}
	return rc.GetHttpStatusCodesForReady()
}

// ReadinessInterval is intervalSeconds, else the millisecond interval
// (rounded up to whole seconds), else 30 s.
func ReadinessInterval(rc *v1.ReadinessCheck) time.Duration {
	return secondsOrMillis(rc.IntervalSeconds, rc.Interval, DefaultReadinessInterval)
}

// ReadinessTimeout is timeoutSeconds, else the millisecond timeout (rounded
// up to whole seconds), else 10 s.
func ReadinessTimeout(rc *v1.ReadinessCheck) time.Duration {
	return secondsOrMillis(rc.TimeoutSeconds, rc.Timeout, DefaultReadinessTimeout)
}

func secondsOrMillis(secs, millis *int32, def int32) time.Duration {
	switch {
	case secs != nil && *secs > 0:
		return time.Duration(*secs) * time.Second
	case millis != nil && *millis > 0:
		return time.Duration(msToSeconds(*millis)) * time.Second
	}
	return time.Duration(def) * time.Second
}

// NeedsRelaunch reports whether instances running old must be relaunched to
// run updated: true when the definitions differ in anything but instances,
// version and versionInfo.lastScalingAt (a pure scale relaunches nothing).
//
// versionInfo.lastConfigChangeAt counts on purpose: a restart changes
// nothing but it (see StampVersion), and that is how a restart relaunches
// every instance. A nil app on either side needs a relaunch.
func NeedsRelaunch(old, updated *v1.App) bool {
	if old == nil || updated == nil {
		return true
	}
	return !proto.Equal(relaunchKey(old), relaunchKey(updated))
}

// relaunchKey is a copy of the app without what a pure scale changes, and
// without its backup policy (which the app's tasks never see).
func relaunchKey(app *v1.App) *v1.App {
	c := proto.Clone(app).(*v1.App)
	c.Instances, c.Version, c.Backup = nil, nil, nil
	if c.VersionInfo != nil {
		c.VersionInfo.LastScalingAt = ""
		if c.VersionInfo.LastConfigChangeAt == "" {
			c.VersionInfo = nil
		}
	}
	return c
}

// Change is how a new version of an app came about, for StampVersion.
type Change int

const (
	// Edit is a create or an update: the instances relaunch if the
	// definition changed (NeedsRelaunch).
	Edit Change = iota
	// Restart relaunches every instance of an unchanged definition.
	Restart
)

// StampVersion gives next the version that follows old (nil for a new app):
// version and versionInfo.lastScalingAt become version, and
// versionInfo.lastConfigChangeAt too when the instances must relaunch (a
// new app, a changed definition, or a restart); otherwise it keeps old's.
// It reports whether the instances must relaunch. next's own version fields
// are ignored.
func StampVersion(old, next *v1.App, version string, change Change) (relaunch bool) {
	last := old.GetVersionInfo().GetLastConfigChangeAt()
	next.Version = proto.String(version)
	next.VersionInfo = &v1.VersionInfo{LastScalingAt: version, LastConfigChangeAt: last}
	relaunch = change == Restart || last == "" || NeedsRelaunch(old, next)
	if relaunch {
		next.VersionInfo.LastConfigChangeAt = version
	}
	return relaunch
}

// AcceptedRoles reads an app's acceptedResourceRoles: whether it may use
// unreserved resources ("*"), and which roles' reserved resources. Absent
// means unreserved only. Resident apps always make their reservations from
// unreserved resources.
func AcceptedRoles(a *v1.App) (unreserved bool, roles map[string]bool) {
	if IsResident(a) || len(a.GetAcceptedResourceRoles()) == 0 {
		return true, nil
	}
	roles = map[string]bool{}
	for _, r := range a.GetAcceptedResourceRoles() {
		if r == "*" {
			unreserved = true
		} else {
			roles[r] = true
		}
	}
	return unreserved, roles
}

// DockerNetwork is the Docker network mode of a DOCKER container: its
// deprecated container.docker.network, else the one its networks translate
// to (HOST, BRIDGE for container/bridge, USER for container).
func DockerNetwork(app *v1.App) string {
	if n := app.GetContainer().GetDocker().GetNetwork(); n != "" {
		return strings.ToUpper(n)
	}
	mode := "HOST"
	for _, n := range app.GetNetworks() {
		switch strings.ToLower(n.GetMode()) {
		case NetworkModeContainerBridge:
			mode = "BRIDGE"
		case NetworkModeContainer:
			mode = "USER"
		}
	}
	return mode
}

// EnvString is an env value holding a plain string.
func EnvString(s string) *v1.EnvValue {
	return &v1.EnvValue{Kind: &v1.EnvValue_Value{Value: s}}
}

// EnvSecret is an env value that refers to the app's secret of that name.
func EnvSecret(name string) *v1.EnvValue {
	return &v1.EnvValue{Kind: &v1.EnvValue_Secret{Secret: name}}
}

// Env builds an env of plain strings.
func Env(vars map[string]string) map[string]*v1.EnvValue {
	out := make(map[string]*v1.EnvValue, len(vars))
	for k, v := range vars {
		out[k] = EnvString(v)
	}
	return out
}
