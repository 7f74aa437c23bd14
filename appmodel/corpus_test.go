package appmodel

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The corpus (testdata/marathon-corpus) holds app files written from
// Marathon's app RAML, at least one per field group. Each is checked twice:
//
//  1. As given: Parse then Render gives the same JSON document back (object
//     keys in any order, numbers by value, a null member counting as
//     absent). This is what `app show -o json` must give back for a stored
//     non-canonical app, and the strict form of "nothing is dropped": a
//     field the model did not keep would be missing here.
//  2. As stored: the canonical app (Canonicalize, Marathon's defaults and
//     translations of deprecated fields) is valid, and is a fixed point of
//     Render → Parse → Canonicalize, so an app fetched from Berth can be
//     submitted again unchanged. Comparing canonical JSON with the input
//     would not work: Canonicalize adds defaults and rewrites deprecated
//     fields (ports, uris, ipAddress) by design.

// corpusRefused lists the corpus files Berth refuses on submission, with
// the field the refusal must name: the task would run without its data.
var corpusRefused = map[string]string{
	"external-dvdi.json": "container.volumes[0].external",
	"external-csi.json":  "container.volumes[0].external",
}

func TestMarathonCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/marathon-corpus/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("corpus has %d files, want at least 30", len(files))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
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
			if want, got := jsonValue(t, data, true), jsonValue(t, out, false); !reflect.DeepEqual(want, got) {
				t.Errorf("rendered app differs from the file:\n%s", out)
			}

			canon := Canonicalize(proto.Clone(app).(*v1.App))
			vs := Validate(canon)
			if field, refused := corpusRefused[name]; refused {
				if !slices.ContainsFunc(vs, func(v Violation) bool { return v.Field == field }) {
					t.Errorf("violations %v, want one for %s", vs, field)
				}
			} else if len(vs) > 0 {
				t.Errorf("violations: %v", vs)
			}

			stored, err := Render(canon)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(stored)
			if err != nil {
				t.Fatalf("parse of the rendered canonical app: %v\n%s", err, stored)
			}
			Canonicalize(again)
			if !proto.Equal(again, canon) {
				t.Errorf("canonical app is not a fixed point:\nfirst  %v\nsecond %v", canon, again)
			}
			if rerendered, _ := Render(again); !bytes.Equal(rerendered, stored) {
				t.Errorf("canonical rendering changed:\n%s\nthen\n%s", stored, rerendered)
			}
		})
	}
}

// jsonValue decodes JSON into maps, slices and float64s; with dropNulls,
// object members whose value is null are left out.
func jsonValue(t *testing.T, data []byte, dropNulls bool) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if dropNulls {
		v = withoutNulls(v)
	}
	return v
}

func withoutNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
			} else {
				x[k] = withoutNulls(e)
			}
		}
	case []any:
		for i, e := range x {
			x[i] = withoutNulls(e)
		}
	}
	return v
}

