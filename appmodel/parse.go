// Package appmodel owns the rules of a Berth app, a Marathon application
// definition held in a v1.App: parsing Marathon JSON (Parse) and rendering it
// back (Render), Marathon's defaults (Canonicalize), Marathon's validation
// rules (Validate, ValidateUpdate), partial updates (MergePartial), and the
// questions the scheduler asks about an app (IsResident, PersistentVolumes,
// NeedsRelaunch, the effective value of every defaulted field). The rpc
// layer and the scheduler both call it; neither re-implements a rule.
//
// A new app field is added to proto/berth/v1/app.proto and, if Marathon
// defaults or constrains it, here; nowhere else.
package appmodel

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// MaxBytes is the largest app definition Parse accepts (1 MiB).
const MaxBytes = 1 << 20

// ErrTooLarge is wrapped by Parse's error when the input exceeds MaxBytes.
var ErrTooLarge = errors.New("app definition too large")

// Parse decodes a Marathon app definition (JSON) into an App. Unknown
// fields are refused with an error naming the field, and malformed JSON with
// an error giving the line and column. Inputs over MaxBytes are refused
// without being decoded. The result is not canonical: see Canonicalize.
func Parse(data []byte) (*v1.App, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("parse app: %w: %d bytes, limit %d", ErrTooLarge, len(data), MaxBytes)
	}
	app := &v1.App{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(data, app); err != nil {
		return nil, fmt.Errorf("parse app: %w", err)
	}
	return app, nil
}

// Render encodes an app as Marathon JSON (lowerCamelCase field names),
// indented for people. Unset fields are omitted.
func Render(app *v1.App) ([]byte, error) {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(app)
	if err != nil {
		return nil, fmt.Errorf("render app %q: %w", app.GetId(), err)
	}
	return b, nil
}
