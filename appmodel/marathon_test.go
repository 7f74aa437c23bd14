package appmodel

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Marathon's loose JSON forms parse into the typed messages and render back
// as they were written.
func TestLooseFormsRoundTrip(t *testing.T) {
	cases := []struct {
		name  string
		json  string
		check func(a *v1.App) bool
	}{
		{"constraints", `{"constraints": [["hostname", "UNIQUE"], ["rack", "GROUP_BY", "3"], ["zone", "LIKE", ""]]}`, func(a *v1.App) bool {
			c := a.GetConstraints()
			return len(c) == 3 && c[0].GetField() == "hostname" && c[0].GetOperator() == "UNIQUE" && c[0].Value == nil &&
				c[1].GetField() == "rack" && c[1].GetOperator() == "GROUP_BY" && c[1].GetValue() == "3" &&
				c[2].Value != nil && c[2].GetValue() == ""
		}},
		{"unreachable disabled", `{"unreachableStrategy": "disabled"}`, func(a *v1.App) bool {
			return a.GetUnreachableStrategy().GetDisabled() != nil
		}},
		{"unreachable enabled", `{"unreachableStrategy": {"inactiveAfterSeconds": 300, "expungeAfterSeconds": 600}}`, func(a *v1.App) bool {
			e := a.GetUnreachableStrategy().GetEnabled()
			return e.GetInactiveAfterSeconds() == 300 && e.GetExpungeAfterSeconds() == 600
		}},
		{"unreachable enabled, defaults", `{"unreachableStrategy": {}}`, func(a *v1.App) bool {
			e := a.GetUnreachableStrategy().GetEnabled()
			return e != nil && e.InactiveAfterSeconds == nil
		}},
		{"env", `{"env": {"A": "x", "EMPTY": "", "PW": {"secret": "db"}}, "secrets": {"db": {"source": "/db/password"}}}`, func(a *v1.App) bool {
			e := a.GetEnv()
			_, emptyIsValue := e["EMPTY"].GetKind().(*v1.EnvValue_Value)
			return e["A"].GetValue() == "x" && emptyIsValue && e["PW"].GetSecret() == "db" && a.GetSecrets()["db"].GetSource() == "/db/password"
		}},
		{"volume constraints", `{"container": {"volumes": [{"containerPath": "d", "persistent": {"size": 1, "type": "path", "constraints": [["path", "LIKE", "/mnt/.*"]]}}]}}`, func(a *v1.App) bool {
			c := a.GetContainer().GetVolumes()[0].GetPersistent().GetConstraints()
			return len(c) == 1 && c[0].GetField() == "path" && c[0].GetOperator() == "LIKE" && c[0].GetValue() == "/mnt/.*"
		}},
		{"docker pull config", `{"container": {"type": "MESOS", "docker": {"image": "registry.example.com/db:1", "pullConfig": {"secret": "reg"}}}, "secrets": {"reg": {"source": "/ci/docker-config"}}}`, func(a *v1.App) bool {
			return a.GetContainer().GetDocker().GetPullConfig().GetSecret() == "reg"
		}},
		{"external volume", `{"container": {"volumes": [{"containerPath": "e", "mode": "RW", "external": {"name": "v", "provider": "dvdi", "size": 5, "options": {"dvdi/driver": "rexray"}}}]}}`, func(a *v1.App) bool {
			x := a.GetContainer().GetVolumes()[0].GetExternal()
			return x.GetName() == "v" && x.GetProvider() == "dvdi" && x.GetSize() == 5 && x.GetOptions()["dvdi/driver"] == "rexray"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			app := mustParse(t, c.json)
			if !c.check(app) {
				t.Fatalf("parsed %v", app)
			}
			out, err := Render(app)
			if err != nil {
				t.Fatal(err)
			}
			if want, got := canonicalJSON(t, []byte(c.json)), canonicalJSON(t, out); !reflect.DeepEqual(want, got) {
				t.Fatalf("round trip differs\nwant %v\ngot  %v\n%s", want, got, out)
			}
			back := mustParse(t, string(out))
			if !c.check(back) {
				t.Fatalf("rendered form parsed to %v", back)
			}
		})
	}
}

