package appmodel

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/backup"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// BerthExtensions are the top-level fields of an app definition that
// Berth adds to Marathon's (documented in docs/BACKUPS.md). Marathon never
// sets them; an app without them renders exactly as Marathon's.
var BerthExtensions = []string{"backup"}

// Backup consistency modes (BackupPolicy.consistency).
const (
	// BackupStop stops the task for the copy and starts it again on the
	// same berth: the default, consistent for any app.
	BackupStop = "stop"
	// BackupOnline copies while the task runs, inside it (a Mesos nested
	// container in the task's container), between the policy's pre and
	// post commands, which make the files consistent.
	BackupOnline = "online"
)

// HasBackup is true when the app declares a backup target.
func HasBackup(app *v1.App) bool { return app.GetBackup().GetTarget() != "" }

// RunsInImage is the container image the app's task runs in, "" for a
// task on the agent's own filesystem.
func RunsInImage(app *v1.App) string { return app.GetContainer().GetDocker().GetImage() }

// BackupConsistency is the app's backup consistency mode, defaulted.
func BackupConsistency(app *v1.App) string {
	if c := app.GetBackup().GetConsistency(); c != "" {
		return c
	}
	return BackupStop
}

// BackupRetention is the app's retention as package backup applies it.
// A policy without retention keeps every backup.
func BackupRetention(app *v1.App) backup.Retention {
	r := app.GetBackup().GetRetention()
	out := backup.Retention{Keep: int(r.GetKeep())}
	if r != nil && r.MaxAge != nil { // an app without a policy (a migration through the server's target)
		out.MaxAge, _ = parseAge(r.GetMaxAge())
	}
	return out
}

// BackupSchedule is the app's parsed backup schedule, nil when it has none.
func BackupSchedule(app *v1.App) *Schedule {
	if b := app.GetBackup(); b == nil || b.Schedule == nil {
		return nil
	}
	s, err := ParseSchedule(app.GetBackup().GetSchedule())
	if err != nil {
		return nil
	}
	return s
}

func validateBackup(v *validator, app *v1.App) {
	b := app.Backup
	if b == nil {
		return
	}
	if !IsResident(app) {
		v.add("backup", "needs a persistent volume: only resident apps have data to back up")
	}
	if _, err := backup.ParseTarget(b.Target); err != nil {
		v.add("backup.target", "%v", err)
	}
	if b.Schedule != nil {
		if _, err := ParseSchedule(b.GetSchedule()); err != nil {
			v.add("backup.schedule", "%v", err)
		}
	}
	if r := b.Retention; r != nil {
		v.nonNegativeInt("backup.retention.keep", r.Keep)
		if r.MaxAge != nil {
			if _, err := parseAge(r.GetMaxAge()); err != nil {
				v.add("backup.retention.maxAge", "%v", err)
			}
		}
	}
	v.oneOf("backup.consistency", b.Consistency, []string{BackupStop, BackupOnline})
	if b.GetConsistency() == BackupOnline && strings.TrimSpace(b.GetPreCommand()) == "" {
		// Files copied one by one while the app writes are consistent only
		// if the app is told first (a database's backup mode, a CHECKPOINT,
		// a pause); a copy that may not restore is worse than a stop.
		v.add("backup.preCommand", `is required with "consistency": "online": a command that makes the files on the volume consistent while the app runs (e.g. a CHECKPOINT, a database's backup mode, a pause of writes), undone by backup.postCommand; or use "consistency": "stop"`)
	}
	if img := RunsInImage(app); b.GetConsistency() == BackupOnline && img != "" {
		// The copy runs in a nested container, which would need the
		// task's own root filesystem (docs/BACKUPS.md "Online backups").
		v.add("backup.consistency", `"online" is not supported for an app whose task runs in a container image (container.docker.image %q): the online copy runs beside the task without its image; use "consistency": "stop"`, img)
	}
	if b.MoveTimeout != nil {
		if d, err := time.ParseDuration(b.GetMoveTimeout()); err != nil || d < MinMoveTimeout {
			v.add("backup.moveTimeout", "must be a duration of at least %s such as \"15m\" (got %q)", MinMoveTimeout, b.GetMoveTimeout())
		}
	}
	validateEnv(v, "backup.env", b.Env, app)
}

// MinMoveTimeout is the shortest backup.moveTimeout accepted.
const MinMoveTimeout = 10 * time.Second

