package scheduler

import (
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Marathon's defaults for fields an app may leave out.
const (
	defaultCPUs                 = 1.0
	defaultMem                  = 128.0
	defaultBackoffSeconds       = 1.0
	defaultBackoffFactor        = 1.15
	defaultMaxLaunchDelay       = 300
	defaultKillSelection        = "YOUNGEST_FIRST"
	defaultResidentMinHealth    = 0.5
	defaultStatelessMinHealth   = 1.0
	defaultHealthGraceSeconds   = 300
	defaultHealthIntervalSecs   = 60
	defaultHealthTimeoutSecs    = 20
	defaultHealthMaxConsecutive = 3
	defaultHealthDelaySeconds   = 15
)

// appSlug is the app id without the leading slash, with '/' replaced by '_':
// the prefix of instance ids, task ids and persistence ids.
func appSlug(appID string) string {
	return strings.ReplaceAll(strings.Trim(appID, "/"), "/", "_")
}

// instanceIDFor builds "<app>.instance-<uuid>".
func instanceIDFor(appID, uuid string) string {
	return appSlug(appID) + ".instance-" + uuid
}

// taskIDFor builds "<app>.instance-<uuid>._app.<incarnation>".
func taskIDFor(instanceID string, incarnation uint32) string {
	return fmt.Sprintf("%s._app.%d", instanceID, incarnation)
}

// persistenceIDFor builds "<app_id_with_underscores>#<containerPath>#<uuid>".
func persistenceIDFor(appID, containerPath, uuid string) string {
	return appSlug(appID) + "#" + containerPath + "#" + uuid
}

func appInstances(a *v1.App) int {
	if a.Instances == nil {
		return 1
	}
	if *a.Instances < 0 {
		return 0
	}
	return int(*a.Instances)
}

func appCPUs(a *v1.App) float64 {
	if a.Cpus == nil {
		return defaultCPUs
	}
	return *a.Cpus
}

func appMem(a *v1.App) float64 {
	if a.Mem == nil {
		return defaultMem
	}
	return *a.Mem
}

func appDisk(a *v1.App) float64 { return a.GetDisk() }

func appGPUs(a *v1.App) float64 { return float64(a.GetGpus()) }

// persistentVolumes returns the app's persistent volumes.
func persistentVolumes(a *v1.App) []*v1.Volume {
	var out []*v1.Volume
	for _, v := range a.GetContainer().GetVolumes() {
		if v.GetPersistent() != nil {
			out = append(out, v)
		}
	}
	return out
}

// isResident is true for an app with at least one persistent volume.
func isResident(a *v1.App) bool { return len(persistentVolumes(a)) > 0 }

func backoffDelay(a *v1.App, failures uint32) float64 {
	if failures == 0 {
		return 0
	}
	base := defaultBackoffSeconds
	if a.BackoffSeconds != nil {
		base = *a.BackoffSeconds
	}
	factor := defaultBackoffFactor
	if a.BackoffFactor != nil {
		factor = *a.BackoffFactor
	}
	maxDelay := float64(defaultMaxLaunchDelay)
	if a.MaxLaunchDelaySeconds != nil {
		maxDelay = float64(*a.MaxLaunchDelaySeconds)
	}
	d := base * math.Pow(factor, float64(failures-1))
	if d > maxDelay || math.IsInf(d, 0) || math.IsNaN(d) {
		d = maxDelay
	}
	if d < 0 {
		d = 0
	}
	return d
}

func minHealthCapacity(a *v1.App) float64 {
	if us := a.GetUpgradeStrategy(); us != nil && us.MinimumHealthCapacity != nil {
		return *us.MinimumHealthCapacity
	}
	if isResident(a) {
		return defaultResidentMinHealth
	}
	return defaultStatelessMinHealth
}

func killSelection(a *v1.App) string {
	if a.KillSelection == nil || *a.KillSelection == "" {
		return defaultKillSelection
	}
	return strings.ToUpper(*a.KillSelection)
}

// healthProtocol returns a health check's protocol, HTTP by default.
func healthProtocol(hc *v1.HealthCheck) string {
	if hc.Protocol == nil || *hc.Protocol == "" {
		return "HTTP"
	}
	return strings.ToUpper(*hc.Protocol)
}

// isLeaderCheck is true for checks Berth runs itself (HTTP, HTTPS, TCP).
func isLeaderCheck(hc *v1.HealthCheck) bool {
	switch healthProtocol(hc) {
	case "HTTP", "HTTPS", "TCP":
		return true
	}
	return false
}

func hasHealthChecks(a *v1.App) bool { return len(a.GetHealthChecks()) > 0 }

// configKey is a copy of the app without what a pure scale changes
// (instances, version, lastScalingAt): two versions with equal keys run the
// same tasks, so instances need no restart between them.
func configKey(a *v1.App) *v1.App {
	c := proto.Clone(a).(*v1.App)
	c.Instances = nil
	c.Version = nil
	if c.VersionInfo != nil {
		c.VersionInfo.LastScalingAt = ""
	}
	return c
}

func sameConfig(a, b *v1.App) bool {
	if a == nil || b == nil {
		return false
	}
	return proto.Equal(configKey(a), configKey(b))
}
