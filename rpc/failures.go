package rpc

import (
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// laterFailure is the newer of an app's newest task failure so far (last)
// and one instance's (f): folded over an app's instances, Marathon's
// lastTaskFailure, nil if none failed. Ties go to the instance met first;
// every server meets them in the same order (the store's).
func laterFailure(last, f *v1.TaskFailure) *v1.TaskFailure {
	if f == nil || (last != nil && !f.GetTimestamp().AsTime().After(last.GetTimestamp().AsTime())) {
		return last
	}
	return f
}
