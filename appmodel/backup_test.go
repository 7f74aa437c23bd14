package appmodel

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/backup"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

const backupApp = `{"id": "/db", "cmd": "postgres", "instances": 1,
  "container": {"type": "MESOS", "volumes": [{"containerPath": "pgdata", "mode": "RW", "persistent": {"size": 100}}]},
  "secrets": {"s3": {"source": "/berth/s3-secret"}},
  "backup": {"target": "s3://backups/db?endpoint=http://10.0.0.5:9000&region=eu-west-1",
    "schedule": "30 2 * * *", "retention": {"keep": 7, "maxAge": "30d"},
    "consistency": "stop", "preCommand": "psql -c CHECKPOINT", "postCommand": "true",
    "env": {"AWS_ACCESS_KEY_ID": "berth", "AWS_SECRET_ACCESS_KEY": {"secret": "s3"}}}}`

func TestBackupPolicyRoundTrips(t *testing.T) {
	app := mustParse(t, backupApp)
	if vs := Validate(app); len(vs) != 0 {
		t.Fatalf("violations: %v", vs)
	}
	if !HasBackup(app) || BackupConsistency(app) != BackupStop {
		t.Fatalf("policy not read: %v", app.GetBackup())
	}
	if r := BackupRetention(app); r != (backup.Retention{Keep: 7, MaxAge: 30 * 24 * time.Hour}) {
		t.Errorf("retention %+v", r)
	}
	out, err := Render(app)
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(backupApp), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got["backup"], want["backup"]) {
		t.Errorf("backup rendered as\n%v\nwant\n%v", got["backup"], want["backup"])
	}
	// Changing the policy does not relaunch the app's tasks.
	changed := proto.Clone(app).(*v1.App)
	changed.Backup.Schedule = proto.String("@every 1h")
	if NeedsRelaunch(app, changed) {
		t.Error("a new backup schedule relaunches the tasks")
	}
	// A Marathon app without the extension renders without it.
	plain, err := Render(Canonicalize(mustParse(t, `{"id":"/r","cmd":"x"}`)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain), "backup") {
		t.Errorf("an app without a backup policy renders one: %s", plain)
	}
}

func TestBackupPolicyValidation(t *testing.T) {
	resident := `"container": {"volumes": [{"containerPath": "d", "persistent": {"size": 1}}]}`
	for _, tc := range []struct {
		name, backup, field, want string
		nonResident               bool
	}{
		{"no target", `{}`, "backup.target", "must not be empty", false},
		{"bad scheme", `{"target": "ftp://x/y"}`, "backup.target", "scheme must be file or s3", false},
		{"relative file", `{"target": "file:backups"}`, "backup.target", "absolute path", false},
		{"bad schedule", `{"target": "file:///b", "schedule": "every day"}`, "backup.schedule", "five cron fields", false},
		{"bad cron value", `{"target": "file:///b", "schedule": "61 * * * *"}`, "backup.schedule", "minute", false},
		{"short every", `{"target": "file:///b", "schedule": "@every 1s"}`, "backup.schedule", "at least", false},
		{"negative keep", `{"target": "file:///b", "retention": {"keep": -1}}`, "backup.retention.keep", "greater than or equal to 0", false},
		{"bad age", `{"target": "file:///b", "retention": {"maxAge": "soon"}}`, "backup.retention.maxAge", "positive duration", false},
		{"bad consistency", `{"target": "file:///b", "consistency": "lazy"}`, "backup.consistency", "allowed: stop, online", false},
		{"online without a pre command", `{"target": "file:///b", "consistency": "online"}`, "backup.preCommand", `required with "consistency": "online"`, false},
		{"unknown secret", `{"target": "file:///b", "env": {"K": {"secret": "nope"}}}`, `backup.env["K"].secret`, "must name one of the app's secrets", false},
		{"not resident", `{"target": "file:///b"}`, "backup", "persistent volume", true},
		{"bad move timeout", `{"target": "file:///b", "moveTimeout": "soon"}`, "backup.moveTimeout", `at least 10s such as "15m" (got "soon")`, false},
		{"short move timeout", `{"target": "file:///b", "moveTimeout": "1s"}`, "backup.moveTimeout", "at least 10s", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := `{"id": "/db", "cmd": "x", ` + resident + `, "backup": ` + tc.backup + `}`
			if tc.nonResident {
				js = `{"id": "/db", "cmd": "x", "backup": ` + tc.backup + `}`
			}
			vs := Validate(mustParse(t, js))
			for _, v := range vs {
				if v.Field == tc.field && strings.Contains(v.Description, tc.want) {
					return
				}
			}
			t.Errorf("want %s: ...%s..., got %v", tc.field, tc.want, vs)
		})
	}
	// Online with a pre command is valid.
	if vs := Validate(mustParse(t, `{"id": "/db", "cmd": "x", `+resident+`, "backup": {"target": "file:///b", "consistency": "online", "preCommand": "psql -c CHECKPOINT"}}`)); len(vs) != 0 {
		t.Errorf("online backup policy refused: %v", vs)
	}
	// Online in a container image is refused, naming the image.
	image := `"container": {"type": "DOCKER", "docker": {"image": "postgres:16"}, "volumes": [{"containerPath": "d", "persistent": {"size": 1}}]}`
	vs := Validate(mustParse(t, `{"id": "/db", `+image+`, "backup": {"target": "file:///b", "consistency": "online", "preCommand": "psql -c CHECKPOINT"}}`))
	if len(vs) != 1 || vs[0].Field != "backup.consistency" || !strings.Contains(vs[0].Description, `container image (container.docker.image "postgres:16")`) {
		t.Errorf("online backup of an image app: %v", vs)
	}
	if vs := Validate(mustParse(t, `{"id": "/db", `+image+`, "backup": {"target": "file:///b"}}`)); len(vs) != 0 {
		t.Errorf("stop backup of an image app refused: %v", vs)
	}
	// A typo inside the extension is named like any other.
	if _, err := Parse([]byte(`{"id": "/db", "backup": {"taget": "file:///b"}}`)); err == nil || !strings.Contains(err.Error(), "backup.taget") {
		t.Errorf("typo in backup: %v", err)
	}
}

