package appmodel

import (
	"strings"
	"testing"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func violationsOf(t *testing.T, js string) []string {
	t.Helper()
	app, err := Parse([]byte(js))
	if err != nil {
		t.Fatalf("parse %s: %v", js, err)
	}
	var out []string
	for _, v := range Validate(Canonicalize(app)) {
		out = append(out, v.String())
	}
	return out
}

func TestControlCharactersRefused(t *testing.T) {
	cases := []struct {
		name, js, want string
	}{
		{"NUL in cmd", `{"id": "/a", "cmd": "echo a\u0000b"}`, "cmd: must not contain the control character U+0000"},
		{"NUL in env value", `{"id": "/a", "cmd": "x", "env": {"K": "a\u0000"}}`, `env["K"]`},
		{"escape in label", `{"id": "/a", "cmd": "x", "labels": {"k": "\u001b[31m"}}`, `labels["k"]: must not contain the control character U+001B`},
		{"bell in a label name", `{"id": "/a", "cmd": "x", "labels": {"k\u0007": "v"}}`, `labels["k\a"]: names must not contain the control character U+0007`},
		{"NUL in args", `{"id": "/a", "args": ["a", "\u0000"]}`, "args[1]: must not contain the control character U+0000"},
		{"DEL in a volume path", `{"id": "/a", "cmd": "x", "container": {"type": "MESOS", "volumes": [{"containerPath": "d\u007f", "mode": "RW", "persistent": {"size": 1}}]}}`, "container.volumes[0].containerPath: must not contain the control character U+007F"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vs := violationsOf(t, c.js)
			if !strings.Contains(strings.Join(vs, "\n"), c.want) {
				t.Fatalf("violations %q, want one containing %q", vs, c.want)
			}
		})
	}
	// Tabs and newlines are fine in a shell script.
	if vs := violationsOf(t, `{"id": "/a", "cmd": "set -e\n\techo ok\r\n"}`); len(vs) != 0 {
		t.Fatalf("multi-line cmd refused: %v", vs)
	}
}

func TestIDLengthFitsMesosIDs(t *testing.T) {
	id := func(n int) string { return "/" + strings.Repeat("a", n) }
	if vs := violationsOf(t, `{"id": "`+id(MaxAppIDLength)+`", "cmd": "x"}`); len(vs) != 0 {
		t.Fatalf("id of the maximum length refused: %v", vs)
	}
	vs := violationsOf(t, `{"id": "`+id(MaxAppIDLength+1)+`", "cmd": "x"}`)
	if len(vs) != 1 || !strings.HasPrefix(vs[0], "id: is 194 characters long; at most 193") {
		t.Fatalf("too long id: %v", vs)
	}
	vs = violationsOf(t, `{"id": "`+id(150)+`", "cmd": "x", "container": {"type": "MESOS", "volumes": [{"containerPath": "`+strings.Repeat("d", 70)+`", "mode": "RW", "persistent": {"size": 1}}]}, "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0}}`)
	if len(vs) != 1 || !strings.HasPrefix(vs[0], "container.volumes[0].containerPath: with the app id, makes persistence ids of 258 characters") {
		t.Fatalf("too long persistence id: %v", vs)
	}
}

func TestCheckLimits(t *testing.T) {
	app := &v1.App{Id: "/a", Instances: ptr32(1_000_000_000), Env: Env(map[string]string{"BIG": strings.Repeat("x", 300<<10)}),
		Labels: map[string]string{strings.Repeat("k", 300): "v"}}
	var got []string
	for _, v := range CheckLimits(app, Limits{}) {
		got = append(got, v.String())
	}
	want := []string{
		"instances: must be at most 25000 on this server (got 1000000000; the limit is the servers' --max-instances-per-app)",
		"env: must hold at most 262144 bytes of names and values (got 307203)",
		`labels["` + strings.Repeat("k", 300) + `"]: label names must have at most 255 bytes (got 300)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if vs := CheckLimits(&v1.App{Id: "/a", Instances: ptr32(5)}, Limits{MaxInstances: 5}); len(vs) != 0 {
		t.Fatalf("at the limit: %v", vs)
	}
}

func ptr32(v int32) *int32 { return &v }
