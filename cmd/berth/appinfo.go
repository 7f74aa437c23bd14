package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/appmodel"
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

// printAppsJSON prints {"apps": [...]} (or, with one=true, the one app
// object, as `app show -o json` always has), each app rendered by
// appmodel.AppInfoJSON.
func printAppsJSON(w io.Writer, apps []*v1.App, summaries []*v1.AppSummary, one bool) error {
	infos := make([][]byte, 0, len(apps))
	for i, a := range apps {
		var s *v1.AppSummary
		if i < len(summaries) {
			s = summaries[i]
		}
		info, err := appmodel.AppInfoJSON(a, s)
		if err != nil {
			return fmt.Errorf("render app %s: %w", a.GetId(), err)
		}
		infos = append(infos, info)
	}
	var out []byte
	if one && len(infos) == 1 {
		out = infos[0]
	} else {
		out = append([]byte(`{"apps":[`), bytes.Join(infos, []byte(","))...)
		out = append(out, "]}"...)
	}
	// Indent (not Marshal) keeps <, > and & in commands as they are.
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "  "); err != nil {
		return fmt.Errorf("render apps: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
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

// printFailureHints tells, for each app whose last task failed, how it
// failed and how to read that task's stderr: what a user needs when a
// deployment fails because its tasks keep failing.
func printFailureHints(ctx context.Context, out io.Writer, cl *clients, appIDs []string) {
	for _, id := range appIDs {
		res, err := cl.apps.GetApp(ctx, connect.NewRequest(&v1.GetAppRequest{Id: id}))
		if err != nil {
			continue // the app may be gone (a removal); the error says enough
		}
		f := res.Msg.GetSummary().GetLastTaskFailure()
		if f == nil {
			continue
		}
		fmt.Fprintf(out, "last task failure of %s: %s %s (task %s on %s)\n  its output: berth task logs %s --stderr\n",
			id, f.GetState(), f.GetMessage(), f.GetTaskId(), orNA(f.GetHost()), f.GetTaskId())
	}
}
