package appmodel

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Marathon's JSON is looser than protobuf's: a constraint is an array, the
// unreachable strategy a string or an object, an env value a string or an
// object. fromMarathon checks a decoded Marathon document against the App
// schema, naming the path of every field that does not fit, and rewrites
// the loose forms into the typed messages' protojson forms; toMarathon
// turns protojson's output back into Marathon's forms.

// looseForm converts one message type between its Marathon JSON form and
// its protojson form.
type looseForm struct {
	// from turns a Marathon value (not null) into protojson form, adding
	// problems under path.
	from func(v any, path string, p *problems) any
	// to turns protojson output into the Marathon form.
	to func(obj jsonObject) any
}

var looseForms map[protoreflect.FullName]looseForm

func init() {
	looseForms = map[protoreflect.FullName]looseForm{
		(&v1.Constraint{}).ProtoReflect().Descriptor().FullName():          {constraintFrom, constraintTo},
		(&v1.UnreachableStrategy{}).ProtoReflect().Descriptor().FullName(): {unreachableFrom, unreachableTo},
		(&v1.EnvValue{}).ProtoReflect().Descriptor().FullName():            {envValueFrom, envValueTo},
		(&v1.ResourceLimit{}).ProtoReflect().Descriptor().FullName():       {resourceLimitFrom, resourceLimitTo},
		externalVolume.FullName():                                          {externalVolumeFrom, externalVolumeTo},
	}
}

// problems collects what does not fit the schema, one per field path.
type problems []Violation

func (p *problems) add(path, format string, args ...any) {
	if path == "" {
		path = "app"
	}
	*p = append(*p, Violation{Field: path, Description: fmt.Sprintf(format, args...)})
}

// fromMarathon converts a Marathon value of message type md.
func fromMarathon(v any, md protoreflect.MessageDescriptor, path string, p *problems) any {
	if v == nil {
		return nil // null: the field is absent
	}
	if lf, ok := looseForms[md.FullName()]; ok {
		return lf.from(v, path, p)
	}
	obj, ok := v.(jsonObject)
	if !ok {
		p.add(path, "expected %s", describeMessage(md))
		return nil
	}
	return objectFromMarathon(obj, md, path, p)
}

// objectFromMarathon converts the members of a Marathon object of message
// type md, field by field.
func objectFromMarathon(obj jsonObject, md protoreflect.MessageDescriptor, path string, p *problems) jsonObject {
	out := make(jsonObject, 0, len(obj))
	for _, m := range obj {
		field := joinField(path, m.key)
		fd := md.Fields().ByJSONName(m.key)
		if fd != nil && md == appDescriptor && isPresenceField(fd) {
			fd = nil // kept by Parse itself, never taken from the input
		}
		if fd == nil {
			if s := suggest(md, m.key); s != "" {
				p.add(field, "unknown field (did you mean %q?)", s)
			} else {
				p.add(field, "unknown field")
			}
			continue
		}
		out = append(out, jsonMember{m.key, fieldFromMarathon(m.val, fd, field, p)})
	}
	return out
}

func fieldFromMarathon(v any, fd protoreflect.FieldDescriptor, path string, p *problems) any {
	if v == nil {
		return nil
	}
	switch {
	case fd.IsMap():
		obj, ok := v.(jsonObject)
		if !ok {
			p.add(path, "expected an object")
			return nil
		}
		out := make(jsonObject, 0, len(obj))
		for _, m := range obj {
			out = append(out, jsonMember{m.key, elementFromMarathon(m.val, fd.MapValue(), fmt.Sprintf("%s[%s]", path, strconv.Quote(m.key)), p)})
		}
		return out
	case fd.IsList():
		arr, ok := v.([]any)
		if !ok {
			p.add(path, "expected a list")
			return nil
		}
		out := make([]any, len(arr))
		for i, e := range arr {
			out[i] = elementFromMarathon(e, fd, fmt.Sprintf("%s[%d]", path, i), p)
		}
		return out
	}
	return singularFromMarathon(v, fd, path, p)
}

// elementFromMarathon converts an element of a list or a value of a map,
// which cannot be null.
func elementFromMarathon(v any, fd protoreflect.FieldDescriptor, path string, p *problems) any {
	if v == nil {
		p.add(path, "must not be null")
		return nil
	}
	return singularFromMarathon(v, fd, path, p)
}

