package rpc

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// ParseApp and RenderApp convert between Marathon JSON and the App message
// with the app model's own Parse and Render, so that a client without the
// model (the web UI) reads and writes Marathon's forms exactly as the CLI
// does. They read no state, so they are answered by whichever server gets
// them.

// ParseApp reads a Marathon app definition into an App.
func (a *appService) ParseApp(_ context.Context, req *connect.Request[v1.ParseAppRequest]) (*connect.Response[v1.ParseAppResponse], error) {
	app, err := appmodel.Parse([]byte(req.Msg.GetJson()))
	if err != nil {
		var perr *appmodel.ParseError
		if errors.As(err, &perr) {
			return nil, ViolationsError("app definition", perr.Problems)
		}
		// Malformed JSON (with its line and column) or an oversized input:
		// the whole text is at fault.
		return nil, invalid("json", err.Error())
	}
	return connect.NewResponse(&v1.ParseAppResponse{App: app}), nil
}

// RenderApp writes an App as Marathon JSON.
func (a *appService) RenderApp(_ context.Context, req *connect.Request[v1.RenderAppRequest]) (*connect.Response[v1.RenderAppResponse], error) {
	if req.Msg.GetApp() == nil {
		return nil, invalid("app", "must be set")
	}
	b, err := appmodel.Render(req.Msg.GetApp())
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("app: %w", err))
	}
	return connect.NewResponse(&v1.RenderAppResponse{Json: string(b)}), nil
}
