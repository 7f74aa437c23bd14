package scheduler

import (
	"math"
	"strconv"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Never two live copies (docs/ARCHITECTURE.md, invariant 7): each berth of
// an instance carries an epoch, recorded in the replicated state
// (Reservation.epoch) before the RESERVE that makes it, and written into
// the labels of its reserved resources, its volumes and its tasks. An
// offer holding a berth of ours whose epoch is not its instance's current
// one (the instance got a new berth since: the old agent was gone, or the
// berth was restored or migrated elsewhere) is garbage: it is destroyed
// and unreserved, never launched on (matchOffer).

// LabelEpoch is the label carrying a berth's epoch on its reserved
// resources, volumes and tasks.
const LabelEpoch = "berth_epoch"

// nextEpoch is the epoch of a new berth for an instance: one more than the
// last one it had (kept in its reservation, even when that is NONE).
func nextEpoch(i *v1.Instance) uint64 {
	return max(i.GetReservation().GetEpoch(), i.GetMaxEpoch()) + 1
}

// abandonBerth forgets an instance's berth (its resources are collected
// when offered, if ever) and keeps the epoch so that the next berth counts
// on from it.
func abandonBerth(e *v1.Instance) {
	e.Reservation = &v1.Reservation{
		InstanceId: e.GetId(),
		State:      v1.ReservationState_RESERVATION_STATE_NONE,
		Epoch:      e.GetReservation().GetEpoch(),
	}
	e.AgentAttributes = nil
}

// epochLabel is the label value of an epoch.
func epochLabel(epoch uint64) string { return strconv.FormatUint(epoch, 10) }

// labelEpoch reads the epoch label of reserved resources or a task: 0 when
// absent (a berth made before epochs), and an epoch no instance has when
// it cannot be read, so that such a berth never matches.
func labelEpoch(ls *mesos.Labels) uint64 {
	v, ok := labelValue(ls, LabelEpoch)
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return math.MaxUint64
	}
	return n
}

// labelTask adds the instance id and its berth's epoch to a task's labels.
func labelTask(ti *mesos.TaskInfo, i *v1.Instance) {
	if ti.Labels == nil {
		ti.Labels = &mesos.Labels{}
	}
	ti.Labels.Labels = append(ti.Labels.Labels, mesos.Label{Key: LabelInstanceID, Value: strPtr(i.GetId())})
	if ep := i.GetReservation().GetEpoch(); ep > 0 {
		ti.Labels.Labels = append(ti.Labels.Labels, mesos.Label{Key: LabelEpoch, Value: strPtr(epochLabel(ep))})
	}
}

// berthLost handles an instance whose berth Mesos says is gone for good
// (TASK_GONE_BY_OPERATOR: its agent was marked gone, or drained with
// mark_gone; its reservations and volumes will never be offered again).
// Marathon abandons the reservation and schedules the instance afresh
// (shouldAbandonReservation; changelog 1.7), and so does Berth: the berth
// is forgotten with its epoch kept, and the next placement makes a new,
// empty berth with the next epoch. Should the old berth ever be offered
// again (the agent's disk came back under some agent id), its epoch no
// longer matches and it is destroyed, never launched on.
//
// This is where replacement from a backup will hook in: an app whose
// policy asks for it restores its latest backup into the new berth
// instead of starting empty.
func (p *planner) berthLost(e *v1.Instance, a *v1.App) {
	p.replaceFromBackup(e, a, "agent gone")
	abandonBerth(e)
	p.changed[e.GetId()] = true
}
