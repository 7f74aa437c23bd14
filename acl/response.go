package acl

import (
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// RedactedValue replaces env values that a token may not see.
const RedactedValue = "<redacted>"

// FieldValue returns the string at a dotted path of proto field names in
// msg ("app.id"), or "" when msg is nil or a step is missing or not a
// message or string.
func FieldValue(msg proto.Message, path string) string {
	if msg == nil {
		return ""
	}
	m := msg.ProtoReflect()
	if !m.IsValid() {
		return ""
	}
	steps := strings.Split(path, ".")
	for i, name := range steps {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil || fd.IsList() || fd.IsMap() {
			return ""
		}
		if i == len(steps)-1 {
			if fd.Kind() != protoreflect.StringKind {
				return ""
			}
			return m.Get(fd).String()
		}
		if fd.Message() == nil || !m.Has(fd) {
			return ""
		}
		m = m.Get(fd).Message()
	}
	return ""
}

// RedactEnv returns msg with the plain env values of every app in it
// replaced by RedactedValue (references to secrets stay: they are names).
// msg itself is not changed (it may be shared with the state store); a
// message without env values is returned as is.
func RedactEnv(msg proto.Message) proto.Message {
	if !hasEnvValue(msg.ProtoReflect()) {
		return msg
	}
	out := proto.Clone(msg)
	walkApps(out.ProtoReflect(), func(app *v1.App) {
		for _, env := range appEnvs(app) {
			for _, v := range env {
				if _, plain := v.GetKind().(*v1.EnvValue_Value); plain {
					v.Kind = &v1.EnvValue_Value{Value: RedactedValue}
				}
			}
		}
	})
	return out
}

func hasEnvValue(m protoreflect.Message) bool {
	found := false
	walkApps(m, func(app *v1.App) {
		for _, env := range appEnvs(app) {
			for _, v := range env {
				if _, plain := v.GetKind().(*v1.EnvValue_Value); plain {
					found = true
				}
			}
		}
	})
	return found
}

// appEnvs are an app's environments: its tasks' and its backup tasks'
// (which typically hold the target's credentials).
func appEnvs(app *v1.App) []map[string]*v1.EnvValue {
	return []map[string]*v1.EnvValue{app.GetEnv(), app.GetBackup().GetEnv()}
}

var appDescriptor = (&v1.App{}).ProtoReflect().Descriptor()

// walkApps calls fn for every App message inside m (m included).
func walkApps(m protoreflect.Message, fn func(*v1.App)) {
	if m.Descriptor() == appDescriptor {
		if app, ok := m.Interface().(*v1.App); ok {
			fn(app)
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkApps(l.Get(i).Message(), fn)
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walkApps(mv.Message(), fn)
					return true
				})
			}
		default:
			walkApps(v.Message(), fn)
		}
		return true
	})
}

// FilterApps returns a list response (apps, tasks, deployments) or an event
// without what lies outside the token's app prefix; nil for an event the
// token may not see. Other messages, and every message for a token without
// prefix, are returned as they are. msg itself is not changed.
func FilterApps(tok *v1.ACLToken, msg proto.Message) proto.Message {
	if tok.GetAppPrefix() == "" {
		return msg
	}
	switch m := msg.(type) {
	case *v1.ListAppsResponse:
		out := &v1.ListAppsResponse{}
		for i, app := range m.GetApps() {
			if !InPrefix(tok, app.GetId()) {
				continue
			}
			out.Apps = append(out.Apps, app)
			if i < len(m.GetSummaries()) {
				out.Summaries = append(out.Summaries, m.GetSummaries()[i])
			}
		}
		return out
	case *v1.ListTasksResponse:
		out := &v1.ListTasksResponse{}
		for _, t := range m.GetTasks() {
			if InPrefix(tok, t.GetAppId()) {
				out.Tasks = append(out.Tasks, t)
			}
		}
		return out
	case *v1.ListDeploymentsResponse:
		out := &v1.ListDeploymentsResponse{}
		for i, d := range m.GetDeployments() {
			if allInPrefix(tok, d.GetAffectedApps()) {
				out.Deployments = append(out.Deployments, d)
				if i < len(m.GetCurrentActions()) {
					out.CurrentActions = append(out.CurrentActions, m.GetCurrentActions()[i])
				}
			}
		}
		return out
	case *v1.GetQueueResponse:
		out := &v1.GetQueueResponse{}
		for _, e := range m.GetQueue() {
			if InPrefix(tok, e.GetAppId()) {
				out.Queue = append(out.Queue, e)
			}
		}
		return out
	case *v1.ListCheckResultsResponse:
		out := &v1.ListCheckResultsResponse{}
		for _, r := range m.GetResults() {
			if InPrefix(tok, r.GetAppId()) {
				out.Results = append(out.Results, r)
			}
		}
		return out
	case *v1.ListBackupsResponse:
		out := &v1.ListBackupsResponse{}
		for _, b := range m.GetBackups() {
			if InPrefix(tok, b.GetAppId()) {
				out.Backups = append(out.Backups, b)
			}
		}
		return out
	case *v1.Event:
		if m.GetAppId() != "" && !InPrefix(tok, m.GetAppId()) {
			return nil
		}
		if m.GetDeployment() != nil && !allInPrefix(tok, m.GetDeployment().GetAffectedApps()) {
			return nil
		}
		return m
	}
	return msg
}

func allInPrefix(tok *v1.ACLToken, apps []string) bool {
	for _, id := range apps {
		if !InPrefix(tok, id) {
			return false
		}
	}
	return true
}
