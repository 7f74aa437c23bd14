package scheduler

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/google/uuid"
)

// Config configures the scheduler. Zero values take the defaults below.
type Config struct {
	// MesosMaster is the master's base URL, e.g. http://127.0.0.1:5050.
	MesosMaster string
	// Role is the Mesos role reservations are made for (default "berth").
	Role string
	// Principal is the framework and reservation principal (default "berth").
	Principal string
	// Secret, when set, authenticates the framework to the master with HTTP
	// basic authentication as Principal (--authenticate_http_frameworks).
	Secret string
	// MesosTLS, when set, is the TLS configuration for an https:// master
	// (its CA from --mesos-ca-file).
	MesosTLS *tls.Config
	// User is FrameworkInfo.user (default: the current user, else "root").
	User string
	// FrameworkName is FrameworkInfo.name (default "berth").
	FrameworkName string
	// Hostname is FrameworkInfo.hostname (optional).
	Hostname string
	// FailoverTimeout is how long Mesos keeps tasks of a disconnected
	// framework (default one week).
	FailoverTimeout time.Duration
	// ReservationTimeout unpins an instance whose RESERVE never showed up in
	// an offer (default 20s, Marathon's task_reservation_timeout).
	ReservationTimeout time.Duration
	// ReconcileInterval is the period of explicit+implicit reconciliation
	// (default 10m).
	ReconcileInterval time.Duration
	// ReconciliationTimeout bounds the wait for Mesos to answer the explicit
	// reconciliation sent on subscribe: after it, the reconciliation is
	// reported incomplete with the number of tasks still unanswered
	// (default 60s).
	ReconciliationTimeout time.Duration
	// RefuseSeconds is the filter on declined offers (default 5s).
	RefuseSeconds time.Duration
	// ReviveInterval re-revives offers while work waits (default 30s).
	ReviveInterval time.Duration
	// KillRetryInterval resends a KILL that had no effect (default 30s,
	// plus the app's kill grace period).
	KillRetryInterval time.Duration
	// StagingTimeout asks the master about a task recorded as TASK_STAGING
	// for longer, and kills it once the master answers that it is still
	// staging (default 5m; negative disables). The age alone never kills:
	// the task's updates may be queued behind others.
	StagingTimeout time.Duration
	// BackoffResetAfter resets an instance's failure count when its task ran
	// at least this long (default 60s).
	BackoffResetAfter time.Duration
	// TickInterval is the period of the level-triggered pass (default 1s).
	TickInterval time.Duration
	// AgentPollInterval is how often the leader asks the master's operator
	// API for the agents' drain state and the maintenance schedule, to
	// mark the instances on draining or scheduled agents (default 10s;
	// negative: never).
	AgentPollInterval time.Duration
	// MaxInstancesPerOffer caps launches per offer (0 = no cap).
	MaxInstancesPerOffer int
	// MaxNewInstancesPerDecision bounds the instances one decision creates
	// (default 1000): an app scaled to millions is created step by step
	// (each commit triggers the next pass), so no decision holds unbounded
	// work and a delete takes effect at the next one.
	MaxNewInstancesPerDecision int
	// DeploymentFailureThreshold fails a deployment once an instance of an
	// affected app has failed this many times in a row (default 10; negative
	// never fails on crashes). A TASK_ERROR (invalid task) always fails it.
	DeploymentFailureThreshold int
	// HealthCheckConcurrency bounds concurrent leader-run health probes
	// (default 256).
	HealthCheckConcurrency int
	// SubscribeBackoffMax caps the delay between subscription attempts
	// (default 10s).
	SubscribeBackoffMax time.Duration
	// NewID returns fresh UUIDs for instance and persistence ids (default
	// uuid.NewString). The core calls it; tests make it deterministic.
	NewID func() string
	// BinaryURL is where agents fetch the berth binary for backup and
	// restore tasks (a Berth server's GET /v1/binary/berth). Without it
	// backups fail with a message saying so.
	BinaryURL string
	// MigrationTarget is the backup target migrations of apps without one
	// go through (server --migration-target). Without it such apps are not
	// migrated automatically.
	MigrationTarget string
	// BackupManifest says whether a backup's manifest is on its target: an
	// online copy whose container's outcome is lost (its task ended, its
	// agent restarted) succeeded only if it is. Without it such copies fail.
	BackupManifest ManifestCheck
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Role == "" {
		c.Role = "berth"
	}
	if c.Principal == "" {
		c.Principal = "berth"
	}
	if c.FrameworkName == "" {
		c.FrameworkName = "berth"
	}
	if c.FailoverTimeout == 0 {
		c.FailoverTimeout = 7 * 24 * time.Hour
	}
	if c.ReservationTimeout == 0 {
		c.ReservationTimeout = 20 * time.Second
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = 10 * time.Minute
	}
	if c.ReconciliationTimeout == 0 {
		c.ReconciliationTimeout = 60 * time.Second
	}
	if c.RefuseSeconds == 0 {
		c.RefuseSeconds = 5 * time.Second
	}
	if c.ReviveInterval == 0 {
		c.ReviveInterval = 30 * time.Second
	}
	if c.KillRetryInterval == 0 {
		c.KillRetryInterval = 30 * time.Second
	}
	if c.StagingTimeout == 0 {
		c.StagingTimeout = 5 * time.Minute
	}
	if c.BackoffResetAfter == 0 {
		c.BackoffResetAfter = 60 * time.Second
	}
	if c.AgentPollInterval == 0 {
		c.AgentPollInterval = 10 * time.Second
	}
	if c.TickInterval == 0 {
		c.TickInterval = time.Second
	}
	if c.MaxNewInstancesPerDecision == 0 {
		c.MaxNewInstancesPerDecision = 1000
	}
	if c.DeploymentFailureThreshold == 0 {
		c.DeploymentFailureThreshold = 10
	}
	if c.HealthCheckConcurrency == 0 {
		c.HealthCheckConcurrency = 256
	}
	if c.SubscribeBackoffMax == 0 {
		c.SubscribeBackoffMax = 10 * time.Second
	}
	if c.NewID == nil {
		c.NewID = uuid.NewString
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first bad setting, naming the field.
func (c Config) Validate() error {
	if c.MesosMaster == "" {
		return errors.New("scheduler: MesosMaster is required")
	}
	u, err := url.Parse(c.MesosMaster)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("scheduler: MesosMaster %q: want http(s)://host:port", c.MesosMaster)
	}
	if c.Role == "*" {
		return errors.New(`scheduler: Role "*" cannot hold reservations`)
	}
	for name, d := range map[string]time.Duration{
		"FailoverTimeout": c.FailoverTimeout, "ReservationTimeout": c.ReservationTimeout,
		"ReconcileInterval": c.ReconcileInterval, "RefuseSeconds": c.RefuseSeconds,
		"ReviveInterval": c.ReviveInterval, "KillRetryInterval": c.KillRetryInterval,
		"BackoffResetAfter": c.BackoffResetAfter, "TickInterval": c.TickInterval,
		"ReconciliationTimeout": c.ReconciliationTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("scheduler: %s %v must not be negative", name, d)
		}
	}
	if c.MaxNewInstancesPerDecision < 0 {
		return fmt.Errorf("scheduler: MaxNewInstancesPerDecision %d must not be negative", c.MaxNewInstancesPerDecision)
	}
	if c.MaxInstancesPerOffer < 0 {
		return fmt.Errorf("scheduler: MaxInstancesPerOffer %d must not be negative", c.MaxInstancesPerOffer)
	}
	return nil
}
