package rpc

import (
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// ViolationsError turns validation violations into a Connect InvalidArgument
// error. The message lists one "path: description" line per violation, and a
// google.rpc.BadRequest detail carries one FieldViolation per violation for
// programs. subject names what was refused (e.g. "app /db/pg").
func ViolationsError(subject string, vs []appmodel.Violation) *connect.Error {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid %s:", subject)
	br := &errdetails.BadRequest{}
	for _, v := range vs {
		b.WriteString("\n  ")
		b.WriteString(v.String())
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       v.Field,
			Description: v.Description,
		})
	}
	cerr := connect.NewError(connect.CodeInvalidArgument, errors.New(b.String()))
	if d, err := connect.NewErrorDetail(br); err == nil {
		cerr.AddDetail(d)
	}
	return cerr
}

// ViolationsFromError extracts the field violations of an InvalidArgument
// error built by ViolationsError (for clients such as the CLI). It returns
// nil if err carries none.
func ViolationsFromError(err error) []appmodel.Violation {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return nil
	}
	var out []appmodel.Violation
	for _, d := range cerr.Details() {
		msg, derr := d.Value()
		if derr != nil {
			continue
		}
		if br, ok := msg.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				out = append(out, appmodel.Violation{Field: fv.GetField(), Description: fv.GetDescription()})
			}
		}
	}
	return out
}

// prefixed puts "what: " before err's message unless it starts with that
// already: the cluster layer names most of its operations itself, and a
// message must not say "restore snapshot: restore snapshot: ...".
func prefixed(what string, err error) error {
	if strings.HasPrefix(err.Error(), what+":") || strings.HasPrefix(err.Error(), what+" ") {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// stateError reports a failed read of the local state store (a broken
// index, never a client's fault) as Internal.
func stateError(err error) *connect.Error {
	return connect.NewError(connect.CodeInternal, fmt.Errorf("read state: %w", err))
}

// existingApp reads an app from st: a read failure is Internal, a missing
// app NotFound naming it.
func existingApp(st *fsm.Snapshot, id string) (*v1.App, error) {
	app, err := st.App(id)
	if err != nil {
		return nil, stateError(err)
	}
	if app == nil {
		return nil, notFound("app %s does not exist", id)
	}
	return app, nil
}
