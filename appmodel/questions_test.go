package appmodel

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func TestNeedsRelaunch(t *testing.T) {
	base := func() *v1.App {
		return Canonicalize(mustParse(t, `{"id": "/web", "cmd": "serve", "instances": 2, "env": {"A": "1"},
			"version": "2026-01-01T00:00:00Z",
			"versionInfo": {"lastScalingAt": "2026-01-01T00:00:00Z", "lastConfigChangeAt": "2026-01-01T00:00:00Z"}}`))
	}
	cases := []struct {
		name   string
		change func(a *v1.App)
		want   bool
	}{
		{"identical", func(*v1.App) {}, false},
		{"scale up", func(a *v1.App) { a.Instances = proto.Int32(5) }, false},
		{"scale to zero", func(a *v1.App) { a.Instances = proto.Int32(0) }, false},
		{"new version of a scale", func(a *v1.App) {
			a.Version = proto.String("2026-02-01T00:00:00Z")
			a.VersionInfo.LastScalingAt = "2026-02-01T00:00:00Z"
		}, false},
		{"restart: only lastConfigChangeAt", func(a *v1.App) { a.VersionInfo.LastConfigChangeAt = "2026-02-01T00:00:00Z" }, true},
		{"cmd", func(a *v1.App) { a.Cmd = proto.String("serve --fast") }, true},
		{"env", func(a *v1.App) { a.Env["A"] = &v1.EnvValue{Kind: &v1.EnvValue_Value{Value: "2"}} }, true},
		{"env secret", func(a *v1.App) { a.Env["A"] = &v1.EnvValue{Kind: &v1.EnvValue_Secret{Secret: "2"}} }, true},
		{"mem", func(a *v1.App) { a.Mem = proto.Float64(256) }, true},
		{"labels", func(a *v1.App) { a.Labels = map[string]string{"x": "y"} }, true},
		{"health check", func(a *v1.App) { a.HealthChecks = []*v1.HealthCheck{{Protocol: proto.String("TCP")}} }, true},
		{"versionInfo dropped, nothing else", func(a *v1.App) { a.VersionInfo = nil }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old, updated := base(), base()
			c.change(updated)
			if got := NeedsRelaunch(old, updated); got != c.want {
				t.Errorf("NeedsRelaunch = %v, want %v", got, c.want)
			}
			if got := NeedsRelaunch(updated, old); got != c.want {
				t.Errorf("NeedsRelaunch (reversed) = %v, want %v", got, c.want)
			}
		})
	}
	if !NeedsRelaunch(nil, base()) || !NeedsRelaunch(base(), nil) {
		t.Errorf("a missing version must relaunch")
	}
	// An app without versionInfo and one with an empty versionInfo are the
	// same configuration.
	a, b := base(), base()
	a.VersionInfo = nil
	b.VersionInfo = &v1.VersionInfo{LastScalingAt: "2026-03-01T00:00:00Z"}
	if NeedsRelaunch(a, b) {
		t.Errorf("lastScalingAt alone must not relaunch")
	}
}

func TestStampVersion(t *testing.T) {
	const v0, v1s = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"
	created := Canonicalize(mustParse(t, `{"id": "/web", "cmd": "serve"}`))
	if !StampVersion(nil, created, v0, Edit) {
		t.Fatalf("a new app must launch")
	}
	if created.GetVersion() != v0 || created.GetVersionInfo().GetLastScalingAt() != v0 || created.GetVersionInfo().GetLastConfigChangeAt() != v0 {
		t.Fatalf("new app stamped %v %v", created.GetVersion(), created.GetVersionInfo())
	}
	cases := []struct {
		name     string
		change   func(a *v1.App)
		kind     Change
		relaunch bool
	}{
		{"scale", func(a *v1.App) { a.Instances = proto.Int32(3) }, Edit, false},
		{"config", func(a *v1.App) { a.Cmd = proto.String("serve2") }, Edit, true},
		{"restart", func(*v1.App) {}, Restart, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			next := proto.Clone(created).(*v1.App)
			next.Version, next.VersionInfo = nil, nil // ignored by StampVersion
			c.change(next)
			if got := StampVersion(created, next, v1s, c.kind); got != c.relaunch {
				t.Errorf("relaunch = %v, want %v", got, c.relaunch)
			}
			wantConfig := v0
			if c.relaunch {
				wantConfig = v1s
			}
			if next.GetVersion() != v1s || next.GetVersionInfo().GetLastScalingAt() != v1s || next.GetVersionInfo().GetLastConfigChangeAt() != wantConfig {
				t.Errorf("stamped %v %v", next.GetVersion(), next.GetVersionInfo())
			}
			// The scheduler, comparing the stored versions, agrees.
			if got := NeedsRelaunch(created, next); got != c.relaunch {
				t.Errorf("NeedsRelaunch after stamp = %v, want %v", got, c.relaunch)
			}
		})
	}
}

