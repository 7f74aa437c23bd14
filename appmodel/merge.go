package appmodel

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// MergePartial applies a partial update (Marathon's PATCH semantics): every
// top-level field present in patch replaces the stored one; the others are
// kept. id, version and versionInfo are never taken from the patch. A list
// or map given explicitly empty ([] or {}, see ExplicitlyEmpty) clears the
// stored one; a top-level field given as null resets it to its default. old
// and patch are not modified; the result is a new message.
func MergePartial(old, patch *v1.App) *v1.App {
	merged := proto.Clone(old).(*v1.App)
	if merged == nil {
		merged = &v1.App{}
	}
	if patch == nil {
		return merged
	}
	dst := merged.ProtoReflect()
	fields := dst.Descriptor().Fields()
	// forget drops what the old app said of the presence of a top-level
	// field (and of the lists inside it) that the patch replaces.
	forget := func(name string) {
		merged.EmptyFields = slices.DeleteFunc(merged.EmptyFields, func(p string) bool { return underField(p, name) })
	}
	for _, name := range patch.GetNullFields() {
		if fd := fields.ByJSONName(name); fd != nil && !isPresenceField(fd) && !immutableOnMerge(fd) {
			dst.Clear(fd)
			forget(name)
		}
	}
	for _, path := range patch.GetEmptyFields() {
		name, _, _ := strings.Cut(path, ".")
		if fd := fields.ByJSONName(name); fd != nil && !isPresenceField(fd) && !immutableOnMerge(fd) {
			if name == path {
				dst.Clear(fd)
			}
			forget(name)
		}
	}
	patch.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		if immutableOnMerge(fd) || isPresenceField(fd) {
			return true
		}
		forget(fd.JSONName())
		// Deep copy so that the result shares nothing with patch.
		switch {
		case fd.IsList():
			dst.Clear(fd)
			l := dst.Mutable(fd).List()
			src := val.List()
			for i := 0; i < src.Len(); i++ {
				l.Append(cloneValue(fd, src.Get(i)))
			}
		case fd.IsMap():
			dst.Clear(fd)
			m := dst.Mutable(fd).Map()
			val.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				m.Set(k, cloneValue(fd.MapValue(), mv))
				return true
			})
		default:
			dst.Set(fd, cloneValue(fd, val))
		}
		return true
	})
	for _, path := range patch.GetEmptyFields() {
		name, _, _ := strings.Cut(path, ".")
		if fd := fields.ByJSONName(name); fd != nil && !immutableOnMerge(fd) && !slices.Contains(merged.EmptyFields, path) {
			merged.EmptyFields = append(merged.EmptyFields, path)
		}
	}
	merged.NullFields = nil
	return merged
}

// immutableOnMerge: the fields a partial update never takes from a patch.
func immutableOnMerge(fd protoreflect.FieldDescriptor) bool {
	switch fd.Name() {
	case "id", "version", "version_info":
		return true
	}
	return false
}

// cloneValue deep-copies message values; scalars are immutable.
func cloneValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) protoreflect.Value {
	if fd.Message() != nil {
		return protoreflect.ValueOfMessage(proto.Clone(v.Message().Interface()).ProtoReflect())
	}
	return v
}
