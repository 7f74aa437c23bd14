package rpc

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// rollbackWrite is the write that redeploys a stored version of an app:
// its definition becomes the app's under a new version, rolled out like
// any update. The definition keeps the stored version's
// lastConfigChangeAt, so instances still running that configuration count
// as current and only the others are replaced (Marathon restores the
// stored app as it was: DeploymentPlan.revert, and AppsResource's
// "version" update, api/v2/AppsResource.scala).
func (s *Server) rollbackWrite(requestID, appID string, to *v1.App, force bool, what string) appWrite {
	return appWrite{requestID: requestID, appID: appID, force: force, mustExist: true,
		change: func(old *v1.App, version string) (appChange, error) {
			next := proto.Clone(to).(*v1.App)
			next.Id = appID
			next.Version, next.VersionInfo = old.Version, old.VersionInfo
			if proto.Equal(old, next) {
				return appChange{}, nil // already that definition
			}
			next.Version = proto.String(version)
			next.VersionInfo = &v1.VersionInfo{LastScalingAt: version, LastConfigChangeAt: to.GetVersionInfo().GetLastConfigChangeAt()}
			if next.VersionInfo.LastConfigChangeAt == "" {
				next.VersionInfo.LastConfigChangeAt = to.GetVersion()
			}
			return s.updateChange(old, next, what)
		}}
}

// storedVersion reads one stored version of an app, NotFound naming it.
func storedVersion(st *fsm.Snapshot, appID, version string) (*v1.App, error) {
	app, err := st.AppVersion(appID, version)
	if err != nil {
		return nil, stateError(err)
	}
	if app == nil {
		return nil, notFound("app %s has no version %s", appID, version)
	}
	return app, nil
}

// versionBefore returns the newest stored version of an app older than
// version ("" if there is none: the app was created at version).
func versionBefore(st *fsm.Snapshot, appID, version string) (string, error) {
	vs, err := st.AppVersions(appID) // newest first
	if err != nil {
		return "", stateError(err)
	}
	at, err := time.Parse(time.RFC3339Nano, version)
	if err != nil {
		return "", connect.NewError(connect.CodeInternal, fmt.Errorf("version %q of app %s: %w", version, appID, err))
	}
	for _, v := range vs {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.Before(at) {
			return v, nil
		}
	}
	return "", nil
}

// rollBack cancels a running deployment by returning each affected app to
// the version before the deployment's, as Marathon's DELETE
// /v2/deployments/{id} without force does (api/v2/DeploymentsResource.scala:
// the plan's revert is submitted with force=true, which cancels the
// original). An app the deployment created is removed; an app it removed
// is gone with its definition, so that deployment is only stopped. It
// returns the last rollback deployment (nil if none was needed).
func (s *Server) rollBack(ctx context.Context, requestID string, dep *v1.Deployment) (*v1.Deployment, error) {
	var last *v1.Deployment
	for n, appID := range dep.GetAffectedApps() {
		st := s.store().Snapshot()
		cur, err := st.App(appID)
		if err != nil {
			return nil, stateError(err)
		}
		if cur == nil {
			continue // removed by the deployment: cancelled below
		}
		reqID := requestID
		if n > 0 {
			reqID = fmt.Sprintf("%s/%d", requestID, n)
		}
		prev, err := versionBefore(st, appID, dep.GetVersion())
		if err != nil {
			return nil, err
		}
		var w appWrite
		if prev == "" {
			w = appWrite{requestID: reqID, appID: appID, force: true, mustExist: true,
				change: func(*v1.App, string) (appChange, error) {
					return appChange{command: v1.CommandType_COMMAND_TYPE_APP_DELETE, action: ActionStop, what: "app removed: rollback of deployment " + dep.GetId()}, nil
				}}
		} else {
			to, err := storedVersion(st, appID, prev)
			if err != nil {
				return nil, err
			}
			w = s.rollbackWrite(reqID, appID, to, true, "app rolled back to "+prev+": deployment "+dep.GetId()+" cancelled")
		}
		res, err := s.writeApp(ctx, w)
		if err != nil {
			return nil, err
		}
		if res.deployment != nil {
			last = res.deployment
		}
	}
	return last, nil
}
