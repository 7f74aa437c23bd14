// Package appmodel owns the rules of a Berth app, a Marathon application
// definition held in a v1.App: parsing Marathon JSON (Parse) and rendering it
// back (Render), Marathon's defaults (Canonicalize), Marathon's validation
// rules (Validate, ValidateUpdate), partial updates (MergePartial), and the
// questions the scheduler asks about an app (IsResident, PersistentVolumes,
// NeedsRelaunch, the effective value of every defaulted field), and which
// fields Berth keeps without acting upon them (Unsupported). The rpc layer
// and the scheduler both call it; neither re-implements a rule.
//
// A new app field is added to proto/berth/v1/app.proto and, if Marathon
// defaults or constrains it, here; nowhere else.
package appmodel

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// MaxBytes is the largest app definition Parse accepts (1 MiB).
const MaxBytes = 1 << 20

// ErrTooLarge is wrapped by Parse's error when the input exceeds MaxBytes.
var ErrTooLarge = errors.New("app definition too large")

// Parse decodes a Marathon app definition (JSON) into an App, including
// Marathon's loose forms (constraints as arrays, the unreachable strategy as
// "disabled" or an object, env values as strings or secret references).
// What does not fit the schema is refused with a *ParseError naming the JSON
// path of each problem in plain words (`instaces: unknown field (did you
// mean "instances"?)`), and malformed JSON with its line and column. Inputs
// over MaxBytes are refused without being decoded. Explicitly empty lists
// and maps ([] or {}) and top-level nulls are recorded in the app's
// empty_fields and null_fields (see ExplicitlyEmpty). The result is not
// canonical: see Canonicalize.
func Parse(data []byte) (*v1.App, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("parse app: %w: %d bytes, limit %d", ErrTooLarge, len(data), MaxBytes)
	}
	tree, err := decodeJSON(data)
	if err != nil {
		return nil, fmt.Errorf("parse app: %w", err)
	}
	var p problems
	typed := fromMarathon(tree, appDescriptor, "", &p)
	if len(p) > 0 {
		return nil, &ParseError{Problems: p}
	}
	app := &v1.App{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(encodeJSON(typed, false), app); err != nil {
		return nil, fmt.Errorf("parse app: %w", err)
	}
	recordPresence(tree, app)
	return app, nil
}

var appDescriptor = (&v1.App{}).ProtoReflect().Descriptor()

// ParseError lists what in an app definition does not fit the schema, one
// problem per JSON path.
type ParseError struct {
	Problems []Violation
}

func (e *ParseError) Error() string {
	if len(e.Problems) == 1 {
		return "parse app: " + e.Problems[0].String()
	}
	var b strings.Builder
	b.WriteString("parse app:")
	for _, v := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(v.String())
	}
	return b.String()
}

// Render encodes an app as Marathon JSON (lowerCamelCase field names,
// Marathon's loose forms), indented for people. Unset fields are omitted;
// explicitly empty lists and maps are written as [] and {}. Parse reads it
// back into the same app.
func Render(app *v1.App) ([]byte, error) {
	b, err := MarshalJSON(app)
	if err != nil {
		return nil, fmt.Errorf("render app %q: %w", app.GetId(), err)
	}
	return b, nil
}

// MarshalJSON encodes any message as indented JSON (protojson's names),
// with the constraints, unreachable strategies and env values of every app
// in it in Marathon's forms: what a reader of Marathon's JSON expects, e.g.
// from a list of apps.
func MarshalJSON(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	tree, err := decodeJSON(b)
	if err != nil {
		return nil, err
	}
	return encodeJSON(toMarathon(tree, m.ProtoReflect().Descriptor()), true), nil
}
