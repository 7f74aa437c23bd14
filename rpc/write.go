package rpc

import (
	"context"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// onLeaderWrite is onLeader for a write: the request gets an id first (if
// the client sent none), so that a write forwarded and retried after an
// unknown outcome applies once.
func onLeaderWrite[Res any](ctx context.Context, s *Server, hdr http.Header, requestID *string,
	local func(context.Context) (*connect.Response[Res], error),
	remote func(context.Context, *peerClients) (*connect.Response[Res], error),
) (*connect.Response[Res], error) {
	s.ensureRequestID(requestID)
	return onLeader(ctx, s, hdr, local, remote)
}

// appWrite is one change of one app, for writeApp.
type appWrite struct {
	requestID string
	appID     string
	// force cancels the app's running deployments in the same write;
	// without it, a running deployment refuses the change.
	force bool
	// mustExist refuses the write (NotFound) when the app does not exist.
	mustExist bool
	// change decides the change from the stored app (nil if there is none)
	// and the version the change gets. A zero appChange (no command) means
	// nothing is to change.
	change func(old *v1.App, version string) (appChange, error)
}

// appChange is what one write does to an app.
type appChange struct {
	// command is COMMAND_TYPE_APP_CREATE, _UPDATE or _DELETE.
	command v1.CommandType
	// app is the new definition (create and update).
	app *v1.App
	// action names the deployment that rolls the change out.
	action string
	// putInstances are instance changes committed in the same entry.
	putInstances []*v1.Instance
	// what describes the change for the event and the log ("app created").
	what string
}

// appWritten is the outcome of writeApp.
type appWritten struct {
	// app is the stored app after the write (nil after a delete).
	app *v1.App
	// deployment is the write's deployment; nil when nothing changed.
	deployment *v1.Deployment
	// retried is true when an earlier attempt of the same request was
	// applied: nothing was written now.
	retried bool
}

// writeApp is the one path of app writes on the leader. It answers a
// retry of an applied request (same request id) with what the first
// attempt created; refuses a change of a missing app (mustExist); decides
// the change; refuses it while a deployment of the
// app runs, unless force, which cancels those deployments in the same
// entry; gives it a new version and a deployment; commits it; and
// publishes an api_post_event.
func (s *Server) writeApp(ctx context.Context, w appWrite) (appWritten, error) {
	// The change is decided from this server's store: a leader new in its
	// term must first have applied every entry committed before (once per
	// term), or it could answer NotFound for an app whose create was
	// acknowledged, or "nothing to change" for a change a committed entry
	// undid.
	if err := s.caughtUp(ctx); err != nil {
		return appWritten{}, err
	}
	st := s.store().Snapshot()
	d, err := alreadyApplied(st, w.requestID)
	if err != nil {
		return appWritten{}, err
	}
	old, err := st.App(w.appID)
	if err != nil {
		return appWritten{}, stateError(err)
	}
	if d != nil {
		markRetried(ctx)
		return appWritten{app: old, deployment: d, retried: true}, nil
	}
	if old == nil && w.mustExist {
		return appWritten{}, notFound("app %s does not exist", w.appID)
	}
	ver, now := s.newVersion(old.GetVersion())
	c, err := w.change(old, ver)
	if err != nil {
		return appWritten{}, err
	}
	if c.command == v1.CommandType_COMMAND_TYPE_UNSPECIFIED {
		return appWritten{app: old}, nil
	}
	if err := s.checkCapacity(st, old, c); err != nil {
		return appWritten{}, err
	}
	var cancel []string
	if old != nil && c.command != v1.CommandType_COMMAND_TYPE_APP_CREATE {
		// (A create of an existing app is refused by the FSM.)
		if cancel, err = checkLock(st, w.appID, w.force); err != nil {
			return appWritten{}, err
		}
	}
	dep := newDeployment(deploymentIDFor(w.requestID), ver, w.appID, c.action, now)
	var cmd proto.Message
	switch c.command {
	case v1.CommandType_COMMAND_TYPE_APP_CREATE:
		cmd = &v1.AppCreateCommand{RequestId: w.requestID, App: c.app, Deployment: dep, PutInstances: c.putInstances}
	case v1.CommandType_COMMAND_TYPE_APP_UPDATE:
		cmd = &v1.AppUpdateCommand{
			RequestId: w.requestID, App: c.app, ExpectedVersion: old.GetVersion(),
			Deployment: dep, PutInstances: c.putInstances, CancelDeployments: cancel,
		}
	case v1.CommandType_COMMAND_TYPE_APP_DELETE:
		cmd = &v1.AppDeleteCommand{
			RequestId: w.requestID, AppId: w.appID,
			Deployment: dep, PutInstances: c.putInstances, CancelDeployments: cancel,
		}
	default:
		return appWritten{}, connect.NewError(connect.CodeInternal, fmt.Errorf("write of app %s: %s is not an app command", w.appID, c.command))
	}
	out, err := s.apply(ctx, c.command, cmd)
	if err != nil {
		return appWritten{}, err
	}
	res := appWritten{app: c.app, deployment: dep, retried: out.Deduplicated}
	if out.Deduplicated {
		// A retry of a write applied before (its deployment already
		// gone): answer with what is stored.
		stored, err := s.store().Snapshot().App(w.appID)
		if err != nil {
			return appWritten{}, stateError(err)
		}
		if stored != nil {
			res.app = stored
		}
	} else {
		s.publishCanceled(cancel, "canceled by deployment "+dep.GetId())
		s.publish(&v1.Event{Type: EventAPIPost, AppId: w.appID, Message: c.what, Deployment: dep, App: c.app})
	}
	s.log.Info(c.what, "request_id", w.requestID, "app", w.appID, "version", ver, "deployment", dep.GetId(), "action", c.action, "canceled", cancel)
	return res, nil
}

// checkCapacity refuses a create beyond Config.MaxApps, and a create or
// update that takes the instances of all apps beyond Config.MaxInstances.
// The store keeps both totals, so the check does not read every app.
func (s *Server) checkCapacity(st *fsm.Snapshot, old *v1.App, c appChange) error {
	if c.app == nil || (c.command == v1.CommandType_COMMAND_TYPE_APP_UPDATE && c.app.GetInstances() <= old.GetInstances()) {
		return nil // a delete, or no growth
	}
	totals, err := st.AppTotals()
	if err != nil {
		return stateError(err)
	}
	if c.command == v1.CommandType_COMMAND_TYPE_APP_CREATE && totals.Apps >= s.cfg.MaxApps {
		return connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("the cluster holds %d apps, its maximum (the servers' --max-apps); remove an app first", totals.Apps))
	}
	total := totals.Instances + int64(c.app.GetInstances()) - int64(old.GetInstances())
	if total > int64(s.cfg.MaxInstances) {
		return connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("instances: this change would give the cluster's apps %d instances together, beyond its maximum of %d (the servers' --max-instances)", total, s.cfg.MaxInstances))
	}
	return nil
}
