package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The counters, deployments and lastTaskFailure are keys of each app
// object, as in Marathon's /v2/apps; commands print as written.
func TestPrintAppsJSON(t *testing.T) {
	app := &v1.App{Id: "/crash", Cmd: proto.String("echo boom >&2; exit 3"), Instances: proto.Int32(2)}
	sum := &v1.AppSummary{TasksRunning: 1, TasksStaged: 1, Deployments: []string{"d1"},
		LastTaskFailure: &v1.TaskFailure{AppId: "/crash", TaskId: "crash.instance-1._app.1", State: "TASK_FAILED",
			Message: "Command exited with status 3", Host: "h1", Version: "v1",
			Timestamp: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}}
	var buf bytes.Buffer
	if err := printAppsJSON(&buf, []*v1.App{app, {Id: "/quiet"}}, []*v1.AppSummary{sum, {}}, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"echo boom >&2; exit 3"`) {
		t.Errorf("cmd escaped:\n%s", buf.String())
	}
	if out := buf.String(); strings.Index(out, `"cmd"`) > strings.Index(out, `"tasksStaged"`) {
		t.Errorf("the app's own fields should come first:\n%s", out)
	}
	var list struct {
		Apps []struct {
			ID                                                      string
			Cmd                                                     string
			Instances                                               int
			TasksRunning, TasksStaged, TasksHealthy, TasksUnhealthy *int
			Deployments                                             []struct{ ID string }
			LastTaskFailure                                         *struct{ TaskID, State, Message, Timestamp, Host, Version string }
		}
	}
	if err := json.Unmarshal(buf.Bytes(), &list); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	a := list.Apps[0]
	if len(list.Apps) != 2 || a.ID != "/crash" || a.Instances != 2 || a.TasksRunning == nil || *a.TasksRunning != 1 ||
		a.TasksStaged == nil || *a.TasksStaged != 1 || a.TasksHealthy == nil || a.TasksUnhealthy == nil ||
		len(a.Deployments) != 1 || a.Deployments[0].ID != "d1" || a.LastTaskFailure == nil ||
		a.LastTaskFailure.TaskID != "crash.instance-1._app.1" || a.LastTaskFailure.Timestamp != "2026-01-02T03:04:05.000Z" {
		t.Errorf("app list JSON:\n%s", buf.String())
	}
	if q := list.Apps[1]; q.LastTaskFailure != nil || q.TasksRunning == nil || q.Deployments == nil {
		t.Errorf("an app without failures: %+v\n%s", q, buf.String())
	}

	buf.Reset()
	if err := printAppsJSON(&buf, []*v1.App{app}, []*v1.AppSummary{sum}, true); err != nil {
		t.Fatal(err)
	}
	var one map[string]any
	if err := json.Unmarshal(buf.Bytes(), &one); err != nil || one["id"] != "/crash" || one["lastTaskFailure"] == nil {
		t.Errorf("app show JSON (%v):\n%s", err, buf.String())
	}
}
