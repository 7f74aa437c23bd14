package rpc

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// ResetDelay clears the launch backoff of an app's instances (their
// launch-not-before and failure count), as Marathon's DELETE
// /v2/queue/{id}/delay resets the app's rate limiter
// (api/v2/QueueResource.scala resetDelay → LaunchQueue.resetDelay): an
// instance waiting for its delay launches at the next fitting offer.
func (a *appService) ResetDelay(ctx context.Context, req *connect.Request[v1.ResetDelayRequest]) (*connect.Response[v1.ResetDelayResponse], error) {
	msg := req.Msg
	id := appmodel.NormalizeID(msg.Id)
	if id == "" {
		return nil, invalid("id", "must not be empty")
	}
	return onLeaderWrite(ctx, a.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.ResetDelayResponse], error) {
		n, err := retryStale(func() (int32, error) { return a.resetDelay(ctx, id) })
		if err != nil {
			return nil, err
		}
		if n > 0 {
			a.log.Info("launch delay reset", "app", id, "instances", n)
		}
		return connect.NewResponse(&v1.ResetDelayResponse{InstancesReset: n}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.ResetDelayResponse], error) {
		return pc.app.ResetDelay(ctx, forwarded(ctx, msg))
	})
}

// resetDelay commits, from the current state, the app's instances without
// their backoff; it returns how many had one.
func (a *appService) resetDelay(ctx context.Context, appID string) (int32, error) {
	st := a.store().Snapshot()
	if app, err := st.App(appID); err != nil {
		return 0, stateError(err)
	} else if app == nil {
		return 0, notFound("app %s does not exist", appID)
	}
	insts, err := st.InstancesByApp(appID)
	if err != nil {
		return 0, stateError(err)
	}
	var put []*v1.Instance
	for _, inst := range insts {
		if inst.GetLaunchNotBefore() == nil && inst.GetConsecutiveFailures() == 0 {
			continue
		}
		next := proto.Clone(inst).(*v1.Instance)
		next.LaunchNotBefore, next.ConsecutiveFailures = nil, 0
		put = append(put, next)
	}
	if len(put) == 0 {
		return 0, nil
	}
	if _, err := a.apply(ctx, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{PutInstances: put}); err != nil {
		return 0, err
	}
	return int32(len(put)), nil
}