// DefaultMoveTimeout is the least time a move waits for its new task to be
// healthy when the app does not say (backup.moveTimeout): a launch on a new
// agent fetches the app's URIs and may pull an image.
const DefaultMoveTimeout = 10 * time.Minute

// MoveTimeout is how long a move waits for the task on the new berth to be
// healthy once the restore is done: backup.moveTimeout, else twice the
// window in which the slowest health check either passes or kills the
// task (delay + grace + (maxConsecutiveFailures + 1) intervals + timeout:
// room for a relaunch after a first attempt killed as unhealthy), and at
// least DefaultMoveTimeout. Readiness checks and the upgrade strategy do
// not enter it: they gate deployments, and a move waits for health only.
func MoveTimeout(app *v1.App) time.Duration {
	if s := app.GetBackup().GetMoveTimeout(); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d >= MinMoveTimeout {
			return d
		}
	}
	window := time.Duration(0)
	for _, hc := range app.GetHealthChecks() {
		c := HealthCheckWithDefaults(hc)
		w := time.Duration(c.GetDelaySeconds()+c.GetGracePeriodSeconds()+
			(c.GetMaxConsecutiveFailures()+1)*c.GetIntervalSeconds()+c.GetTimeoutSeconds()) * time.Second
		window = max(window, w)
	}
	return max(DefaultMoveTimeout, 2*window)
}

// parseAge reads a retention age: a Go duration ("720h") or whole days
// ("30d").
func parseAge(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("must be a positive duration such as \"720h\" or \"30d\" (got %q)", s)
	}
	return d, nil
}

// Schedule is a parsed backup schedule: a fixed interval, or a cron
// expression evaluated in UTC.
type Schedule struct {
	every time.Duration
	// cron fields as bit sets: minute, hour, day of month, month, day of week.
	min, hour, dom, month, dow uint64
	domStar, dowStar           bool
}

// MinBackupInterval is the shortest "@every" interval accepted.
const MinBackupInterval = time.Minute

// ParseSchedule reads "@every <duration>", "@hourly", "@daily",
// "@weekly", "@monthly", or a five-field cron expression (minute hour
// day-of-month month day-of-week; numbers, *, ranges a-b, steps /n and
// lists).
func ParseSchedule(s string) (*Schedule, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "@hourly":
		s = "0 * * * *"
	case "@daily", "@midnight":
		s = "0 0 * * *"
	case "@weekly":
		s = "0 0 * * 0"
	case "@monthly":
		s = "0 0 1 * *"
	}
	if rest, ok := strings.CutPrefix(s, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d < MinBackupInterval {
			return nil, fmt.Errorf("@every needs a duration of at least %s (got %q)", MinBackupInterval, rest)
		}
		return &Schedule{every: d}, nil
	}
	fields := strings.Fields(s)
	if len(fields) != 5 {
		return nil, fmt.Errorf("must be \"@every <duration>\", @hourly, @daily, @weekly, @monthly or five cron fields (got %q)", s)
	}
	var sc Schedule
	var err error
	bounds := []struct {
		name     string
		lo, hi   int
		dst      *uint64
		wildcard *bool
	}{
		{"minute", 0, 59, &sc.min, nil}, {"hour", 0, 23, &sc.hour, nil},
		{"day of month", 1, 31, &sc.dom, &sc.domStar}, {"month", 1, 12, &sc.month, nil},
		{"day of week", 0, 7, &sc.dow, &sc.dowStar},
	}
	for i, b := range bounds {
		if *b.dst, err = cronField(fields[i], b.lo, b.hi); err != nil {
			return nil, fmt.Errorf("cron %s field %q: %v", b.name, fields[i], err)
		}
		if b.wildcard != nil {
			*b.wildcard = strings.HasPrefix(fields[i], "*")
		}
	}
	if sc.dow&(1<<7) != 0 { // 7 is Sunday too
		sc.dow |= 1
	}
	return &sc, nil
}

func cronField(f string, lo, hi int) (uint64, error) {
	var set uint64
	for _, part := range strings.Split(f, ",") {
		rng, stepS, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepS)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("step %q must be a positive number", stepS)
			}
			step = n
		}
		a, b := lo, hi
		if rng != "*" {
			as, bs, isRange := strings.Cut(rng, "-")
			var err error
			if a, err = strconv.Atoi(as); err != nil {
				return 0, fmt.Errorf("%q is not a number", as)
			}
			b = a
			if isRange {
				if b, err = strconv.Atoi(bs); err != nil {
					return 0, fmt.Errorf("%q is not a number", bs)
				}
			} else if hasStep {
				b = hi
			}
		}
		if a < lo || b > hi || a > b {
			return 0, fmt.Errorf("values must be within %d-%d", lo, hi)
		}
		for x := a; x <= b; x += step {
			set |= 1 << uint(x)
		}
	}
	return set, nil
}

