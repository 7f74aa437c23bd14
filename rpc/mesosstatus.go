package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// MesosStatus answers from the Mesos master's operator API
// (Config.MesosOperator, the client AgentService uses): GET_FRAMEWORKS
// says whether the master holds a subscription of Berth's framework,
// GET_AGENTS lists the agents. Any server can ask; nothing is forwarded.
func (c *clusterService) MesosStatus(ctx context.Context, _ *connect.Request[v1.MesosStatusRequest]) (*connect.Response[v1.MesosStatusResponse], error) {
	if c.cfg.MesosOperator == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("this server knows no Mesos master"))
	}
	fid, err := c.store().Snapshot().FrameworkID()
	if err != nil {
		return nil, stateError(err)
	}
	res := &v1.MesosStatusResponse{Master: c.cfg.MesosMasterURL, FrameworkId: fid}

	fw, err := c.mesosCall(ctx, &master.Call{Type: master.Call_GET_FRAMEWORKS})
	if err != nil {
		return nil, err
	}
	for _, f := range fw.GetGetFrameworks().GetFrameworks() {
		if fid != "" && f.FrameworkInfo.GetID().GetValue() == fid {
			res.FrameworkConnected, res.FrameworkActive = f.Connected, f.Active
		}
	}

	ag, err := c.mesosCall(ctx, &master.Call{Type: master.Call_GET_AGENTS})
	if err != nil {
		return nil, err
	}
	for _, a := range ag.GetGetAgents().GetAgents() {
		total := sumResources(a.TotalResources, nil)
		allocated := sumResources(a.AllocatedResources, nil)
		res.Agents = append(res.Agents, &v1.MesosAgent{
			Id:        a.AgentInfo.GetID().GetValue(),
			Hostname:  a.AgentInfo.Hostname,
			Active:    a.Active,
			Total:     total,
			Allocated: allocated,
			Free:      minus(total, allocated),
			Reserved:  sumResources(a.TotalResources, isReserved),
		})
	}
	return connect.NewResponse(res), nil
}

// sumResources sums resources by kind (ports: how many); keep selects
// which (nil: all).
func sumResources(rs []mesos.Resource, keep func(*mesos.Resource) bool) *v1.MesosResources {
	out := &v1.MesosResources{}
	for i := range rs {
		r := &rs[i]
		if keep != nil && !keep(r) {
			continue
		}
		v := r.GetScalar().GetValue()
		switch r.Name {
		case "cpus":
			out.Cpus += v
		case "mem":
			out.Mem += v
		case "disk":
			out.Disk += v
		case "gpus":
			out.Gpus += v
		case "ports":
			for _, rg := range r.GetRanges().GetRange() {
				if rg.End >= rg.Begin {
					out.Ports += rg.End - rg.Begin + 1
				}
			}
		}
	}
	return out
}

// minus is a - b by kind, never below zero.
func minus(a, b *v1.MesosResources) *v1.MesosResources {
	sub := func(x, y float64) float64 { return max(0, x-y) }
	ports := uint64(0)
	if a.Ports > b.Ports {
		ports = a.Ports - b.Ports
	}
	return &v1.MesosResources{Cpus: sub(a.Cpus, b.Cpus), Mem: sub(a.Mem, b.Mem), Disk: sub(a.Disk, b.Disk), Gpus: sub(a.Gpus, b.Gpus), Ports: ports}
}
