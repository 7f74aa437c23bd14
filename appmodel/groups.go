package appmodel

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Berth has no group objects: a Marathon group is the set of apps under a
// path. A group definition (POST /v2/groups, `berth app add` of a group
// file) is flattened into its apps, ids and dependencies made absolute,
// and written app by app in dependency order.

// GroupDef is Marathon's group definition (GroupUpdate): apps and nested
// groups, ids relative to the enclosing group or absolute.
type GroupDef struct {
	ID           string            `json:"id"`
	Apps         []json.RawMessage `json:"apps"`
	Groups       []GroupDef        `json:"groups"`
	Dependencies []string          `json:"dependencies"`
	ScaleBy      *float64          `json:"scaleBy"`
	Version      *string           `json:"version"`
}

// GroupApp is one app of a group definition with where it was in it, as
// Marathon's error paths name it ("/groups(0)/apps(1)").
type GroupApp struct {
	App  *v1.App
	Path string
}

// GroupError is an app of a group definition that cannot be taken: at
// Path, either Err (it does not parse) or Violations.
type GroupError struct {
	Path       string
	Err        error
	Violations []Violation
}

func (e *GroupError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Path, e.Err)
	}
	parts := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		parts = append(parts, v.Field+": "+v.Description)
	}
	return e.Path + ": " + strings.Join(parts, "; ")
}

func (e *GroupError) Unwrap() error { return e.Err }

// IsGroupDefinition reports whether a JSON document is a group definition
// rather than an app: an object with "apps" or "groups" and none of an
// app's cmd, args or container.
func IsGroupDefinition(data []byte) bool {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return false
	}
	_, apps := top["apps"]
	_, groups := top["groups"]
	_, cmd := top["cmd"]
	_, args := top["args"]
	_, container := top["container"]
	return (apps || groups) && !cmd && !args && !container
}

// ResolveID makes id absolute against the group base (Marathon's relative
// ids).
func ResolveID(base, id string) string {
	if strings.HasPrefix(id, "/") {
		return NormalizeID(id)
	}
	return NormalizeID(path.Join(base, id))
}

// UnderGroup reports whether an app id lies in group gid ("/": every app).
func UnderGroup(appID, gid string) bool {
	return gid == "/" || strings.HasPrefix(appID, gid+"/")
}

// FlattenGroup lists every app of a group definition whose id is gid
// (recursively), ids and dependencies resolved against their group; a
// group's dependencies apply to each app in it. parse turns one app's JSON
// into an app (Parse, or a caller's own that reports errors its way);
// errors are *GroupError naming the app's path.
func FlattenGroup(g GroupDef, gid string, parse func(raw []byte, path string) (*v1.App, error)) ([]GroupApp, error) {
	var out []GroupApp
	err := flattenGroup(g, gid, "", nil, parse, &out)
	return out, err
}

func flattenGroup(g GroupDef, gid, prefix string, groupDeps []string, parse func([]byte, string) (*v1.App, error), out *[]GroupApp) error {
	deps := append([]string(nil), groupDeps...)
	for _, d := range g.Dependencies {
		deps = append(deps, ResolveID(path.Dir(gid), d))
	}
	for i, raw := range g.Apps {
		p := fmt.Sprintf("%s/apps(%d)", prefix, i)
		app, err := parse(raw, p)
		if err != nil {
			return &GroupError{Path: p, Err: err}
		}
		if app.GetId() == "" {
			return &GroupError{Path: p, Violations: []Violation{{Field: "id", Description: "must be set"}}}
		}
		app.Id = ResolveID(gid, app.GetId())
		if !UnderGroup(app.GetId(), gid) {
			return &GroupError{Path: p, Violations: []Violation{{Field: "id", Description: fmt.Sprintf("identifier %s is not child of %s", app.GetId(), gid)}}}
		}
		for j, d := range app.GetDependencies() {
			app.Dependencies[j] = ResolveID(gid, d)
		}
		app.Dependencies = append(app.Dependencies, deps...)
		*out = append(*out, GroupApp{App: app, Path: p})
	}
	for i, sub := range g.Groups {
		if err := flattenGroup(sub, ResolveID(gid, sub.ID), fmt.Sprintf("%s/groups(%d)", prefix, i), deps, parse, out); err != nil {
			return err
		}
	}
	return nil
}

// DependencyOrder sorts apps so that each comes after the apps of the
// list it depends on (directly, or through a group it depends on);
// dependencies outside the list are left to exist already. ok is false on
// a cycle.
func DependencyOrder(apps []GroupApp) ([]GroupApp, bool) {
	dependsOn := func(i int) []int {
		var out []int
		for _, d := range apps[i].App.GetDependencies() {
			for j, other := range apps {
				if j != i && (other.App.GetId() == d || UnderGroup(other.App.GetId(), d)) {
					out = append(out, j)
				}
			}
		}
		return out
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(apps))
	var order []GroupApp
	var visit func(i int) bool
	visit = func(i int) bool {
		switch state[i] {
		case visiting:
			return false
		case done:
			return true
		}
		state[i] = visiting
		for _, j := range dependsOn(i) {
			if !visit(j) {
				return false
			}
		}
		state[i] = done
		order = append(order, apps[i])
		return true
	}
	for i := range apps {
		if !visit(i) {
			return nil, false
		}
	}
	return order, true
}