// singularFromMarathon converts one value of a field's kind (an element of
// a list, a value of a map, or the field itself; null is absent).
func singularFromMarathon(v any, fd protoreflect.FieldDescriptor, path string, p *problems) any {
	if v == nil {
		return nil
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return fromMarathon(v, fd.Message(), path, p)
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			p.add(path, "expected a string")
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			p.add(path, "expected true or false")
		}
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		switch x := v.(type) {
		case json.Number:
		case string:
			// protojson's spellings of the numbers JSON cannot write.
			if x != "NaN" && x != "Infinity" && x != "-Infinity" {
				p.add(path, "expected a number")
			}
		default:
			p.add(path, "expected a number")
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		checkInteger(v, path, math.MinInt32, math.MaxInt32, p)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		checkInteger(v, path, 0, math.MaxUint32, p)
	default:
		// The App schema has no other kinds; protojson judges them.
	}
	return v
}

func checkInteger(v any, path string, lo, hi float64, p *problems) {
	n, ok := v.(json.Number)
	if !ok {
		p.add(path, "expected a whole number")
		return
	}
	f, err := strconv.ParseFloat(n.String(), 64)
	switch {
	case err != nil || f != math.Trunc(f):
		p.add(path, "expected a whole number (got %s)", n)
	case f < lo || f > hi:
		p.add(path, "must be between %.0f and %.0f (got %s)", lo, hi, n)
	}
}

// describeMessage says what object a message type expects, naming its
// fields when there are few.
func describeMessage(md protoreflect.MessageDescriptor) string {
	fields := md.Fields()
	if fields.Len() == 0 || fields.Len() > 3 {
		return "an object"
	}
	names := make([]string, fields.Len())
	for i := range names {
		names[i] = strconv.Quote(fields.Get(i).JSONName())
	}
	return "an object with " + strings.Join(names, ", ")
}

// suggest returns the field of md that an unknown name was probably meant
// to be: the same letters in another case or spelling (port_definitions
// for portDefinitions), or a name at most two edits away.
func suggest(md protoreflect.MessageDescriptor, name string) string {
	fold := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	best, bestDist := "", 3
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		jn := fields.Get(i).JSONName()
		if fold(jn) == fold(name) {
			return jn
		}
		if d := editDistance(fold(jn), fold(name)); d < bestDist {
			best, bestDist = jn, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of two strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// toMarathon converts protojson output of message type md into Marathon's
// forms, wherever in md the typed messages of the loose forms appear.
func toMarathon(v any, md protoreflect.MessageDescriptor) any {
	obj, ok := v.(jsonObject)
	if !ok {
		return v
	}
	if lf, ok := looseForms[md.FullName()]; ok {
		return lf.to(obj)
	}
	out := make(jsonObject, 0, len(obj))
	for _, m := range obj {
		fd := md.Fields().ByJSONName(m.key)
		if fd == nil || fd.Message() == nil {
			out = append(out, m)
			continue
		}
		val := m.val
		switch {
		case fd.IsMap():
			if mo, ok := val.(jsonObject); ok && fd.MapValue().Message() != nil {
				conv := make(jsonObject, len(mo))
				for i, e := range mo {
					conv[i] = jsonMember{e.key, toMarathon(e.val, fd.MapValue().Message())}
				}
				val = conv
			}
		case fd.IsList():
			if arr, ok := val.([]any); ok {
				conv := make([]any, len(arr))
				for i, e := range arr {
					conv[i] = toMarathon(e, fd.Message())
				}
				val = conv
			}
		default:
			val = toMarathon(val, fd.Message())
		}
		out = append(out, jsonMember{m.key, val})
	}
	if md == appDescriptor {
		out = renderPresence(out)
	}
	return out
}

const constraintShape = `["field", "OPERATOR"] or ["field", "OPERATOR", "value"]`

// constraintFrom: ["field", "OPERATOR", "value"?] -> {field, operator, value}.
func constraintFrom(v any, path string, p *problems) any {
	arr, ok := v.([]any)
	if !ok {
		p.add(path, "expected %s", constraintShape)
		return nil
	}
	if len(arr) < 2 || len(arr) > 3 {
		p.add(path, "expected %s (got %d elements)", constraintShape, len(arr))
		return nil
	}
	names := []string{"field", "operator", "value"}
	out := jsonObject{}
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			p.add(fmt.Sprintf("%s[%d]", path, i), "expected a string")
			continue
		}
		out = append(out, jsonMember{names[i], s})
	}
	return out
}

