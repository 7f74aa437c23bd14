package fsm

import "strings"

// Identity of instances and tasks (invariant 5): an instance id is
// "<app slug>.instance-<uuid>", a task id "<instance id>._app.<incarnation>".
// The scheduler builds them; the store uses them to find an app's instances
// and a task's instance through the primary index (schema.go).

// AppSlug is the app id without the leading slash, with '/' replaced by
// '_': the prefix of its instance ids, task ids and persistence ids.
func AppSlug(appID string) string {
	return strings.ReplaceAll(strings.Trim(appID, "/"), "/", "_")
}

// instanceIDPrefix is what the ids of an app's instances start with.
// Different apps can share it ("/a/b" and "/a_b"): a lookup by it filters
// on the app id.
func instanceIDPrefix(appID string) string { return AppSlug(appID) + ".instance-" }

// InstanceIDOfTask returns the instance id a task id was built from
// ("<instance id>._app.<incarnation>"), or "" if it has no such form.
func InstanceIDOfTask(taskID string) string {
	i := strings.LastIndex(taskID, "._app.")
	if i < 0 {
		return ""
	}
	return taskID[:i]
}
