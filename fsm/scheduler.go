package fsm

import (
	"slices"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func init() {
	registerCommand(v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, "", applyFrameworkIDSet)
	registerCommand(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, "", applySchedulerPlan)
	registerCommand(v1.CommandType_COMMAND_TYPE_DEPLOYMENT_CANCEL, "", applyDeploymentCancel)
}

func applyFrameworkIDSet(tx *txn, _ logEntry, cmd *v1.FrameworkIDSetCommand) (string, error) {
	if cmd.GetFrameworkId() == "" {
		return "", refuse(ErrInvalid, "framework id is empty")
	}
	raw, err := tx.First(tableMeta, "id", metaFrameworkID)
	if err != nil {
		return "", err
	}
	if raw != nil && !cmd.GetOverwrite() {
		if cur := raw.(*v1.MetaRecord).GetValue(); cur != cmd.GetFrameworkId() {
			return "", refuse(ErrConflict, "framework id is already %s, not %s", cur, cmd.GetFrameworkId())
		}
	}
	return "", tx.Insert(tableMeta, &v1.MetaRecord{Key: metaFrameworkID, Value: cmd.GetFrameworkId()})
}

// applySchedulerPlan applies the scheduler's write-ahead record. A plan
// that carries if_leader_term is refused unless the entry was appended in
// that term: a plan decided by the leader of one term must not apply in a
// later one, whose leader may have changed what the plan read. The term is
// the entry's own (raft.Log.Term), the same on every replica.
func applySchedulerPlan(tx *txn, e logEntry, cmd *v1.SchedulerPlanCommand) (string, error) {
	index := e.index
	if t := cmd.GetIfLeaderTerm(); t != 0 && t != e.term {
		return "", refuse(ErrConflict, "scheduler plan decided in term %d reached the log in term %d", t, e.term)
	}
	for _, id := range cmd.GetDeleteInstances() {
		if err := deleteInstance(tx, id); err != nil {
			return "", err
		}
	}
	for _, inst := range cmd.GetPutInstances() {
		if err := putInstance(tx, index, inst); err != nil {
			return "", err
		}
	}
	for _, id := range cmd.GetDeleteDeployments() {
		if _, err := tx.DeleteAll(tableDeployments, "id", id); err != nil {
			return "", err
		}
	}
	for _, d := range cmd.GetPutDeployments() {
		if err := putDeployment(tx, d); err != nil {
			return "", err
		}
	}
	for _, b := range cmd.GetPutBackups() {
		if err := putBackup(tx, b); err != nil {
			return "", err
		}
	}
	return "", nil
}

func applyDeploymentCancel(tx *txn, _ logEntry, cmd *v1.DeploymentCancelCommand) (string, error) {
	for _, id := range cmd.GetDeploymentIds() {
		raw, err := tx.First(tableDeployments, "id", id)
		if err != nil {
			return cmd.GetRequestId(), err
		}
		if raw == nil {
			return cmd.GetRequestId(), refuse(ErrNotFound, "deployment %s does not exist", id)
		}
	}
	return cmd.GetRequestId(), cancelDeployments(tx, cmd.GetDeploymentIds())
}

func putDeployment(tx *txn, d *v1.Deployment) error {
	if d.GetId() == "" {
		return refuse(ErrInvalid, "deployment id is empty")
	}
	// A finished deployment keeps its outcome: a writer that read it while
	// it was running (the scheduler marking it succeeded just as the API
	// cancelled it) must read again.
	raw, err := tx.First(tableDeployments, "id", d.GetId())
	if err != nil {
		return err
	}
	if raw != nil {
		cur := raw.(*v1.Deployment).GetStatus()
		if cur != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING && cur != d.GetStatus() {
			return refuse(ErrConflict, "deployment %s already ended (%s)", d.GetId(), cur)
		}
	}
	return tx.Insert(tableDeployments, d)
}

// cancelDeployments marks running deployments cancelled; finished ones keep
// their outcome.
func cancelDeployments(tx *txn, ids []string) error {
	for _, id := range ids {
		raw, err := tx.First(tableDeployments, "id", id)
		if err != nil {
			return err
		}
		if raw == nil {
			continue
		}
		d := raw.(*v1.Deployment)
		if d.GetStatus() != v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING {
			continue
		}
		d = proto.Clone(d).(*v1.Deployment)
		d.Status = v1.DeploymentStatus_DEPLOYMENT_STATUS_CANCELED
		d.Message = "canceled"
		if err := tx.Insert(tableDeployments, d); err != nil {
			return err
		}
	}
	return nil
}

// putInstance upserts an instance. Its berth's volumes are indexed with it:
// a persistence id belongs to one instance (invariant 2).
//
// The store keeps inst itself (with its modify index set and its strings
// shared): the caller hands over a message nothing else holds, one decoded
// from the log entry or a copy. Cloning it here again allocated a second
// copy of every instance written, on every server (issue 14).
func putInstance(tx *txn, index uint64, inst *v1.Instance) error {
	if inst.GetId() == "" {
		return refuse(ErrInvalid, "instance id is empty")
	}
	if inst.GetAppId() == "" {
		return refuse(ErrInvalid, "instance %s has no app id", inst.GetId())
	}
	cur := tx.inst.get(inst.GetId())
	var stored uint64
	if cur != nil {
		stored = cur.GetModifyIndex()
	}
	if cur == nil && inst.GetModifyIndex() != 0 {
		return refuse(ErrConflict, "instance %s was deleted meanwhile", inst.GetId())
	}
	if cur != nil && stored != inst.GetModifyIndex() {
		return refuse(ErrConflict, "instance %s changed meanwhile (written at index %d, this write read index %d)",
			inst.GetId(), stored, inst.GetModifyIndex())
	}
	inst.ModifyIndex = index
	compactInstance(inst)
	if t := inst.GetTask(); t != nil && t.GetId() != "" {
		if owner := instanceByTask(tx.inst, t.GetId()); owner != nil && owner.GetId() != inst.GetId() {
			return refuse(ErrConflict, "task %s already belongs to instance %s", t.GetId(), owner.GetId())
		}
	}
	vols := activeReservation(inst).GetVolumes()
	for i, v := range vols {
		pid := v.GetPersistenceId()
		if pid == "" {
			return refuse(ErrInvalid, "instance %s has a volume without persistence id", inst.GetId())
		}
		owner := inst.GetId()
		if !slices.ContainsFunc(vols[:i], func(w *v1.LocalVolume) bool { return w.GetPersistenceId() == pid }) {
			held := tx.inst.byVolumeID(pid)
			if held == nil {
				continue
			}
			if owner = held.GetId(); owner == inst.GetId() {
				continue
			}
		}
		return refuse(ErrConflict, "volume %s already belongs to instance %s", pid, owner)
	}
	tx.inst.put(inst)
	return nil
}

func deleteInstance(tx *txn, id string) error {
	tx.inst.delete(id)
	return nil
}