func constraintTo(obj jsonObject) any {
	str := func(k string) string {
		s, _ := obj.get(k)
		str, _ := s.(string)
		return str
	}
	out := []any{str("field"), str("operator")}
	if v, ok := obj.get("value"); ok {
		out = append(out, v)
	}
	return out
}

var unreachableEnabled = (&v1.UnreachableEnabled{}).ProtoReflect().Descriptor()

// unreachableFrom: "disabled" -> {disabled: {}};
// {inactiveAfterSeconds, expungeAfterSeconds} -> {enabled: {...}}.
func unreachableFrom(v any, path string, p *problems) any {
	switch x := v.(type) {
	case string:
		if x == UnreachableDisabled {
			return jsonObject{{"disabled", jsonObject{}}}
		}
		p.add(path, `expected "disabled" or %s (got %q)`, describeMessage(unreachableEnabled), x)
		return nil
	case jsonObject:
		return jsonObject{{"enabled", fromMarathon(x, unreachableEnabled, path, p)}}
	}
	p.add(path, `expected "disabled" or %s`, describeMessage(unreachableEnabled))
	return nil
}

func unreachableTo(obj jsonObject) any {
	if _, ok := obj.get("disabled"); ok {
		return UnreachableDisabled
	}
	if e, ok := obj.get("enabled"); ok {
		return e
	}
	return jsonObject{}
}

// envValueFrom: "text" -> {value: "text"}; {"secret": "name"} -> {secret: "name"}.
func envValueFrom(v any, path string, p *problems) any {
	const shape = `expected a string or an object with "secret"`
	switch x := v.(type) {
	case string:
		return jsonObject{{"value", x}}
	case jsonObject:
		name, ok := x.get("secret")
		if _, isStr := name.(string); !ok || !isStr || len(x) != 1 {
			p.add(path, shape)
			return nil
		}
		return jsonObject{{"secret", name}}
	}
	p.add(path, shape)
	return nil
}

func envValueTo(obj jsonObject) any {
	if s, ok := obj.get("secret"); ok {
		return jsonObject{{"secret", s}}
	}
	v, _ := obj.get("value")
	if v == nil {
		return ""
	}
	return v
}

// resourceLimitFrom: a number -> {value: n}; "unlimited" -> {unlimited: true}.
func resourceLimitFrom(v any, path string, p *problems) any {
	switch x := v.(type) {
	case json.Number:
		return jsonObject{{"value", x}}
	case string:
		if x == "unlimited" {
			return jsonObject{{"unlimited", true}}
		}
	}
	p.add(path, `expected a number or "unlimited"`)
	return nil
}

func resourceLimitTo(obj jsonObject) any {
	if u, ok := obj.get("unlimited"); ok && u == true {
		return "unlimited"
	}
	v, _ := obj.get("value")
	if v == nil {
		return json.Number("0")
	}
	return v
}

var externalVolume = (&v1.ExternalVolume{}).ProtoReflect().Descriptor()

// externalVolumeFrom: the options of a CSI volume (provider "csi") are an
// object of their own (csiOptions); a DVDI volume's are string labels.
func externalVolumeFrom(v any, path string, p *problems) any {
	obj, ok := v.(jsonObject)
	if !ok {
		p.add(path, "expected an object")
		return nil
	}
	provider, _ := obj.get("provider")
	options, hasOptions := obj.get("options")
	csi := provider == "csi" && hasOptions
	rest := make(jsonObject, 0, len(obj))
	for _, m := range obj {
		switch {
		case m.key == "csiOptions":
			// The typed form's own name is not Marathon's.
			p.add(joinField(path, m.key), "unknown field")
		case m.key != "options" || !csi:
			rest = append(rest, m)
		}
	}
	if !csi {
		return objectFromMarathon(rest, externalVolume, path, p)
	}
	out := objectFromMarathon(rest, externalVolume, path, p)
	csiOptions := externalVolume.Fields().ByName("csi_options").Message()
	return append(out, jsonMember{"csiOptions", fromMarathon(options, csiOptions, joinField(path, "options"), p)})
}

func externalVolumeTo(obj jsonObject) any {
	out := make(jsonObject, len(obj))
	for i, m := range obj {
		if m.key == "csiOptions" {
			m.key = "options"
		}
		out[i] = m
	}
	return out
}
