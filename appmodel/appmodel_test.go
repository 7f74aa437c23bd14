package appmodel

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// testdataFiles lists the Marathon app files copied from
// /work/shared/testdata (see testdata/README.md).
func testdataFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 9 {
		t.Fatalf("expected the 9 testdata app files, found %d", len(files))
	}
	return files
}

// canonicalJSON decodes JSON and drops empty arrays and objects recursively,
// so that documents differing only in those (which protobuf cannot keep) and
// in number spelling (32.0 vs 32) compare equal.
func canonicalJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return dropEmpty(v)
}

func dropEmpty(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			e = dropEmpty(e)
			if e == nil {
				continue
			}
			out[k] = e
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		if len(x) == 0 {
			return nil
		}
		out := make([]any, 0, len(x))
		for _, e := range x {
			d := dropEmpty(e)
			if d == nil {
				// Keep positions of inner empties (e.g. [[]]) explicit.
				d = map[string]any{}
			}
			out = append(out, d)
		}
		return out
	default:
		return v
	}
}

func TestTestdataRoundTrip(t *testing.T) {
	for _, f := range testdataFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			app, err := Parse(data)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			out, err := Render(app)
			if err != nil {
				t.Fatal(err)
			}
			want, got := canonicalJSON(t, data), canonicalJSON(t, out)
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("round trip differs\nwant %v\ngot  %v", want, got)
			}
		})
	}
}

func TestTestdataValidates(t *testing.T) {
	for _, f := range testdataFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			app, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			Canonicalize(app)
			vs := Validate(app)
			if _, refused := corpusRefused[filepath.Base(f)]; refused {
				return // TestMarathonCorpus checks the refusal
			}
			if filepath.Base(f) == "api-example-app.json" {
				if !hasViolation(vs, "cmd", "args") {
					t.Fatalf("want a violation naming cmd and args, got %v", vs)
				}
				return
			}
			if len(vs) != 0 {
				rendered, _ := Render(app)
				t.Fatalf("violations: %v\ncanonical app: %s", vs, rendered)
			}
		})
	}
}

