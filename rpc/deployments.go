package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

type deploymentService struct{ *Server }

// ListDeployments lists running deployments (all with include_finished),
// oldest first.
func (d *deploymentService) ListDeployments(ctx context.Context, req *connect.Request[v1.ListDeploymentsRequest]) (*connect.Response[v1.ListDeploymentsResponse], error) {
	deps, err := d.store().Snapshot().Deployments()
	if err != nil {
		return nil, stateError(err)
	}
	res := &v1.ListDeploymentsResponse{}
	var byTask map[string]*v1.TaskCheckResults
	asked := false
	for _, dep := range deps {
		if req.Msg.IncludeFinished || dep.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
			res.Deployments = append(res.Deployments, dep)
			if dep.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING && !asked {
				byTask, asked = d.checkResults(ctx, ""), true
			}
		}
	}
	for _, dep := range res.Deployments {
		res.CurrentActions = append(res.CurrentActions, currentActions(dep, byTask))
	}
	return connect.NewResponse(res), nil
}

// GetDeployment returns one deployment.
func (d *deploymentService) GetDeployment(ctx context.Context, req *connect.Request[v1.GetDeploymentRequest]) (*connect.Response[v1.GetDeploymentResponse], error) {
	if req.Msg.Id == "" {
		return nil, invalid("id", "must not be empty")
	}
	dep, err := d.store().Snapshot().Deployment(req.Msg.Id)
	if err != nil {
		return nil, stateError(err)
	}
	if dep == nil {
		return nil, notFound("deployment %s does not exist", req.Msg.Id)
	}
	var byTask map[string]*v1.TaskCheckResults
	if dep.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
		byTask = d.checkResults(ctx, "")
	}
	return connect.NewResponse(&v1.GetDeploymentResponse{Deployment: dep, CurrentActions: currentActions(dep, byTask)}), nil
}

// CancelDeployment cancels a running deployment. Without force it rolls
// the deployment back, as Marathon's DELETE /v2/deployments/{id} does
// (api/v2/DeploymentsResource.scala): a new deployment returns each
// affected app to its previous version (see rollBack) and cancels the
// original in the same write; the response names it. With force the
// deployment stops where it stands. Cancelling a cancelled deployment
// succeeds; cancelling one that succeeded or failed is refused.
func (d *deploymentService) CancelDeployment(ctx context.Context, req *connect.Request[v1.CancelDeploymentRequest]) (*connect.Response[v1.CancelDeploymentResponse], error) {
	msg := req.Msg
	if msg.Id == "" {
		return nil, invalid("id", "must not be empty")
	}
	return onLeaderWrite(ctx, d.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.CancelDeploymentResponse], error) {
		st := d.store().Snapshot()
		if rb, err := alreadyApplied(st, msg.RequestId); err != nil || rb != nil {
			if err != nil {
				return nil, err
			}
			markRetried(ctx) // the rollback of an earlier attempt
			return connect.NewResponse(&v1.CancelDeploymentResponse{DeploymentId: rb.GetId(), Version: rb.GetVersion()}), nil
		}
		dep, err := st.Deployment(msg.Id)
		if err != nil {
			return nil, stateError(err)
		}
		if dep == nil {
			return nil, notFound("deployment %s does not exist", msg.Id)
		}
		switch dep.GetStatus() {
		case v1.DeploymentStatus_DEPLOYMENT_STATUS_CANCELED:
			return connect.NewResponse(&v1.CancelDeploymentResponse{}), nil
		case v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING:
		default:
			return nil, connect.NewError(connect.CodeFailedPrecondition,
				fmt.Errorf("deployment %s has already finished (%s)", msg.Id, dep.GetStatus()))
		}
		res := &v1.CancelDeploymentResponse{}
		if !msg.Force {
			rb, err := d.rollBack(ctx, msg.RequestId, dep)
			if err != nil {
				return nil, err
			}
			res.DeploymentId, res.Version = rb.GetId(), rb.GetVersion()
		}
		// A forced cancel, or a rollback that changed nothing (or only
		// removed apps): the deployment is still running.
		if cur, err := d.store().Snapshot().Deployment(msg.Id); err != nil {
			return nil, stateError(err)
		} else if cur.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
			if _, err := d.apply(ctx, v1.CommandType_COMMAND_TYPE_DEPLOYMENT_CANCEL, &v1.DeploymentCancelCommand{
				RequestId: msg.RequestId, DeploymentIds: []string{msg.Id},
			}); err != nil {
				return nil, err
			}
			d.publishCanceled([]string{msg.Id}, "canceled")
		}
		d.log.Info("deployment canceled", "deployment", msg.Id, "force", msg.Force, "rollback", res.DeploymentId)
		return connect.NewResponse(res), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.CancelDeploymentResponse], error) {
		return pc.deployment.CancelDeployment(ctx, forwarded(ctx, msg))
	})
}

// publishCanceled publishes a deployment_failed event for each cancelled
// deployment: Marathon ends a cancelled or overridden deployment with
// deployment_failed (core/deployment/impl/DeploymentManagerActor.scala,
// DeploymentFailed on cancellation).
func (s *Server) publishCanceled(ids []string, why string) {
	st := s.store().Snapshot()
	for _, id := range ids {
		dep, err := st.Deployment(id)
		if err != nil || dep == nil {
			continue
		}
		s.publish(&v1.Event{Type: "deployment_failed", AppId: firstAffected(dep), Deployment: dep, Message: why})
	}
}

func firstAffected(d *v1.Deployment) string {
	if len(d.GetAffectedApps()) > 0 {
		return d.GetAffectedApps()[0]
	}
	return ""
}
