package appmodel

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Presence. Protobuf cannot tell an explicitly empty list or map from an
// absent one, nor null from absent, but Marathon can: "portDefinitions": []
// means no ports (absent means one default port), and in a partial update
// [] or {} clears a field while null resets it to its default. App keeps
// what protobuf cannot in two lists of JSON paths, empty_fields and
// null_fields: Parse sets them from the document, Canonicalize and
// MergePartial honour them, Render writes the empty ones back.

// isPresenceField reports whether fd is one of App's presence lists, which
// are never read from or written to Marathon JSON as such.
func isPresenceField(fd protoreflect.FieldDescriptor) bool {
	return fd.Name() == "empty_fields" || fd.Name() == "null_fields"
}

// recordPresence collects, from a decoded Marathon document, the paths of
// its explicitly empty lists and maps (outside lists and maps, where a path
// would not name one field) and of its top-level null fields.
func recordPresence(tree any, app *v1.App) {
	obj, ok := tree.(jsonObject)
	if !ok {
		return
	}
	for _, m := range obj {
		if fd := appDescriptor.Fields().ByJSONName(m.key); fd != nil && m.val == nil && !isPresenceField(fd) {
			app.NullFields = append(app.NullFields, m.key)
		}
	}
	var walk func(obj jsonObject, md protoreflect.MessageDescriptor, path string)
	walk = func(obj jsonObject, md protoreflect.MessageDescriptor, path string) {
		for _, m := range obj {
			fd := md.Fields().ByJSONName(m.key)
			if fd == nil || isPresenceField(fd) {
				continue
			}
			field := joinField(path, m.key)
			switch {
			case fd.IsList():
				if arr, ok := m.val.([]any); ok && len(arr) == 0 {
					app.EmptyFields = append(app.EmptyFields, field)
				}
			case fd.IsMap():
				if o, ok := m.val.(jsonObject); ok && len(o) == 0 {
					app.EmptyFields = append(app.EmptyFields, field)
				}
			case fd.Message() != nil:
				if _, loose := looseForms[fd.Message().FullName()]; loose {
					continue
				}
				if o, ok := m.val.(jsonObject); ok {
					walk(o, fd.Message(), field)
				}
			}
		}
	}
	walk(obj, appDescriptor, "")
	// In the order Canonicalize keeps them, so that Parse(Render(app))
	// equals app.
	slices.Sort(app.EmptyFields)
}

// resolveField finds the message holding the field at a JSON path and the
// field's descriptor; ok is false when the path names no list or map field
// or a message on the way is not set.
func resolveField(m protoreflect.Message, path string) (parent protoreflect.Message, fd protoreflect.FieldDescriptor, ok bool) {
	segs := strings.Split(path, ".")
	for i, seg := range segs {
		fd = m.Descriptor().Fields().ByJSONName(seg)
		if fd == nil {
			return nil, nil, false
		}
		if i == len(segs)-1 {
			return m, fd, fd.IsList() || fd.IsMap()
		}
		if fd.Message() == nil || fd.IsList() || fd.IsMap() || !m.Has(fd) {
			return nil, nil, false
		}
		m = m.Get(fd).Message()
	}
	return nil, nil, false
}

// ExplicitlyEmpty reports whether the list or map at a JSON path (e.g.
// "portDefinitions") was given as [] or {}: none, rather than the default.
func ExplicitlyEmpty(app *v1.App, path string) bool {
	return slices.Contains(app.GetEmptyFields(), path)
}

// canonicalizePresence drops null_fields (they only mean something to a
// partial update) and keeps the empty_fields that still name an empty list
// or map of a set message, sorted and once each. The deprecated lists
// Canonicalize translates hand their emptiness on to their successors.
func canonicalizePresence(app *v1.App) {
	app.NullFields = nil
	if len(app.EmptyFields) == 0 {
		app.EmptyFields = nil
		return
	}
	rename := map[string]string{
		"ports":                         "portDefinitions",
		"uris":                          "fetch",
		"container.docker.portMappings": "container.portMappings",
	}
	var keep []string
	for _, path := range app.EmptyFields {
		if to, ok := rename[path]; ok {
			// The successor decides: empty too, or given (then the empty
			// deprecated list says nothing).
			parent, fd, ok := resolveField(app.ProtoReflect(), to)
			if !ok || parent.Has(fd) {
				continue
			}
			path = to
		}
		parent, fd, ok := resolveField(app.ProtoReflect(), path)
		if ok && !parent.Has(fd) && !slices.Contains(keep, path) {
			keep = append(keep, path)
		}
	}
	slices.Sort(keep)
	app.EmptyFields = keep
}

// renderPresence writes the explicitly empty lists and maps of an app into
// its protojson tree (which omits them) and drops the presence lists.
func renderPresence(obj jsonObject) jsonObject {
	var empty []string
	out := make(jsonObject, 0, len(obj))
	for _, m := range obj {
		switch m.key {
		case "emptyFields":
			if arr, ok := m.val.([]any); ok {
				for _, e := range arr {
					if s, ok := e.(string); ok {
						empty = append(empty, s)
					}
				}
			}
		case "nullFields":
		default:
			out = append(out, m)
		}
	}
	for _, path := range empty {
		out = setEmpty(out, appDescriptor, strings.Split(path, "."))
	}
	return out
}

// setEmpty sets the list or map at path to [] or {} when it is absent and
// every object on the way exists.
func setEmpty(obj jsonObject, md protoreflect.MessageDescriptor, path []string) jsonObject {
	fd := md.Fields().ByJSONName(path[0])
	if fd == nil {
		return obj
	}
	for i, m := range obj {
		if m.key != path[0] {
			continue
		}
		if len(path) > 1 && fd.Message() != nil {
			if child, ok := m.val.(jsonObject); ok {
				obj[i].val = setEmpty(child, fd.Message(), path[1:])
			}
		}
		return obj // present: nothing to add
	}
	switch {
	case len(path) > 1:
	case fd.IsList():
		obj = append(obj, jsonMember{path[0], []any{}})
	case fd.IsMap():
		obj = append(obj, jsonMember{path[0], jsonObject{}})
	}
	return obj
}

// underField reports whether a JSON path is the top-level field name or
// lies inside it.
func underField(path, name string) bool {
	return path == name || strings.HasPrefix(path, name+".")
}
