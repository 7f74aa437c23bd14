package scheduler

import (
	"fmt"

	"github.com/berth-dev/berth/fsm"
)

// Identity of instances, tasks and persistence ids (invariant 5). The app
// model's rules live in package appmodel; the id formats the store relies
// on for its lookups, in package fsm (ids.go).

// appSlug is the app id without the leading slash, with '/' replaced by '_':
// the prefix of instance ids, task ids and persistence ids.
func appSlug(appID string) string { return fsm.AppSlug(appID) }

// instanceIDFor builds "<app>.instance-<uuid>".
func instanceIDFor(appID, uuid string) string {
	return appSlug(appID) + ".instance-" + uuid
}

// taskIDFor builds "<app>.instance-<uuid>._app.<incarnation>".
func taskIDFor(instanceID string, incarnation uint32) string {
	return fmt.Sprintf("%s._app.%d", instanceID, incarnation)
}

// instanceIDOfTask returns the instance id a task id was built from by
// taskIDFor, or "" if it is not one of ours.
func instanceIDOfTask(taskID string) string { return fsm.InstanceIDOfTask(taskID) }

// persistenceIDFor builds "<app_id_with_underscores>#<containerPath>#<uuid>".
func persistenceIDFor(appID, containerPath, uuid string) string {
	return appSlug(appID) + "#" + containerPath + "#" + uuid
}
