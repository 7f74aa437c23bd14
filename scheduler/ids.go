package scheduler

import (
	"fmt"
	"strings"
)

// Identity of instances, tasks and persistence ids (invariant 5). The app
// model's rules live in package appmodel.

// appSlug is the app id without the leading slash, with '/' replaced by '_':
// the prefix of instance ids, task ids and persistence ids.
func appSlug(appID string) string {
	return strings.ReplaceAll(strings.Trim(appID, "/"), "/", "_")
}

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
func instanceIDOfTask(taskID string) string {
	i := strings.LastIndex(taskID, "._app.")
	if i < 0 {
		return ""
	}
	return taskID[:i]
}

// persistenceIDFor builds "<app_id_with_underscores>#<containerPath>#<uuid>".
func persistenceIDFor(appID, containerPath, uuid string) string {
	return appSlug(appID) + "#" + containerPath + "#" + uuid
}