func TestScheduleNext(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct{ spec, last, want string }{
		{"@every 24h", "2026-03-01T10:15:00Z", "2026-03-02T10:15:00Z"},
		{"@daily", "2026-03-01T10:15:00Z", "2026-03-02T00:00:00Z"},
		{"@hourly", "2026-03-01T10:15:00Z", "2026-03-01T11:00:00Z"},
		{"30 2 * * *", "2026-03-01T02:30:00Z", "2026-03-02T02:30:00Z"},
		{"*/15 * * * *", "2026-03-01T10:15:30Z", "2026-03-01T10:30:00Z"},
		{"0 9-17/4 * * 1-5", "2026-03-06T17:00:00Z", "2026-03-09T09:00:00Z"}, // Friday 17:00 -> Monday 09:00
		{"0 0 * * 7", "2026-03-01T00:00:00Z", "2026-03-08T00:00:00Z"},        // 7 is Sunday
		{"0 0 1 * 1", "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"},        // day of month OR day of week
		{"0 0 31 2 *", "2026-03-01T00:00:00Z", "0001-01-01T00:00:00Z"},       // never
	} {
		s, err := ParseSchedule(tc.spec)
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		if got := s.Next(at(tc.last)); !got.Equal(at(tc.want)) {
			t.Errorf("%s after %s = %s, want %s", tc.spec, tc.last, got.Format(time.RFC3339), tc.want)
		}
	}
}

// A resident app may enable unreachableStrategy only when it opts in to
// replacement from a backup (the timing is when it is replaced).
func TestUnreachableStrategyWithReplaceFromBackup(t *testing.T) {
	base := `{"id": "/db", "cmd": "x", "container": {"volumes": [{"containerPath": "d", "persistent": {"size": 1}}]},
		"unreachableStrategy": {"inactiveAfterSeconds": 30, "expungeAfterSeconds": 60}, "backup": {"target": "file:///b"%s}}`
	for _, tc := range []struct {
		opt     string
		refused bool
	}{{"", true}, {`, "replaceFromBackup": true`, false}} {
		refused := false
		for _, v := range Validate(mustParse(t, fmt.Sprintf(base, tc.opt))) {
			if v.Field == "unreachableStrategy" && strings.Contains(v.Description, "unless backup.replaceFromBackup is true") {
				refused = true
			}
		}
		if refused != tc.refused {
			t.Errorf("backup%s: refused %v, want %v", tc.opt, refused, tc.refused)
		}
	}
}