func corpusApp(t *testing.T, name string) *v1.App {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata/marathon-corpus", name))
	if err != nil {
		t.Fatal(err)
	}
	app, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// An explicit [] means none, not Marathon's default of one port (or one
// port mapping), and stays [] when rendered; an absent list gets the
// default.
func TestExplicitlyEmptyPorts(t *testing.T) {
	for _, c := range []struct {
		file, rendered string
	}{
		{"portdefinitions-empty.json", `"portDefinitions": []`},
		{"ports-empty.json", `"portDefinitions": []`},
		{"portmappings-empty.json", `"portMappings": []`},
	} {
		app := Canonicalize(corpusApp(t, c.file))
		if ps := Ports(app); len(ps) != 0 {
			t.Errorf("%s: ports %v, want none", c.file, ps)
		}
		if n := len(app.PortDefinitions) + len(app.GetContainer().GetPortMappings()); n != 0 {
			t.Errorf("%s: %d port definitions or mappings, want none", c.file, n)
		}
		out, _ := Render(app)
		if !strings.Contains(string(out), c.rendered) {
			t.Errorf("%s rendered without %s:\n%s", c.file, c.rendered, out)
		}
	}
	app := Canonicalize(mustParse(t, `{"id": "/a", "cmd": "x"}`))
	if len(Ports(app)) != 1 {
		t.Errorf("absent portDefinitions: ports %v, want Marathon's one default port", Ports(app))
	}
	app = Canonicalize(mustParse(t, `{"id": "/a", "cmd": "x", "networks": [{"mode": "container/bridge"}], "container": {"type": "DOCKER", "docker": {"image": "i"}}}`))
	if len(app.GetContainer().GetPortMappings()) != 1 {
		t.Errorf("absent portMappings: %v, want Marathon's one default mapping", app.GetContainer().GetPortMappings())
	}
}

// A partial update with [] or {} clears a list or map, null resets a field
// to its default, and an absent field is kept.
func TestMergePartialPresence(t *testing.T) {
	old := Canonicalize(mustParse(t, `{"id": "/a", "cmd": "x", "labels": {"a": "b"},
		"portDefinitions": [{"port": 0, "name": "http"}, {"port": 0, "name": "admin"}], "instances": 3}`))
	merge := func(patch string) *v1.App {
		return Canonicalize(MergePartial(old, mustParse(t, patch)))
	}

	m := merge(`{"portDefinitions": [], "labels": {}}`)
	if len(Ports(m)) != 0 || len(m.Labels) != 0 {
		t.Errorf("[] and {}: ports %v, labels %v, want none", Ports(m), m.Labels)
	}
	out, _ := Render(m)
	if !strings.Contains(string(out), `"portDefinitions": []`) || !strings.Contains(string(out), `"labels": {}`) {
		t.Errorf("cleared fields not rendered as [] and {}:\n%s", out)
	}

	m = merge(`{"portDefinitions": null, "instances": null}`)
	if len(Ports(m)) != 1 || m.GetPortDefinitions()[0].GetName() != DefaultPortName || m.GetInstances() != DefaultInstances {
		t.Errorf("null: port definitions %v, instances %d, want the defaults", m.PortDefinitions, m.GetInstances())
	}

	m = merge(`{"cmd": "y"}`)
	if len(Ports(m)) != 2 || m.Labels["a"] != "b" || m.GetCmd() != "y" {
		t.Errorf("absent fields not kept: %v", m)
	}

	// A list given again after being cleared is no longer empty.
	cleared := merge(`{"portDefinitions": []}`)
	m = Canonicalize(MergePartial(cleared, mustParse(t, `{"portDefinitions": [{"port": 0}]}`)))
	if len(Ports(m)) != 1 || ExplicitlyEmpty(m, "portDefinitions") {
		t.Errorf("refilled: ports %v, empty fields %v", Ports(m), m.EmptyFields)
	}
}

// The presence lists are the model's own: a document cannot set them.
func TestPresenceFieldsNotInput(t *testing.T) {
	_, err := Parse([]byte(`{"id": "/a", "cmd": "x", "emptyFields": ["portDefinitions"]}`))
	if err == nil || !strings.Contains(err.Error(), "emptyFields: unknown field") {
		t.Fatalf("err = %v", err)
	}
}

// Fields Berth keeps but does not act upon are listed with their paths;
// an app Berth honours fully lists none.
func TestUnsupported(t *testing.T) {
	for file, want := range map[string][]string{
		"check-http.json":               {"check"},
		"linuxinfo-seccomp-ipc.json":    {"container.linuxInfo"},
		"docker-requireports.json":      {"container.docker.requirePorts"},
		"secret-volume.json":            {"container.volumes[0].secret"},
		"executor-limits.json":          {"executor", "executorResources", "resourceLimits"},
		"tty.json":                      {"tty"},
		"store-urls.json":               {"storeUrls"},
		"appc.json":                     {"container.appc"},
		"docker-legacy.json":            {"networks[0]", "container.docker.credential"},
		"networks-container.json":       {"networks[0]"},
		"portmappings-empty.json":       {"networks[0]"},
		"networks-bridge.json":          nil,
		"networks-host.json":            nil,
		"pullconfig-mesos.json":         {"container.docker.forcePullImage"},
		"unreachable-enabled.json":      {"unreachableStrategy"},
		"env-secrets.json":              nil,
		"resident-residency.json":       nil,
		"portdefinitions-empty.json":    nil,
		"upgrade-dependencies.json":     nil,
		"persistent-mount-profile.json": nil,
	} {
		var got []string
		for _, u := range Unsupported(Canonicalize(corpusApp(t, file))) {
			field, reason, ok := strings.Cut(u, ": ")
			if !ok || reason == "" {
				t.Errorf("%s: %q is not \"field: reason\"", file, u)
			}
			got = append(got, field)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: unsupported %v, want %v", file, got, want)
		}
	}
}

// The rules of the new field groups name the field that breaks them.
func TestValidateFieldGroups(t *testing.T) {
	for _, c := range []struct {
		json, field string
	}{
		{`{"id": "/a", "cmd": "x", "check": {"http": {"portIndex": 0}, "tcp": {"portIndex": 0}}}`, "check"},
		{`{"id": "/a", "cmd": "x", "check": {"http": {"portIndex": 3}}}`, "check.http.portIndex"},
		{`{"id": "/a", "cmd": "x", "portDefinitions": [], "check": {"tcp": {}}}`, "check.tcp.portIndex"},
		{`{"id": "/a", "cmd": "x", "check": {"http": {"scheme": "FTP"}}}`, "check.http.scheme"},
		{`{"id": "/a", "cmd": "x", "check": {"exec": {"command": {"shell": "a", "argv": ["b"]}}}}`, "check.exec.command"},
		{`{"id": "/a", "cmd": "x", "check": {"exec": {"command": {"argv": []}}}}`, "check.exec.command"},
		{`{"id": "/a", "cmd": "x", "check": {"exec": {"command": {"shell": "a"}}, "intervalSeconds": -1}}`, "check.intervalSeconds"},
		{`{"id": "/a", "cmd": "x", "container": {"type": "MESOS", "linuxInfo": {"ipcInfo": {"mode": "SHARE_PARENT", "shmSize": 8}}}}`, "container.linuxInfo.ipcInfo.shmSize"},
		{`{"id": "/a", "cmd": "x", "container": {"type": "MESOS", "linuxInfo": {"ipcInfo": {"mode": "OPEN"}}}}`, "container.linuxInfo.ipcInfo.mode"},
		{`{"id": "/a", "cmd": "x", "container": {"type": "MESOS", "linuxInfo": {"seccomp": {"profileName": "p", "unconfined": true}}}}`, "container.linuxInfo.seccomp.profileName"},
		{`{"id": "/a", "container": {"type": "DOCKER", "docker": {"image": "i"}, "linuxInfo": {}}}`, "container.linuxInfo"},
		{`{"id": "/a", "cmd": "x", "mem": 256, "resourceLimits": {"mem": 128}}`, "resourceLimits.mem"},
		{`{"id": "/a", "cmd": "x", "executorResources": {"mem": 16}}`, "executorResources.mem"},
		{`{"id": "/a", "cmd": "x", "container": {"volumes": [{"containerPath": "s", "secret": "nope"}]}}`, "container.volumes[0].secret"},
		{`{"id": "/a", "cmd": "x", "container": {"docker": {"image": "i", "credential": {"principal": ""}}}}`, "container.docker.credential.principal"},
		{`{"id": "/a", "cmd": "x", "storeUrls": [""]}`, "storeUrls[0]"},
	} {
		vs := Validate(Canonicalize(mustParse(t, c.json)))
		if !slices.ContainsFunc(vs, func(v Violation) bool { return v.Field == c.field }) {
			t.Errorf("%s: violations %v, want one for %s", c.json, vs, c.field)
		}
	}
}

// Mistyped values of the new groups are refused by Parse with their path.
func TestParseFieldGroupErrors(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"id": "/a", "resourceLimits": {"cpus": "lots"}}`, `resourceLimits.cpus: expected a number or "unlimited"`},
		{`{"id": "/a", "check": {"http": {"portIndex": "0"}}}`, `check.http.portIndex: expected a whole number`},
		{`{"id": "/a", "container": {"linuxInfo": {"seccomp": {"unconfined": "no"}}}}`, `container.linuxInfo.seccomp.unconfined: expected true or false`},
		{`{"id": "/a", "container": {"volumes": [{"containerPath": "d", "external": {"provider": "csi", "options": {"pluginNme": "p"}}}]}}`, `container.volumes[0].external.options.pluginNme: unknown field`},
		{`{"id": "/a", "container": {"volumes": [{"containerPath": "d", "external": {"provider": "csi", "csiOptions": {}}}]}}`, `container.volumes[0].external.csiOptions: unknown field`},
		{`{"id": "/a", "container": {"volumes": [{"containerPath": "d", "external": {"provider": "dvdi", "options": {"size": 3}}}]}}`, `container.volumes[0].external.options["size"]: expected a string`},
	} {
		_, err := Parse([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.json, err, c.want)
		}
	}
}

// Rules where Marathon is looser than a first guess: an app's env names
// are free-form (Marathon validates them strictly only for pods), and a
// network without a mode is a container network.
func TestMarathonLooseRules(t *testing.T) {
	for _, js := range []string{
		`{"id": "/a", "cmd": "x", "env": {"1ST": "a", "A-B": "b", "my.var": "c"}}`,
		`{"id": "/a", "cmd": "x", "networks": [{"name": "dcos"}]}`,
	} {
		app := Canonicalize(mustParse(t, js))
		if vs := Validate(app); len(vs) > 0 {
			t.Errorf("%s: violations %v", js, vs)
		}
	}
	app := Canonicalize(mustParse(t, `{"id": "/a", "cmd": "x", "networks": [{"name": "dcos"}]}`))
	if app.Networks[0].GetMode() != NetworkModeContainer {
		t.Errorf("network mode = %q, want container", app.Networks[0].GetMode())
	}
}
