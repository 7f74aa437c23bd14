package rpc

import (
	"context"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/mesos/mesos-go/api/v1/lib/master"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Moves of instances to new berths on other agents (docs/MIGRATION.md):
// the RPCs only commit a PENDING record; the leader's scheduler drives
// the move (scheduler/move.go).

// agentNamed resolves an agent id or hostname to the agent's id with the
// master's agent list; without a Mesos operator client the name is kept
// as given (the scheduler matches an offer's agent id or hostname).
func (s *Server) agentNamed(ctx context.Context, name string) (string, error) {
	if s.cfg.MesosOperator == nil {
		return name, nil
	}
	res, err := s.mesosCall(ctx, &master.Call{Type: master.Call_GET_AGENTS})
	if err != nil {
		return "", err
	}
	var ids, names []string
	for _, a := range res.GetGetAgents().GetAgents() {
		id := a.AgentInfo.GetID().GetValue()
		names = append(names, id+" ("+a.AgentInfo.Hostname+")")
		if id == name {
			return id, nil
		}
		if a.AgentInfo.Hostname == name {
			ids = append(ids, id)
		}
	}
	switch len(ids) {
	case 1:
		return ids[0], nil
	case 0:
		return "", invalid("to_agent", fmt.Sprintf("no agent has id or hostname %q (agents: %s)", name, strings.Join(names, ", ")))
	}
	return "", invalid("to_agent", fmt.Sprintf("hostname %q names %d agents (%s): give the agent id", name, len(ids), strings.Join(ids, ", ")))
}

// stillMoving refuses a new move while the instance's last one runs (its
// old berth is still kept).
func stillMoving(inst *v1.Instance) error {
	if m := inst.GetMove(); m != nil && m.GetStep() != "done" && m.GetStep() != "failed" {
		return failedPrecondition("instance %s is moving (%s %s, %s): wait for it to end", inst.GetId(), m.GetKind(), m.GetId(), m.GetStep())
	}
	return nil
}

// movable returns the instance and its app when the instance can move.
func movable(st *fsm.Snapshot, instanceID string, needBerth bool) (*v1.Instance, *v1.App, error) {
	if instanceID == "" {
		return nil, nil, invalid("instance_id", "must not be empty")
	}
	inst, err := st.Instance(instanceID)
	if err != nil {
		return nil, nil, stateError(err)
	}
	if inst == nil {
		return nil, nil, notFound("instance %s does not exist", instanceID)
	}
	app, err := st.App(inst.GetAppId())
	if err != nil {
		return nil, nil, stateError(err)
	}
	if app == nil || !appmodel.IsResident(app) {
		return nil, nil, failedPrecondition("instance %s has no persistent volume to move", instanceID)
	}
	if inst.GetGoal() != v1.Goal_GOAL_RUNNING {
		return nil, nil, failedPrecondition("instance %s has goal %s; only a running instance moves", instanceID, inst.GetGoal())
	}
	if err := stillMoving(inst); err != nil {
		return nil, nil, err
	}
	if needBerth && inst.GetReservation().GetState() != v1.ReservationState_RESERVATION_STATE_RESERVED {
		return nil, nil, failedPrecondition("instance %s has no berth to move (reservation %s)", instanceID, inst.GetReservation().GetState())
	}
	return inst, app, nil
}

// MigrateInstance commits the copy step of a migration: a backup of the
// berth to the app's backup target (or the server's migration target)
// whose success starts the restore onto a new berth.
func (b *backupService) MigrateInstance(ctx context.Context, req *connect.Request[v1.MigrateInstanceRequest]) (*connect.Response[v1.MigrateInstanceResponse], error) {
	msg := req.Msg
	if msg.InstanceId == "" {
		return nil, invalid("instance_id", "must not be empty")
	}
	return onLeaderWrite(ctx, b.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.MigrateInstanceResponse], error) {
		st := b.store().Snapshot()
		id := backupIDFor(msg.RequestId, "migrate")
		if prev, err := st.Backup(id); err != nil {
			return nil, stateError(err)
		} else if prev != nil {
			return connect.NewResponse(&v1.MigrateInstanceResponse{Backup: prev}), nil
		}
		inst, app, err := movable(st, msg.InstanceId, true)
		if err != nil {
			return nil, err
		}
		r := appmodel.NewMigration(app, inst, id, b.cfg.MigrationTarget, time.Now())
		if r == nil {
			return nil, failedPrecondition("app %s has no backup target and the server no --migration-target to copy the volume through", app.GetId())
		}
		if msg.ToAgent != "" {
			if r.ToAgent, err = b.agentNamed(ctx, msg.ToAgent); err != nil {
				return nil, err
			}
			if r.ToAgent == r.FromAgent {
				return nil, invalid("to_agent", fmt.Sprintf("%q already holds the instance's berth", msg.ToAgent))
			}
		}
		if _, err := b.apply(ctx, v1.CommandType_COMMAND_TYPE_BACKUP_PUT, &v1.BackupPutCommand{RequestId: msg.RequestId, Backups: []*v1.Backup{r}}); err != nil {
			return nil, err
		}
		b.publish(&v1.Event{Type: "backup_event", AppId: app.GetId(), InstanceId: inst.GetId(), Message: "migration requested", Backup: r,
			Timestamp: time.Now().UTC().Format(time.RFC3339Nano)})
		return connect.NewResponse(&v1.MigrateInstanceResponse{Backup: r}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.MigrateInstanceResponse], error) {
		return b.backupClient(pc.addr).MigrateInstance(ctx, forwarded(ctx, msg))
	})
}