// Next returns the first time after last at which a backup is due. For
// "@every" that is last plus the interval; for cron, the next matching
// minute (UTC) after last.
func (s *Schedule) Next(last time.Time) time.Time {
	if s.every > 0 {
		return last.Add(s.every)
	}
	t := last.UTC().Truncate(time.Minute).Add(time.Minute)
	// Five years of days bound the search (a "30 2 31 2 *" never matches).
	for days := 0; days < 5*366; {
		if s.month&(1<<uint(t.Month())) == 0 || !s.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
			days++
			continue
		}
		if s.hour&(1<<uint(t.Hour())) == 0 {
			t = t.Truncate(time.Hour).Add(time.Hour)
			if t.Hour() == 0 {
				days++
			}
			continue
		}
		if s.min&(1<<uint(t.Minute())) == 0 {
			t = t.Add(time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}

// dayMatches applies cron's rule: when both day fields are restricted, a
// day matching either one matches.
func (s *Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	switch {
	case s.domStar && s.dowStar:
		return true
	case s.domStar:
		return dow
	case s.dowStar:
		return dom
	}
	return dom || dow
}

// NewBackup is a PENDING backup of instance i of app a to the app's
// target, as the API and the leader's schedule create them. It copies the
// app's first persistent volume.
func NewBackup(a *v1.App, i *v1.Instance, id string, now time.Time) *v1.Backup {
	b := &v1.Backup{
		Id: id, AppId: a.GetId(), InstanceId: i.GetId(), Kind: v1.BackupKind_BACKUP_KIND_BACKUP,
		State: v1.BackupState_BACKUP_STATE_PENDING, Target: a.GetBackup().GetTarget(),
		CreatedAt: timestamppb.New(now), Consistency: BackupConsistency(a),
		ManifestKey: backup.ManifestKey(id),
	}
	if vs := PersistentVolumes(a); len(vs) > 0 {
		b.ContainerPath = vs[0].GetContainerPath()
	}
	return b
}

// NewRestore returns a PENDING restore of the succeeded backup src into
// instance i's berth (a restore always stops the task).
func NewRestore(a *v1.App, i *v1.Instance, src *v1.Backup, id string, now time.Time) *v1.Backup {
	r := NewBackup(a, i, id, now)
	r.Kind = v1.BackupKind_BACKUP_KIND_RESTORE
	r.Target = src.GetTarget()
	r.SourceBackupId = src.GetId()
	r.ManifestKey = src.GetManifestKey()
	r.ManifestSha256 = src.GetManifestSha256()
	r.Bytes = src.GetBytes()
	r.Consistency = BackupStop
	if src.GetContainerPath() != "" {
		r.ContainerPath = src.GetContainerPath()
	}
	return r
}

// NewMigration returns the PENDING copy step of a migration of instance
// i off its agent: a stop-consistency backup of its berth to the app's
// backup target, or to serverTarget (the server's --migration-target) when
// the app has none; nil when neither is set. It starts live: a first copy
// runs while the task runs (uploading the bulk of the chunks), then the
// task is stopped for the stop-consistency copy, which uploads only the
// chunks that changed meanwhile (docs/MIGRATION.md).
func NewMigration(a *v1.App, i *v1.Instance, id, serverTarget string, now time.Time) *v1.Backup {
	target := a.GetBackup().GetTarget()
	if target == "" {
		target = serverTarget
	}
	if target == "" {
		return nil
	}
	b := NewBackup(a, i, id, now)
	b.Target = target
	b.Consistency = BackupStop
	b.Migrate, b.MigrationId, b.FromAgent = true, id, i.GetReservation().GetAgentId()
	b.Live = true
	return b
}

// BackupEnv is the plain part of the app's backup environment (secret
// references resolve only on agents).
func BackupEnv(a *v1.App) map[string]string {
	out := map[string]string{}
	for k, v := range a.GetBackup().GetEnv() {
		if plain, ok := v.GetKind().(*v1.EnvValue_Value); ok {
			out[k] = plain.Value
		}
	}
	return out
}