// Backoff: backoffSeconds × backoffFactor^(failures-1), capped.
func TestBackoffDelay(t *testing.T) {
	a := &v1.App{BackoffSeconds: proto.Float64(2), BackoffFactor: proto.Float64(2), MaxLaunchDelaySeconds: proto.Int32(10)}
	for failures, want := range map[uint32]float64{0: 0, 1: 2, 2: 4, 3: 8, 4: 10, 50: 10} {
		if got := BackoffDelay(a, failures); got != want {
			t.Errorf("failures %d: %v, want %v", failures, got, want)
		}
	}
	if got := BackoffDelay(&v1.App{}, 1); got != 1 {
		t.Errorf("default first delay %v", got)
	}
}

func TestReadinessDurations(t *testing.T) {
	for _, tc := range []struct {
		rc       *v1.ReadinessCheck
		interval time.Duration
		timeout  time.Duration
	}{
		{&v1.ReadinessCheck{}, 30 * time.Second, 10 * time.Second},
		{&v1.ReadinessCheck{IntervalSeconds: proto.Int32(5), TimeoutSeconds: proto.Int32(2)}, 5 * time.Second, 2 * time.Second},
		{&v1.ReadinessCheck{Interval: proto.Int32(1500), Timeout: proto.Int32(1000)}, 2 * time.Second, time.Second},
	} {
		if got := ReadinessInterval(tc.rc); got != tc.interval {
			t.Errorf("%v: interval %v, want %v", tc.rc, got, tc.interval)
		}
		if got := ReadinessTimeout(tc.rc); got != tc.timeout {
			t.Errorf("%v: timeout %v, want %v", tc.rc, got, tc.timeout)
		}
	}
}

// The effective values the scheduler reads from an app that leaves every
// field out are the values Canonicalize writes in: one set of defaults.
func TestQuestionsAgreeWithCanonicalize(t *testing.T) {
	for _, js := range []string{
		`{"id": "/s", "cmd": "x", "healthChecks": [{"portIndex": 0}], "readinessChecks": [{}]}`,
		`{"id": "/r", "cmd": "x", "container": {"volumes": [{"containerPath": "d", "persistent": {"size": 1}}]}}`,
	} {
		raw := mustParse(t, js)
		canon := Canonicalize(proto.Clone(raw).(*v1.App))
		for _, a := range []*v1.App{raw, canon} {
			checks := []struct {
				name      string
				got, want any
			}{
				{"instances", Instances(a), int(canon.GetInstances())},
				{"cpus", CPUs(a), canon.GetCpus()},
				{"mem", Mem(a), canon.GetMem()},
				{"disk", Disk(a), canon.GetDisk()},
				{"gpus", GPUs(a), float64(canon.GetGpus())},
				{"killSelection", KillSelection(a), canon.GetKillSelection()},
				{"minimumHealthCapacity", MinimumHealthCapacity(a), canon.GetUpgradeStrategy().GetMinimumHealthCapacity()},
				{"maximumOverCapacity", MaximumOverCapacity(a), canon.GetUpgradeStrategy().GetMaximumOverCapacity()},
				{"backoff", BackoffDelay(a, 1), canon.GetBackoffSeconds()},
				{"maxLaunchDelay", BackoffDelay(a, 1000), float64(canon.GetMaxLaunchDelaySeconds())},
			}
			for i, hc := range a.GetHealthChecks() {
				d, c := HealthCheckWithDefaults(hc), canon.GetHealthChecks()[i]
				checks = append(checks, []struct {
					name      string
					got, want any
				}{
					{"hc.protocol", HealthProtocol(hc), c.GetProtocol()},
					{"hc.grace", d.GetGracePeriodSeconds(), c.GetGracePeriodSeconds()},
					{"hc.interval", d.GetIntervalSeconds(), c.GetIntervalSeconds()},
					{"hc.timeout", d.GetTimeoutSeconds(), c.GetTimeoutSeconds()},
					{"hc.maxFailures", d.GetMaxConsecutiveFailures(), c.GetMaxConsecutiveFailures()},
					{"hc.delay", d.GetDelaySeconds(), c.GetDelaySeconds()},
				}...)
			}
			for i, rc := range a.GetReadinessChecks() {
				c := canon.GetReadinessChecks()[i]
				checks = append(checks, []struct {
					name      string
					got, want any
				}{
					{"rc.portName", ReadinessPortName(rc), c.GetPortName()},
					{"rc.path", ReadinessPath(rc), c.GetPath()},
					{"rc.codes", ReadinessStatusCodes(rc)[0], c.GetHttpStatusCodesForReady()[0]},
					{"rc.interval", ReadinessInterval(rc), time.Duration(c.GetIntervalSeconds()) * time.Second},
					{"rc.timeout", ReadinessTimeout(rc), time.Duration(c.GetTimeoutSeconds()) * time.Second},
				}...)
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: %s = %v, canonical %v", a.GetId(), c.name, c.got, c.want)
				}
			}
		}
	}
}