// A canonical app renders with Marathon's forms of its defaults.
func TestRenderCanonicalDefaults(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"id": "/s", "cmd": "x"}`, `"unreachableStrategy": {
    "inactiveAfterSeconds": 0,
    "expungeAfterSeconds": 0
  }`},
		{`{"id": "/r", "cmd": "x", "container": {"volumes": [{"containerPath": "d", "persistent": {"size": 1}}]}}`, `"unreachableStrategy": "disabled"`},
	} {
		out, err := Render(Canonicalize(mustParse(t, c.json)))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s rendered\n%s\nwant it to contain\n%s", c.json, out, c.want)
		}
	}
}

// Marathon's private-registry example (container.docker.pullConfig with a
// secret) is a valid app.
func TestPullConfigValid(t *testing.T) {
	app := Canonicalize(mustParse(t, `{"id": "/private", "cmd": "serve", "container": {"type": "MESOS",
		"docker": {"image": "registry.example.com/app:1", "pullConfig": {"secret": "pullConfigSecret"}}},
		"secrets": {"pullConfigSecret": {"source": "/mesos-docker/pullConfig"}}}`))
	if vs := Validate(app); len(vs) != 0 {
		t.Fatalf("violations: %v", vs)
	}
}

// Every field name a Marathon file can use is the JSON name protojson
// derives from the lower_snake_case proto name. The list is Marathon's (app
// RAML); a proto field renamed without a json_name would fall out of it.
func TestMarathonFieldNames(t *testing.T) {
	marathon := strings.Fields(`
		id cmd args user env labels instances cpus mem disk gpus constraints container networks
		portDefinitions ports requirePorts healthChecks readinessChecks upgradeStrategy unreachableStrategy
		residency killSelection backoffSeconds backoffFactor maxLaunchDelaySeconds fetch dependencies
		acceptedResourceRoles role ipAddress executor taskKillGracePeriodSeconds version versionInfo secrets
		uris tty maxUnavailable
		type docker volumes portMappings image network privileged parameters forcePullImage pullConfig secret
		key value containerPort hostPort servicePort protocol name networkNames
		containerPath hostPath mode persistent external size maxSize profileName provider options shared
		path portIndex port command gracePeriodSeconds intervalSeconds timeoutSeconds maxConsecutiveFailures
		ignoreHttp1xx delaySeconds ipProtocol portName interval timeout httpStatusCodesForReady preserveLastResponse
		minimumHealthCapacity maximumOverCapacity relaunchEscalationTimeoutSeconds taskLostBehavior
		uri executable extract cache destPath discovery groups networkName number
		lastScalingAt lastConfigChangeAt source inactiveAfterSeconds expungeAfterSeconds
		check http tcp exec scheme shell argv executorResources resourceLimits storeUrls
		linuxInfo seccomp unconfined ipcInfo shmSize appc credential principal
		pluginName capability accessMode accessType fsType mountFlags nodeStageSecret nodePublishSecret volumeContext`)
	known := map[string]bool{}
	for _, n := range marathon {
		known[n] = true
	}
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor, path string)
	walk = func(md protoreflect.MessageDescriptor, path string) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		_, loose := looseForms[md.FullName()]
		fields := md.Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			if md == appDescriptor && slices.Contains(BerthExtensions, fd.JSONName()) {
				continue // Berth's own fields, not Marathon's
			}
			if string(fd.Name()) != strings.ToLower(string(fd.Name())) {
				t.Errorf("%s: proto name %s is not lower_snake_case", path, fd.Name())
			}
			// The typed forms of Marathon's loose values have no names of
			// their own in Marathon's JSON.
			if !loose && !known[fd.JSONName()] && !(md == appDescriptor && isPresenceField(fd)) {
				t.Errorf("%s.%s: JSON name is not one of Marathon's", path, fd.JSONName())
			}
			msg := fd.Message()
			if fd.IsMap() {
				msg = fd.MapValue().Message()
			}
			if msg != nil {
				walk(msg, joinField(path, fd.JSONName()))
			}
		}
	}
	walk(appDescriptor, "app")
}

// Apps inside any message (a list of apps, an update's answer) come out in
// Marathon's forms too.
func TestMarshalJSONAppsInside(t *testing.T) {
	app := mustParse(t, `{"id": "/a", "env": {"A": "x", "PW": {"secret": "db"}}, "constraints": [["hostname", "UNIQUE"]], "unreachableStrategy": "disabled"}`)
	out, err := MarshalJSON(&v1.ListAppsResponse{Apps: []*v1.App{app}, Summaries: []*v1.AppSummary{{TasksRunning: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Apps      []map[string]any
		Summaries []map[string]any
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	a := got.Apps[0]
	want := map[string]any{
		"id":                  "/a",
		"env":                 map[string]any{"A": "x", "PW": map[string]any{"secret": "db"}},
		"constraints":         []any{[]any{"hostname", "UNIQUE"}},
		"unreachableStrategy": "disabled",
	}
	if !reflect.DeepEqual(a, want) || got.Summaries[0]["tasksRunning"] != float64(2) {
		t.Fatalf("got %s", out)
	}
}
