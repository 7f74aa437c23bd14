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
	for _, dep := range deps {
		if req.Msg.IncludeFinished || dep.GetStatus() == v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
			res.Deployments = append(res.Deployments, dep)
		}
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
	return connect.NewResponse(&v1.GetDeploymentResponse{Deployment: dep}), nil
}

// CancelDeployment stops a running deployment where it stands (no
// rollback). Cancelling a cancelled deployment succeeds; cancelling one
// that succeeded or failed is refused.
func (d *deploymentService) CancelDeployment(ctx context.Context, req *connect.Request[v1.CancelDeploymentRequest]) (*connect.Response[v1.CancelDeploymentResponse], error) {
	msg := req.Msg
	if msg.Id == "" {
		return nil, invalid("id", "must not be empty")
	}
	return onLeaderWrite(ctx, d.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.CancelDeploymentResponse], error) {
		dep, err := d.store().Snapshot().Deployment(msg.Id)
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
		if _, err := d.apply(ctx, v1.CommandType_COMMAND_TYPE_DEPLOYMENT_CANCEL, &v1.DeploymentCancelCommand{
			RequestId: msg.RequestId, DeploymentIds: []string{msg.Id},
		}); err != nil {
			return nil, err
		}
		d.log.Info("deployment canceled", "deployment", msg.Id)
		return connect.NewResponse(&v1.CancelDeploymentResponse{}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.CancelDeploymentResponse], error) {
		return pc.deployment.CancelDeployment(ctx, forwarded(ctx, msg))
	})
}
