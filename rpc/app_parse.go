// Package rpc is the Connect RPC API of a Berth server: app definition
// parsing, normalization and validation with Marathon's rules, the service
// handlers (apps, tasks, deployments, events, cluster), transparent
// forwarding of writes to the Raft leader, and the HTTP/1.1 + h2c server that
// carries the Connect, gRPC and gRPC-Web protocols on one port.
package rpc

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// MaxAppBytes is the largest app definition ParseApp accepts (1 MiB).
const MaxAppBytes = 1 << 20

// ErrAppTooLarge is wrapped by ParseApp's error when the input exceeds
// MaxAppBytes.
var ErrAppTooLarge = errors.New("app definition too large")

// ParseApp decodes a Marathon app definition (JSON) into an App. Unknown
// fields are refused with an error naming the field, and malformed JSON with
// an error giving the line and column; both come from protojson. Inputs over
// MaxAppBytes are refused without being decoded. The result is not
// normalized: see NormalizeApp.
func ParseApp(data []byte) (*v1.App, error) {
	if len(data) > MaxAppBytes {
		return nil, fmt.Errorf("parse app: %w: %d bytes, limit %d", ErrAppTooLarge, len(data), MaxAppBytes)
	}
	app := &v1.App{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(data, app); err != nil {
		return nil, fmt.Errorf("parse app: %w", err)
	}
	return app, nil
}

// RenderApp encodes an app as Marathon JSON (lowerCamelCase field names),
// indented for people. Unset fields are omitted.
func RenderApp(app *v1.App) ([]byte, error) {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(app)
	if err != nil {
		return nil, fmt.Errorf("render app %q: %w", app.GetId(), err)
	}
	return b, nil
}
