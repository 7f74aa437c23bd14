package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// portList renders ports as "31000,31001".
func portList(ports []uint32) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.FormatUint(uint64(p), 10)
	}
	return strings.Join(s, ",")
}

// appInfoJSON renders an app as Marathon's /v2/apps does: the app
// definition with its counters (tasksStaged, tasksRunning, tasksHealthy,
// tasksUnhealthy), its running deployments and, if a task failed, its
// lastTaskFailure, all inside the app object.
func appInfoJSON(a *v1.App, s *v1.AppSummary) (map[string]json.RawMessage, error) {
	b, err := protojson.Marshal(a)
	if err != nil {
		return nil, err
	}
	obj := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, err
	}
	set := func(key string, v any) error {
		raw, err := json.Marshal(v)
		obj[key] = raw
		return err
	}
	deployments := []map[string]string{}
	for _, id := range s.GetDeployments() {
		deployments = append(deployments, map[string]string{"id": id})
	}
	for _, kv := range []struct {
		key string
		v   any
	}{
		{"tasksStaged", s.GetTasksStaged()},
		{"tasksRunning", s.GetTasksRunning()},
		{"tasksHealthy", s.GetTasksHealthy()},
		{"tasksUnhealthy", s.GetTasksUnhealthy()},
		{"deployments", deployments},
	} {
		if err := set(kv.key, kv.v); err != nil {
			return nil, err
		}
	}
	if f := s.GetLastTaskFailure(); f != nil {
		fb, err := protojson.Marshal(f)
		if err != nil {
			return nil, err
		}
		obj["lastTaskFailure"] = fb
	}
	return obj, nil
}

// printAppsJSON prints {"apps": [...]} (or, with one=true, the one app
// object, as `app show -o json` always has), each app rendered by
// appInfoJSON.
func printAppsJSON(w io.Writer, apps []*v1.App, summaries []*v1.AppSummary, one bool) error {
	infos := make([]map[string]json.RawMessage, 0, len(apps))
	for i, a := range apps {
		var s *v1.AppSummary
		if i < len(summaries) {
			s = summaries[i]
		}
		info, err := appInfoJSON(a, s)
		if err != nil {
			return fmt.Errorf("render app %s: %w", a.GetId(), err)
		}
		infos = append(infos, info)
	}
	var out any = map[string]any{"apps": infos}
	if one && len(infos) == 1 {
		out = infos[0]
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // commands contain >, & and < as they are
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// lastFailureRows are the app show rows of a lastTaskFailure.
func lastFailureRows(f *v1.TaskFailure) [][]string {
	if f == nil {
		return [][]string{{"LAST FAILURE", "N/A"}}
	}
	at := ""
	if f.GetTimestamp() != nil {
		at = f.GetTimestamp().AsTime().UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return [][]string{
		{"LAST FAILURE", fmt.Sprintf("%s at %s on %s", f.GetState(), orNA(at), orNA(f.GetHost()))},
		{"LAST FAILURE MESSAGE", orNA(f.GetMessage())},
		{"LAST FAILURE TASK", orNA(f.GetTaskId())},
		{"LAST FAILURE VERSION", orNA(f.GetVersion())},
		{"LAST FAILURE SANDBOX", orNA(f.GetSandbox())},
	}
}
