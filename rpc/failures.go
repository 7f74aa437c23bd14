package rpc

import (
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// lastTaskFailure is an app's newest task failure over its instances
// (Marathon's lastTaskFailure), nil if none failed. Ties go to the
// instance that sorts first, so every server answers the same.
func lastTaskFailure(insts []*v1.Instance) *v1.TaskFailure {
	var last *v1.TaskFailure
	for _, inst := range insts {
		f := inst.GetLastFailure()
		if f == nil {
			continue
		}
		if last == nil || f.GetTimestamp().AsTime().After(last.GetTimestamp().AsTime()) {
			last = f
		}
	}
	return last
}