func hasViolation(vs []Violation, field string, words ...string) bool {
	for _, v := range vs {
		if v.Field != field {
			continue
		}
		ok := true
		for _, w := range words {
			if !strings.Contains(v.Description, w) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func TestCanonicalizeIdempotent(t *testing.T) {
	for _, f := range testdataFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		app, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		once := proto.Clone(Canonicalize(app)).(*v1.App)
		twice := Canonicalize(proto.Clone(once).(*v1.App))
		if !proto.Equal(once, twice) {
			t.Errorf("%s: canonicalize not idempotent\nonce  %v\ntwice %v", f, once, twice)
		}
	}
}

func mustParse(t *testing.T, s string) *v1.App {
	t.Helper()
	app, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return app
}

func TestCanonicalizeDefaults(t *testing.T) {
	app := Canonicalize(mustParse(t, `{"id": "db/pg/", "cmd": "x", "healthChecks": [{}], "uris": ["http://h/a.tgz"]}`))
	checks := []struct {
		name      string
		got, want any
	}{
		{"id", app.GetId(), "/db/pg"},
		{"instances", app.GetInstances(), int32(1)},
		{"cpus", app.GetCpus(), 1.0},
		{"mem", app.GetMem(), 128.0},
		{"disk", app.GetDisk(), 0.0},
		{"gpus", app.GetGpus(), int32(0)},
		{"backoffSeconds", app.GetBackoffSeconds(), 1.0},
		{"backoffFactor", app.GetBackoffFactor(), 1.15},
		{"maxLaunchDelaySeconds", app.GetMaxLaunchDelaySeconds(), int32(300)},
		{"killSelection", app.GetKillSelection(), "YOUNGEST_FIRST"},
		{"requirePorts", app.RequirePorts != nil && !app.GetRequirePorts(), true},
		{"upgrade.min", app.GetUpgradeStrategy().GetMinimumHealthCapacity(), 1.0},
		{"upgrade.max", app.GetUpgradeStrategy().GetMaximumOverCapacity(), 1.0},
		{"networks", len(app.Networks) == 1 && app.Networks[0].GetMode() == "host", true},
		{"portDefinitions", len(app.PortDefinitions) == 1 && app.PortDefinitions[0].GetPort() == 0 && app.PortDefinitions[0].GetProtocol() == "tcp", true},
		{"hc.protocol", app.HealthChecks[0].GetProtocol(), "HTTP"},
		{"hc.path", app.HealthChecks[0].GetPath(), "/"},
		{"hc.portIndex", app.HealthChecks[0].PortIndex != nil && app.HealthChecks[0].GetPortIndex() == 0, true},
		{"hc.grace", app.HealthChecks[0].GetGracePeriodSeconds(), int32(300)},
		{"hc.interval", app.HealthChecks[0].GetIntervalSeconds(), int32(60)},
		{"hc.timeout", app.HealthChecks[0].GetTimeoutSeconds(), int32(20)},
		{"hc.max", app.HealthChecks[0].GetMaxConsecutiveFailures(), int32(3)},
		{"fetch", len(app.Fetch) == 1 && app.Fetch[0].GetExtract() && len(app.Uris) == 0, true},
		{"unreachable", app.GetUnreachableStrategy().GetEnabled() != nil, true},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if vs := Validate(app); len(vs) != 0 {
		t.Errorf("violations: %v", vs)
	}
}

func TestCanonicalizeResident(t *testing.T) {
	data, err := os.ReadFile("testdata/seed/postgres.marathon.json")
	if err != nil {
		t.Fatal(err)
	}
	app := Canonicalize(mustParse(t, string(data)))
	if got := app.GetUnreachableStrategy(); got.GetDisabled() == nil {
		t.Errorf("unreachableStrategy = %v, want disabled", got)
	}
	if app.GetContainer().GetVolumes()[0].GetPersistent().GetType() != "root" {
		t.Errorf("persistent type not defaulted to root")
	}
	if len(app.PortDefinitions) != 0 {
		t.Errorf("bridge app got port definitions %v", app.PortDefinitions)
	}
	if pm := app.GetContainer().GetPortMappings(); len(pm) != 1 || pm[0].GetContainerPort() != 5432 {
		t.Errorf("port mappings = %v", pm)
	}
	if app.GetResidency().GetTaskLostBehavior() != "WAIT_FOREVER" {
		t.Errorf("residency not defaulted")
	}
	// A resident app without an upgrade strategy gets {0.5, 0}.
	app = Canonicalize(mustParse(t, `{"id":"/r","cmd":"x","container":{"volumes":[{"containerPath":"d","persistent":{"size":1}}]}}`))
	if us := app.GetUpgradeStrategy(); us.GetMinimumHealthCapacity() != 0.5 || us.GetMaximumOverCapacity() != 0 {
		t.Errorf("resident upgradeStrategy = %v", us)
	}
	if app.GetContainer().GetType() != "MESOS" || app.GetContainer().GetVolumes()[0].GetMode() != "RW" {
		t.Errorf("container defaults missing: %v", app.GetContainer())
	}
	if vs := Validate(app); len(vs) != 0 {
		t.Errorf("violations: %v", vs)
	}
}

func TestCanonicalizeLegacyNetworking(t *testing.T) {
	app := Canonicalize(mustParse(t, `{"id":"/a","container":{"type":"DOCKER","docker":{"image":"i","network":"BRIDGE",
		"portMappings":[{"containerPort":80,"name":"http"}]}},"healthChecks":[{"protocol":"HTTP"}]}`))
	if n := app.Networks; len(n) != 1 || n[0].GetMode() != "container/bridge" {
		t.Fatalf("networks = %v", n)
	}
	c := app.GetContainer()
	if c.GetDocker().Network != nil || len(c.GetDocker().GetPortMappings()) != 0 {
		t.Errorf("docker network/portMappings not cleared: %v", c.GetDocker())
	}
	if len(c.PortMappings) != 1 || c.PortMappings[0].HostPort == nil || c.PortMappings[0].GetHostPort() != 0 {
		t.Errorf("port mappings = %v", c.PortMappings)
	}
	if vs := Validate(app); len(vs) != 0 {
		t.Errorf("violations: %v", vs)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, json, want string
	}{
		{"unknown field", `{"id": "/a", "cpuz": 1}`, `cpuz: unknown field (did you mean "cpus"?)`},
		{"misspelt field", `{"id": "/a", "instaces": 1}`, `instaces: unknown field (did you mean "instances"?)`},
		{"proto name", `{"id": "/a", "port_definitions": []}`, `port_definitions: unknown field (did you mean "portDefinitions"?)`},
		{"unknown nested field", `{"container": {"docker": {"image": "x", "imag": "y"}}}`, `container.docker.imag: unknown field (did you mean "image"?)`},
		{"nothing alike", `{"zzzzzzzz": 1}`, `zzzzzzzz: unknown field`},
		{"object expected", `{"container": {"volumes": [{"containerPath": "d", "persistent": 100}]}}`, `container.volumes[0].persistent: expected an object`},
		{"small object named", `{"healthChecks": [{"protocol": "COMMAND", "command": "true"}]}`, `healthChecks[0].command: expected an object with "value"`},
		{"string expected", `{"cmd": 5}`, `cmd: expected a string`},
		{"list expected", `{"args": "a b"}`, `args: expected a list`},
		{"whole number", `{"instances": 1.5}`, `instances: expected a whole number (got 1.5)`},
		{"int range", `{"instances": 3000000000}`, `instances: must be between`},
		{"bool expected", `{"requirePorts": "yes"}`, `requirePorts: expected true or false`},
		{"label value", `{"labels": {"a": 1}}`, `labels["a"]: expected a string`},
		{"constraint arity", `{"constraints": [["hostname"]]}`, `constraints[0]: expected ["field", "OPERATOR"] or ["field", "OPERATOR", "value"] (got 1 elements)`},
		{"constraint object", `{"constraints": [{"field": "hostname"}]}`, `constraints[0]: expected ["field", "OPERATOR"]`},
		{"constraint not string", `{"constraints": [["rack", "MAX_PER", 2]]}`, `constraints[0][2]: expected a string`},
		{"unreachable string", `{"unreachableStrategy": "sometimes"}`, `unreachableStrategy: expected "disabled" or an object with "inactiveAfterSeconds", "expungeAfterSeconds" (got "sometimes")`},
		{"unreachable field", `{"unreachableStrategy": {"inactiveAfterSecond": 1}}`, `unreachableStrategy.inactiveAfterSecond: unknown field (did you mean "inactiveAfterSeconds"?)`},
		{"pull config string", `{"container": {"docker": {"image": "x", "pullConfig": "reg"}}}`, `container.docker.pullConfig: expected an object with "secret"`},
		{"pull config field", `{"container": {"docker": {"image": "x", "pullConfig": {"secrets": "reg"}}}}`, `container.docker.pullConfig.secrets: unknown field (did you mean "secret"?)`},
		{"env number", `{"env": {"A": 1}}`, `env["A"]: expected a string or an object with "secret"`},
		{"env object", `{"env": {"A": {"secret": "s", "x": 1}}}`, `env["A"]: expected a string or an object with "secret"`},
		{"duplicate", `{"id": "/a", "id": "/b"}`, `id: given twice`},
		{"null element", `{"args": ["a", null]}`, `args[1]: must not be null`},
		{"null map value", `{"labels": {"a": null}}`, `labels["a"]: must not be null`},
		{"top level", `[1]`, `app: expected an object`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.json))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	// Every problem is reported, each under its path.
	_, err := Parse([]byte(`{"instaces": 1, "cmd": 5}`))
	var pe *ParseError
	if !errors.As(err, &pe) || len(pe.Problems) != 2 || pe.Problems[0].Field != "instaces" || pe.Problems[1].Field != "cmd" {
		t.Errorf("problems: %v", err)
	}
	_, err = Parse([]byte("{\n  \"id\": \"/a\",\n  \"cpus\": ,\n}"))
	if err == nil || !strings.Contains(err.Error(), "line 3:11") {
		t.Errorf("syntax error: got %v", err)
	}
	_, err = Parse([]byte(`{"id": "/a"`))
	if err == nil || !strings.Contains(err.Error(), "line 1:") {
		t.Errorf("truncated: got %v", err)
	}
	big := []byte(`{"id":"/a","cmd":"` + strings.Repeat("x", MaxBytes) + `"}`)
	_, err = Parse(big)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: got %v", err)
	}
}

// validBase is a valid resident app that each rule test breaks in one way.
const validBase = `{
  "id": "/db/pg",
  "cmd": "postgres",
  "cpus": 1, "mem": 256, "disk": 10, "instances": 1,
  "container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 100}}]},
  "portDefinitions": [{"port": 0, "name": "pg"}, {"port": 0, "name": "metrics"}],
  "healthChecks": [{"protocol": "TCP", "portIndex": 0}],
  "env": {"PGDATA": "data"}
}`

func TestValidationRules(t *testing.T) {
	if vs := Validate(Canonicalize(mustParse(t, validBase))); len(vs) != 0 {
		t.Fatalf("base app invalid: %v", vs)
	}
	cases := []struct {
		name  string
		patch string // JSON merged into validBase (top-level replace)
		field string
		words []string
	}{
		{"id uppercase", `{"id": "/DB/pg"}`, "id", []string{"DB"}},
		{"id dotdot", `{"id": "/db/../pg"}`, "id", []string{".."}},
		{"id empty segment", `{"id": "/db//pg"}`, "id", nil},
		{"id trailing hyphen", `{"id": "/db-"}`, "id", nil},
		{"cmd and args", `{"args": ["a"]}`, "cmd", []string{"args"}},
		{"negative cpus", `{"cpus": -1}`, "cpus", []string{"0"}},
		{"negative mem", `{"mem": -1}`, "mem", nil},
		{"negative disk", `{"disk": -0.5}`, "disk", nil},
		{"negative gpus", `{"gpus": -1}`, "gpus", nil},
		{"negative instances", `{"instances": -1}`, "instances", nil},
		{"nan cpus", `{"cpus": "NaN"}`, "cpus", []string{"finite"}},
		{"persistent path slash", `{"container": {"volumes": [{"containerPath": "/data", "persistent": {"size": 1}}]}}`, "container.volumes[0].containerPath", []string{"/"}},
		{"persistent path empty", `{"container": {"volumes": [{"containerPath": "", "persistent": {"size": 1}}]}}`, "container.volumes[0].containerPath", []string{"empty"}},
		{"persistent path dotdot", `{"container": {"volumes": [{"containerPath": "..", "persistent": {"size": 1}}]}}`, "container.volumes[0].containerPath", nil},
		{"persistent size 0", `{"container": {"volumes": [{"containerPath": "d", "persistent": {"size": 0}}]}}`, "container.volumes[0].persistent.size", []string{"must be greater than 0"}},
		{"persistent size missing", `{"container": {"volumes": [{"containerPath": "d", "persistent": {}}]}}`, "container.volumes[0].persistent.size", nil},
		{"persistent RO", `{"container": {"volumes": [{"containerPath": "d", "mode": "RO", "persistent": {"size": 1}}]}}`, "container.volumes[0].mode", []string{"RW"}},
		{"persistent type", `{"container": {"volumes": [{"containerPath": "d", "persistent": {"size": 1, "type": "block"}}]}}`, "container.volumes[0].persistent.type", []string{"block"}},
		{"maxSize on root", `{"container": {"volumes": [{"containerPath": "d", "persistent": {"size": 1, "maxSize": 5}}]}}`, "container.volumes[0].persistent.maxSize", []string{"mount"}},
		{"maxSize not above size", `{"container": {"volumes": [{"containerPath": "d", "persistent": {"size": 10, "maxSize": 5, "type": "mount"}}]}}`, "container.volumes[0].persistent.maxSize", []string{"greater"}},
		{"volume constraints on root", `{"container": {"volumes": [{"containerPath": "d", "persistent": {"size": 1, "constraints": [["path", "LIKE", "x"]]}}]}}`, "container.volumes[0].persistent.constraints", nil},
		{"volume constraint shape", `{"container": {"volumes": [{"containerPath": "d", "persistent": {"size": 1, "type": "path", "constraints": [["host", "LIKE", "x"]]}}]}}`, "container.volumes[0].persistent.constraints[0]", nil},
		{"volume mode", `{"container": {"volumes": [{"containerPath": "d", "mode": "RX", "persistent": {"size": 1}}]}}`, "container.volumes[0].mode", []string{"RX"}},
		{"volume kind", `{"container": {"volumes": [{"containerPath": "d", "persistent": {"size": 1}}, {"containerPath": "e"}]}}`, "container.volumes[1]", []string{"exactly one"}},
		{"volume duplicate path", `{"container": {"volumes": [{"containerPath": "d", "persistent": {"size": 1}}, {"containerPath": "d", "hostPath": "/x"}]}}`, "container.volumes[1].containerPath", []string{"duplicate"}},
		{"max over capacity resident", `{"upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5}}`, "upgradeStrategy.maximumOverCapacity", []string{"resident"}},
		{"min health out of range", `{"upgradeStrategy": {"minimumHealthCapacity": 1.5, "maximumOverCapacity": 0}}`, "upgradeStrategy.minimumHealthCapacity", []string{"between 0 and 1"}},
		{"accepted roles resident", `{"acceptedResourceRoles": ["slave_public"]}`, "acceptedResourceRoles", []string{"*"}},
		{"unreachable resident", `{"unreachableStrategy": {"inactiveAfterSeconds": 10, "expungeAfterSeconds": 20}}`, "unreachableStrategy", []string{"disabled"}},
		{"unreachable negative", `{"unreachableStrategy": {"inactiveAfterSeconds": -1, "expungeAfterSeconds": 5}}`, "unreachableStrategy.inactiveAfterSeconds", nil},
		{"unreachable expunge before inactive", `{"unreachableStrategy": {"inactiveAfterSeconds": 10, "expungeAfterSeconds": 5}}`, "unreachableStrategy.expungeAfterSeconds", []string{"inactiveAfterSeconds"}},
		{"pull config secret unknown", `{"container": {"type": "MESOS", "docker": {"image": "x", "pullConfig": {"secret": "reg"}}, "volumes": [{"containerPath": "data", "persistent": {"size": 100}}]}}`, "container.docker.pullConfig.secret", []string{"reg"}},
		{"pull config with docker", `{"secrets": {"reg": {"source": "/r"}}, "container": {"type": "DOCKER", "docker": {"image": "x", "pullConfig": {"secret": "reg"}}, "volumes": [{"containerPath": "data", "persistent": {"size": 100}}]}}`, "container.docker.pullConfig", []string{"MESOS"}},
		{"env secret unknown", `{"env": {"PW": {"secret": "db"}}}`, `env["PW"].secret`, []string{"db"}},
		{"role star resident", `{"role": "*"}`, "role", []string{"resident"}},
		{"duplicate port definition name", `{"portDefinitions": [{"name": "pg"}, {"name": "pg"}]}`, "portDefinitions[1].name", []string{"duplicate"}},
		{"duplicate port definition port", `{"portDefinitions": [{"port": 80}, {"port": 80}]}`, "portDefinitions[1].port", []string{"duplicate"}},
		{"port out of range", `{"portDefinitions": [{"port": 70000}]}`, "portDefinitions[0].port", []string{"65535"}},
		{"duplicate port mapping name", `{"networks": [{"mode": "container/bridge"}], "portDefinitions": [], "container": {"volumes": [{"containerPath": "data", "persistent": {"size": 100}}], "portMappings": [{"containerPort": 1, "name": "a"}, {"containerPort": 2, "name": "a"}]}}`, "container.portMappings[1].name", []string{"duplicate"}},
		{"port protocol", `{"portDefinitions": [{"port": 0, "protocol": "sctp"}]}`, "portDefinitions[0].protocol", []string{"sctp"}},
		{"health portIndex out of range", `{"healthChecks": [{"protocol": "TCP", "portIndex": 2}]}`, "healthChecks[0].portIndex", []string{"2 port(s)"}},
		{"health negative portIndex", `{"healthChecks": [{"protocol": "TCP", "portIndex": -1}]}`, "healthChecks[0].portIndex", nil},
		{"health port and portIndex", `{"healthChecks": [{"protocol": "TCP", "portIndex": 0, "port": 80}]}`, "healthChecks[0].port", []string{"portIndex"}},
		{"health protocol", `{"healthChecks": [{"protocol": "UDP"}]}`, "healthChecks[0].protocol", []string{"UDP"}},
		{"two mesos checks", `{"healthChecks": [{"protocol": "MESOS_TCP"}, {"protocol": "MESOS_HTTP"}]}`, "healthChecks[1].protocol", []string{"at most one"}},
		// Marathon-level checks mix with at most one Mesos check.
		{"two mesos checks among marathon ones", `{"healthChecks": [{"protocol": "TCP"}, {"protocol": "COMMAND", "command": {"value": "true"}}, {"protocol": "HTTP"}, {"protocol": "MESOS_TCP"}]}`, "healthChecks[3].protocol", []string{"at most one"}},
		{"command check without command", `{"healthChecks": [{"protocol": "COMMAND"}]}`, "healthChecks[0].command.value", nil},
		{"health interval", `{"healthChecks": [{"protocol": "TCP", "intervalSeconds": 0}]}`, "healthChecks[0].intervalSeconds", nil},
		{"health ipProtocol", `{"healthChecks": [{"protocol": "MESOS_TCP", "ipProtocol": "IPv5"}]}`, "healthChecks[0].ipProtocol", nil},
		{"kill selection", `{"killSelection": "RANDOM"}`, "killSelection", []string{"RANDOM"}},
		{"container type", `{"container": {"type": "RKT", "volumes": [{"containerPath": "data", "persistent": {"size": 100}}]}}`, "container.type", []string{"RKT"}},
		{"docker without image", `{"container": {"type": "DOCKER", "volumes": [{"containerPath": "data", "persistent": {"size": 100}}]}}`, "container.docker.image", nil},
		{"docker network", `{"container": {"type": "DOCKER", "docker": {"image": "x", "network": "NONE"}, "volumes": [{"containerPath": "data", "persistent": {"size": 100}}]}}`, "container.docker.network", []string{"NONE"}},
		{"network mode", `{"networks": [{"mode": "overlay"}]}`, "networks[0].mode", []string{"overlay"}},
		{"host mixed networks", `{"networks": [{"mode": "host"}, {"mode": "container", "name": "a"}]}`, "networks", []string{"host"}},
		{"constraint operator", `{"constraints": [["hostname", "NEAR"]]}`, "constraints[0]", []string{"NEAR"}},
		{"constraint empty field", `{"constraints": [["", "UNIQUE"]]}`, "constraints[0]", []string{"field name"}},
		{"constraint unique value", `{"constraints": [["hostname", "UNIQUE", "x"]]}`, "constraints[0]", []string{"UNIQUE"}},
		{"constraint like regex", `{"constraints": [["hostname", "LIKE", "a("]]}`, "constraints[0]", []string{"regular expression"}},
		{"constraint like missing", `{"constraints": [["hostname", "UNLIKE"]]}`, "constraints[0]", nil},
		{"constraint max_per", `{"constraints": [["hostname", "MAX_PER", "zero"]]}`, "constraints[0]", []string{"MAX_PER"}},
		{"constraint group_by", `{"constraints": [["rack", "GROUP_BY", "-1"]]}`, "constraints[0]", []string{"GROUP_BY"}},
		{"constraint is", `{"constraints": [["rack", "IS"]]}`, "constraints[0]", []string{"IS"}},
		// Marathon takes any other name for an app (LegacyEnvVars):
		// "1BAD" and "A-B" are valid.
		{"env name", `{"env": {"A=B": "x"}}`, `env["A=B"]`, nil},
		{"env name empty", `{"env": {"": "x"}}`, `env[""]`, nil},
		{"backoff factor", `{"backoffFactor": 0.5}`, "backoffFactor", nil},
		{"negative backoff", `{"backoffSeconds": -1}`, "backoffSeconds", nil},
		{"uris and fetch", `{"uris": ["http://a"], "fetch": [{"uri": "http://b"}]}`, "uris", []string{"fetch"}},
		{"fetch empty uri", `{"fetch": [{"uri": ""}]}`, "fetch[0].uri", nil},
		{"dependency id", `{"dependencies": ["/Bad"]}`, "dependencies[0]", nil},
		{"readiness port name", `{"readinessChecks": [{"portName": "nope"}]}`, "readinessChecks[0].portName", []string{"nope"}},
		{"no cmd args or container", `{"cmd": "", "container": null, "portDefinitions": []}`, "cmd", []string{"one of"}},
		{"docker gpus", `{"gpus": 1, "container": {"type": "DOCKER", "docker": {"image": "x"}, "volumes": [{"containerPath": "data", "persistent": {"size": 100}}]}}`, "gpus", []string{"MESOS"}},
		{"discovery ports on docker", `{"ipAddress": {"discovery": {"ports": [{"number": 80, "name": "http", "protocol": "tcp"}]}}, "container": {"type": "DOCKER", "docker": {"image": "x"}, "volumes": [{"containerPath": "data", "persistent": {"size": 100}}]}}`, "ipAddress.discovery.ports", []string{"DOCKER"}},
		{"docker and container port mappings", `{"networks": [{"mode": "container/bridge"}], "container": {"type": "DOCKER", "docker": {"image": "x", "portMappings": [{"containerPort": 1}]}, "portMappings": [{"containerPort": 2}], "volumes": [{"containerPath": "data", "persistent": {"size": 100}}]}}`, "container.docker.portMappings", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			patch := mustParse(t, c.patch)
			app := MergePartial(mustParse(t, validBase), patch)
			if patch.Id != "" {
				app.Id = patch.Id // MergePartial never takes the id
			}
			// Apply JSON nulls/empties that MergePartial cannot express.
			var raw map[string]json.RawMessage
			if err := json.Unmarshal([]byte(c.patch), &raw); err != nil {
				t.Fatal(err)
			}
			for k, v := range raw {
				s := string(v)
				if s == "null" || s == "[]" || s == `""` {
					fd := app.ProtoReflect().Descriptor().Fields().ByJSONName(k)
					if s == `""` {
						continue // an explicit empty string is already set
					}
					app.ProtoReflect().Clear(fd)
				}
			}
			Canonicalize(app)
			vs := Validate(app)
			if !hasViolation(vs, c.field, c.words...) {
				t.Fatalf("want violation on %s mentioning %q, got %v", c.field, c.words, vs)
			}
		})
	}
}

// TestMixedHealthChecks: Marathon accepts its own checks (HTTP, HTTPS, TCP)
// together with at most one Mesos check (AppValidation.scala: "AppDefinition
// can contain at most one Mesos health check"); so does Berth.
func TestMixedHealthChecks(t *testing.T) {
	for _, checks := range []string{
		`[{"protocol": "HTTP", "path": "/h"}, {"protocol": "COMMAND", "command": {"value": "pg_isready"}}]`,
		`[{"protocol": "TCP"}, {"protocol": "HTTPS"}, {"protocol": "MESOS_HTTP", "path": "/h"}]`,
		`[{"protocol": "MESOS_TCP"}, {"protocol": "TCP"}]`,
	} {
		app := MergePartial(mustParse(t, validBase), mustParse(t, `{"healthChecks": `+checks+`}`))
		Canonicalize(app)
		if vs := Validate(app); len(vs) != 0 {
			t.Errorf("healthChecks %s refused: %v", checks, vs)
		}
	}
}

func TestValidateUpdateResident(t *testing.T) {
	old := Canonicalize(mustParse(t, validBase))
	cases := []struct {
		patch string
		field string
	}{
		{`{"cpus": 2}`, "cpus"},
		{`{"mem": 512}`, "mem"},
		{`{"disk": 11}`, "disk"},
		{`{"gpus": 1}`, "gpus"},
		{`{"container": {"volumes": [{"containerPath": "data", "persistent": {"size": 200}}]}}`, "container.volumes"},
		{`{"requirePorts": true}`, "requirePorts"},
		{`{"portDefinitions": [{"port": 5432, "name": "pg"}, {"port": 0, "name": "metrics"}]}`, "portDefinitions"},
	}
	for _, c := range cases {
		updated := Canonicalize(MergePartial(old, mustParse(t, c.patch)))
		vs := ValidateUpdate(old, updated)
		if !hasViolation(vs, c.field, "resident") {
			t.Errorf("%s: want violation on %s, got %v", c.patch, c.field, vs)
		}
	}
	// Allowed changes: instances, env, cmd.
	updated := Canonicalize(MergePartial(old, mustParse(t, `{"instances": 3, "env": {"A": "b"}, "cmd": "postgres -c x"}`)))
	if vs := ValidateUpdate(old, updated); len(vs) != 0 {
		t.Errorf("allowed update refused: %v", vs)
	}
	// Non-resident apps may change anything.
	stateless := Canonicalize(mustParse(t, `{"id": "/s", "cmd": "x"}`))
	if vs := ValidateUpdate(stateless, Canonicalize(MergePartial(stateless, mustParse(t, `{"cpus": 4}`)))); len(vs) != 0 {
		t.Errorf("stateless update refused: %v", vs)
	}
}

func TestMergePartial(t *testing.T) {
	old := Canonicalize(mustParse(t, validBase))
	old.Version = proto.String("2020-01-01T00:00:00Z")
	old.VersionInfo = &v1.VersionInfo{LastScalingAt: "2020-01-01T00:00:00Z", LastConfigChangeAt: "2020-01-01T00:00:00Z"}
	patch := mustParse(t, `{"id": "/other", "instances": 0, "env": {"X": "1"}, "version": "x", "versionInfo": {"lastScalingAt": "x"}}`)
	merged := MergePartial(old, patch)
	if merged.GetId() != "/db/pg" || merged.GetVersion() != "2020-01-01T00:00:00Z" || !proto.Equal(merged.GetVersionInfo(), old.GetVersionInfo()) {
		t.Errorf("id/version taken from patch: %v %v %v", merged.GetId(), merged.GetVersion(), merged.GetVersionInfo())
	}
	if merged.Instances == nil || merged.GetInstances() != 0 {
		t.Errorf("explicit instances 0 not applied: %v", merged.Instances)
	}
	if len(merged.Env) != 1 || merged.Env["X"].GetValue() != "1" {
		t.Errorf("env not replaced: %v", merged.Env)
	}
	if merged.GetCmd() != "postgres" || merged.GetMem() != 256 {
		t.Errorf("untouched fields changed")
	}
	// No aliasing with the patch or the old app.
	patch.Env["X"].Kind = &v1.EnvValue_Value{Value: "2"}
	if merged.Env["X"].GetValue() != "1" || old.Env["PGDATA"].GetValue() != "data" {
		t.Errorf("merge shares maps")
	}
}

func FuzzParseAndValidateApp(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.json")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(validBase))
	f.Add([]byte(`{"id":"a","container":{"docker":{"network":"USER"}},"ipAddress":{"discovery":{"ports":[{"number":1}]}}}`))
	f.Add([]byte(`{"id":"a","args":[],"networks":[{"name":"n"}],"container":{"portMappings":[]},"cmd":"x","labels":{},"ports":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		app, err := Parse(data)
		if err != nil {
			return
		}
		// Validation of the raw input, then of the canonical app, must not
		// panic; canonicalization must be idempotent and keep parseability.
		_ = Validate(app)
		Canonicalize(app)
		vs := Validate(app)
		once := proto.Clone(app).(*v1.App)
		Canonicalize(app)
		if !proto.Equal(once, app) {
			t.Fatalf("canonicalize not idempotent:\n%v\n%v", once, app)
		}
		out, err := Render(app)
		if err != nil {
			return // e.g. invalid UTF-8 cannot be rendered; parse refused it anyway
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("rendered app does not parse: %v\n%s", err, out)
		}
		if !proto.Equal(back, app) {
			t.Fatalf("render/parse changed the app")
		}
		_ = ValidateUpdate(once, app)
		for _, v := range vs {
			if v.Field == "" || v.Description == "" {
				t.Fatalf("violation without field or description: %+v", v)
			}
		}
	})
}
