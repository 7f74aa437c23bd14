package appmodel

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Mesos refuses ids (task, framework, persistence ids) longer than this.
const maxMesosID = 255

// Room the scheduler's derived ids need besides the app's slug (the id
// without its leading slash, '/' as '_'); see scheduler/ids.go, whose test
// holds the two together:
//   - task id "<slug>.instance-<uuid>._app.<incarnation>": 10 + 36 + 6 and
//     up to 10 digits;
//   - persistence id "<slug>#<containerPath>#<uuid>": 2 + 36, plus the
//     container path.
const (
	taskIDRoom        = len(".instance-") + 36 + len("._app.") + 10
	persistenceIDRoom = 2 + 36
	// MaxAppIDLength is the longest app id (without its leading slash)
	// whose task ids fit Mesos' limit.
	MaxAppIDLength = maxMesosID - taskIDRoom
)

// Limits are the caps a server puts on one app definition, so that no
// accepted request can exhaust a server's memory or produce ids and
// environments Mesos or a shell refuses. Zero fields use the defaults.
type Limits struct {
	// MaxInstances caps an app's instances (default 25,000).
	MaxInstances int32
	// MaxEnvBytes caps the total size of env names and values (default
	// 256 KiB: a process's environment and arguments share the kernel's
	// limit).
	MaxEnvBytes int
	// MaxLabels caps the number of labels (default 1,024); a label name may
	// have 255 bytes, a value 4 KiB.
	MaxLabels int
}

// Default limits.
const (
	DefaultMaxInstances = 25_000
	DefaultMaxEnvBytes  = 256 << 10
	DefaultMaxLabels    = 1024
	maxLabelKeyBytes    = 255
	maxLabelValueBytes  = 4 << 10
)

func (l Limits) withDefaults() Limits {
	if l.MaxInstances <= 0 {
		l.MaxInstances = DefaultMaxInstances
	}
	if l.MaxEnvBytes <= 0 {
		l.MaxEnvBytes = DefaultMaxEnvBytes
	}
	if l.MaxLabels <= 0 {
		l.MaxLabels = DefaultMaxLabels
	}
	return l
}

// CheckLimits returns the violations of l by app (a canonical app).
func CheckLimits(app *v1.App, l Limits) []Violation {
	l = l.withDefaults()
	v := &validator{}
	if n := app.GetInstances(); n > l.MaxInstances {
		v.add("instances", "must be at most %d on this server (got %d; the limit is the servers' --max-instances-per-app)", l.MaxInstances, n)
	}
	envBytes := 0
	for k, val := range app.Env {
		envBytes += len(k) + len(val.GetValue()) + len(val.GetSecret())
	}
	if envBytes > l.MaxEnvBytes {
		v.add("env", "must hold at most %d bytes of names and values (got %d)", l.MaxEnvBytes, envBytes)
	}
	if n := len(app.Labels); n > l.MaxLabels {
		v.add("labels", "must have at most %d labels (got %d)", l.MaxLabels, n)
	}
	for _, k := range slices.Sorted(maps.Keys(app.Labels)) {
		switch field := "labels[" + strconv.Quote(k) + "]"; {
		case len(k) > maxLabelKeyBytes:
			v.add(field, "label names must have at most %d bytes (got %d)", maxLabelKeyBytes, len(k))
		case len(app.Labels[k]) > maxLabelValueBytes:
			v.add(field, "label values must have at most %d bytes (got %d)", maxLabelValueBytes, len(app.Labels[k]))
		}
	}
	return v.vs
}

// validateIDRoom checks that the ids the scheduler derives from the app's
// id fit Mesos' limit: an app whose task ids are too long would sit in
// TASK_ERROR forever, its reservation held.
func validateIDRoom(v *validator, app *v1.App) {
	slug := len(strings.Trim(app.GetId(), "/"))
	if slug > MaxAppIDLength {
		v.add("id", "is %d characters long; at most %d (without the leading '/'), so that the task ids derived from it fit Mesos' %d characters", slug, MaxAppIDLength, maxMesosID)
		return
	}
	for i, vol := range app.GetContainer().GetVolumes() {
		if vol.GetPersistent() == nil {
			continue
		}
		if n := slug + len(vol.GetContainerPath()) + persistenceIDRoom; n > maxMesosID {
			v.add(fmt.Sprintf("container.volumes[%d].containerPath", i), "with the app id, makes persistence ids of %d characters; Mesos allows %d: shorten the app id or the container path", n, maxMesosID)
		}
	}
}

// validateText refuses NUL anywhere in an app, and other control
// characters (all of C0 but tab, newline and carriage return, and DEL):
// Mesos, a shell or an environment cannot carry them, and one a user did
// not mean to type should not silently reach a task.
func validateText(v *validator, m protoreflect.Message, path string) {
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		field := fd.JSONName()
		if path != "" {
			field = path + "." + field
		}
		switch {
		case fd.IsMap():
			val.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				key := k.String()
				elem := field + "[" + strconv.Quote(key) + "]"
				if bad, ok := badChar(key); ok {
					v.add(elem, "names must not contain the control character %s", bad)
				}
				checkValue(v, fd.MapValue(), mv, elem)
				return true
			})
		case fd.IsList():
			l := val.List()
			for i := 0; i < l.Len(); i++ {
				checkValue(v, fd, l.Get(i), fmt.Sprintf("%s[%d]", field, i))
			}
		default:
			checkValue(v, fd, val, field)
		}
		return true
	})
}

func checkValue(v *validator, fd protoreflect.FieldDescriptor, val protoreflect.Value, field string) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if bad, ok := badChar(val.String()); ok {
			v.add(field, "must not contain the control character %s", bad)
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		validateText(v, val.Message(), field)
	}
}

// badChar finds the first control character a task cannot be given.
func badChar(s string) (string, bool) {
	for _, r := range s {
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f {
			return fmt.Sprintf("%U", r), true
		}
	}
	return "", false
}
