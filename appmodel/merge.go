package appmodel

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// MergePartial applies a partial update (Marathon's PATCH semantics): every
// top-level field present in patch replaces the stored one; the others are
// kept. id, version and versionInfo are never taken from the patch. old and
// patch are not modified; the result is a new message. Lists and maps count
// as present when non-empty (protobuf cannot carry an explicitly empty one),
// so a partial update cannot clear a list: send the full definition for that.
func MergePartial(old, patch *v1.App) *v1.App {
	merged := proto.Clone(old).(*v1.App)
	if merged == nil {
		merged = &v1.App{}
	}
	if patch == nil {
		return merged
	}
	dst := merged.ProtoReflect()
	patch.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		switch fd.Name() {
		case "id", "version", "version_info":
			return true
		}
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
	return merged
}

// cloneValue deep-copies message values; scalars are immutable.
func cloneValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) protoreflect.Value {
	if fd.Message() != nil {
		return protoreflect.ValueOfMessage(proto.Clone(v.Message().Interface()).ProtoReflect())
	}
	return v
}