// ReplaceInstance commits a restore of a backup onto a new berth for an
// instance whose berth is lost or unreachable; the old berth, should it
// come back, is destroyed (its epoch is no longer the instance's).
func (b *backupService) ReplaceInstance(ctx context.Context, req *connect.Request[v1.ReplaceInstanceRequest]) (*connect.Response[v1.ReplaceInstanceResponse], error) {
	msg := req.Msg
	if msg.InstanceId == "" {
		return nil, invalid("instance_id", "must not be empty")
	}
	return onLeaderWrite(ctx, b.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.ReplaceInstanceResponse], error) {
		st := b.store().Snapshot()
		id := backupIDFor(msg.RequestId, "replace")
		if prev, err := st.Backup(id); err != nil {
			return nil, stateError(err)
		} else if prev != nil {
			return connect.NewResponse(&v1.ReplaceInstanceResponse{Restore: prev}), nil
		}
		inst, app, err := movable(st, msg.InstanceId, false)
		if err != nil {
			return nil, err
		}
		var src *v1.Backup
		if msg.BackupId == "" || msg.BackupId == "latest" {
			bs, err := st.BackupsByInstance(inst.GetId())
			if err != nil {
				return nil, stateError(err)
			}
			for _, c := range bs { // newest first
				if c.GetKind() == v1.BackupKind_BACKUP_KIND_BACKUP && c.GetState() == v1.BackupState_BACKUP_STATE_SUCCEEDED {
					src = c
					break
				}
			}
			if src == nil {
				return nil, failedPrecondition("backup_id: instance %s has no succeeded backup", inst.GetId())
			}
		} else if src, err = b.backupRecord(st, msg.BackupId); err != nil {
			return nil, err
		}
		if src.GetKind() != v1.BackupKind_BACKUP_KIND_BACKUP || src.GetState() != v1.BackupState_BACKUP_STATE_SUCCEEDED {
			return nil, failedPrecondition("backup_id: %s %s is %s; only a succeeded backup can be restored", kindWord(src), src.GetId(), src.GetState())
		}
		if src.GetAppId() != app.GetId() {
			return nil, failedPrecondition("backup_id: backup %s belongs to app %s, not %s", src.GetId(), src.GetAppId(), app.GetId())
		}
		r := appmodel.NewRestore(app, inst, src, id, time.Now())
		r.Move, r.Replace, r.MigrationId = true, true, id
		r.FromAgent = inst.GetReservation().GetAgentId()
		if msg.ToAgent != "" {
			if r.ToAgent, err = b.agentNamed(ctx, msg.ToAgent); err != nil {
				return nil, err
			}
		}
		if _, err := b.apply(ctx, v1.CommandType_COMMAND_TYPE_BACKUP_PUT, &v1.BackupPutCommand{RequestId: msg.RequestId, Backups: []*v1.Backup{r}}); err != nil {
			return nil, err
		}
		b.publish(&v1.Event{Type: "backup_event", AppId: app.GetId(), InstanceId: inst.GetId(),
			Message: "replacement from backup " + src.GetId() + " requested", Backup: r, Timestamp: time.Now().UTC().Format(time.RFC3339Nano)})
		return connect.NewResponse(&v1.ReplaceInstanceResponse{Restore: r}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.ReplaceInstanceResponse], error) {
		return b.backupClient(pc.addr).ReplaceInstance(ctx, forwarded(ctx, msg))
	})
}
