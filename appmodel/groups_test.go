package appmodel

import (
	"encoding/json"
	"errors"
	"testing"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func TestIsGroupDefinition(t *testing.T) {
	for doc, want := range map[string]bool{
		`{"id": "/g", "apps": [{"id": "a", "cmd": "c"}]}`: true,
		`{"id": "/g", "groups": [{"id": "sub"}]}`:         true,
		`{"id": "/a", "cmd": "sleep 1"}`:                  false,
		`{"id": "/a", "cmd": "sleep 1", "apps": []}`:      false,
		`[1, 2]`: false,
		`{"id": "/a", "container": {"type": "MESOS"}, "apps": []}`: false,
	} {
		if got := IsGroupDefinition([]byte(doc)); got != want {
			t.Errorf("IsGroupDefinition(%s) = %v", doc, got)
		}
	}
}

func TestFlattenGroupErrors(t *testing.T) {
	var g GroupDef
	if err := json.Unmarshal([]byte(`{"id": "/g", "groups": [{"id": "sub", "apps": [{"id": "/other/x", "cmd": "c"}]}]}`), &g); err != nil {
		t.Fatal(err)
	}
	parse := func(raw []byte, _ string) (*v1.App, error) { return Parse(raw) }
	_, err := FlattenGroup(g, "/g", parse)
	var ge *GroupError
	if !errors.As(err, &ge) || ge.Path != "/groups(0)/apps(0)" || len(ge.Violations) != 1 || ge.Violations[0].Field != "id" {
		t.Fatalf("app outside its group: %v", err)
	}
	g = GroupDef{ID: "/g", Apps: []json.RawMessage{[]byte(`{"id": "a", "mem": "lots"}`)}}
	if _, err := FlattenGroup(g, "/g", parse); !errors.As(err, &ge) || ge.Err == nil || ge.Path != "/apps(0)" {
		t.Fatalf("app that does not parse: %v", err)
	}
}
