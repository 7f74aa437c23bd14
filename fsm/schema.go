package fsm

import (
	"fmt"
	"strings"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Table names of the state store.
const (
	tableApps        = "apps"
	tableAppVersions = "app_versions"
	tableInstances   = "instances"
	tableDeployments = "deployments"
	tableMeta        = "meta"
	tableRequests    = "requests"
	tableACLTokens   = "acl_tokens"
	tableBackups     = "backups"
)

// Meta keys.
const (
	metaFrameworkID = "framework_id"
	// metaAppliedIndex is the Raft index of the last entry applied, kept
	// in the store so that a Snapshot and a snapshot file carry it.
	metaAppliedIndex = "applied_index"
	// metaAppTotals is the number of apps and the sum of their instances
	// ("<apps> <instances>"), kept up to date by every app write so that a
	// write's capacity check does not read every app. ReadSnapshot
	// recomputes it from the apps it restores.
	metaAppTotals = "app_totals"
)

// funcIndex indexes an object by a string that a function derives from it. It
// lets the schema index nested fields (an instance's task id, a reservation's
// agent) that memdb's reflection-based indexers cannot reach.
type funcIndex struct {
	fn func(obj any) (string, bool)
}

func (f funcIndex) FromObject(obj any) (bool, []byte, error) {
	s, ok := f.fn(obj)
	if !ok || s == "" {
		return false, nil, nil
	}
	return true, []byte(s + "\x00"), nil
}

func (f funcIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("must provide exactly one argument")
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("argument must be a string: %#v", args[0])
	}
	return []byte(s + "\x00"), nil
}

// funcMultiIndex indexes an object by several strings that a function
// derives from it (an instance's volumes' persistence ids).
type funcMultiIndex struct {
	fn func(obj any) []string
}

func (f funcMultiIndex) FromObject(obj any) (bool, [][]byte, error) {
	var vals [][]byte
	for _, s := range f.fn(obj) {
		if s != "" {
			vals = append(vals, []byte(s+"\x00"))
		}
	}
	return len(vals) > 0, vals, nil
}

func (f funcMultiIndex) FromArgs(args ...any) ([]byte, error) { return funcIndex{}.FromArgs(args...) }

// tables is the one list of the store's tables: each with its record tag
// in snapshots, its message type and its indexes. The tags are part of the
// snapshot format: never reuse or renumber them. A new table is one entry
// here; the schema and the snapshot format both derive from this list.
var tables = []struct {
	tag     byte
	name    string
	new     func() proto.Message
	indexes map[string]*memdb.IndexSchema
}{
	{1, tableApps, func() proto.Message { return new(v1.App) }, map[string]*memdb.IndexSchema{
		"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
	}},
	{2, tableAppVersions, func() proto.Message { return new(v1.AppVersion) }, map[string]*memdb.IndexSchema{
		"id": {Name: "id", Unique: true, Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
			&memdb.StringFieldIndex{Field: "AppId"},
			&memdb.StringFieldIndex{Field: "Version"},
		}}},
		"app": {Name: "app", Indexer: &memdb.StringFieldIndex{Field: "AppId"}},
	}},
	// An instance's app and task are found through the primary index:
	// their ids carry the instance id's prefix (invariant 5, ids.go). The
	// "app" and "task" indexes hold only the instances whose ids do not
	// follow that format, so a lookup stays exact for any id while a
	// state of 100,000 instances spends no index entries on them.
	{3, tableInstances, func() proto.Message { return new(v1.Instance) }, map[string]*memdb.IndexSchema{
		"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
		"app": {Name: "app", AllowMissing: true, Indexer: funcIndex{func(o any) (string, bool) {
			i := o.(*v1.Instance)
			return i.GetAppId(), !strings.HasPrefix(i.GetId(), instanceIDPrefix(i.GetAppId()))
		}}},
		"task": {Name: "task", Unique: true, AllowMissing: true, Indexer: funcIndex{func(o any) (string, bool) {
			i := o.(*v1.Instance)
			t := i.GetTask().GetId()
			return t, InstanceIDOfTask(t) != i.GetId()
		}}},
		// volume: the persistence ids of the instance's berth, each
		// owned by one instance (invariant 2; putInstance checks it).
		"volume": {Name: "volume", Unique: true, AllowMissing: true, Indexer: funcMultiIndex{func(o any) []string {
			r := activeReservation(o.(*v1.Instance))
			ids := make([]string, 0, len(r.GetVolumes()))
			for _, v := range r.GetVolumes() {
				ids = append(ids, v.GetPersistenceId())
			}
			return ids
		}}},
	}},
	// Tags 4 and 5 were the reservations and volumes tables, copies of
	// what each instance holds (format 1). Never reuse them.
	{6, tableDeployments, func() proto.Message { return new(v1.Deployment) }, map[string]*memdb.IndexSchema{
		"id":  {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
		"app": {Name: "app", AllowMissing: true, Indexer: &memdb.StringSliceFieldIndex{Field: "AffectedApps"}},
	}},
	{7, tableMeta, func() proto.Message { return new(v1.MetaRecord) }, map[string]*memdb.IndexSchema{
		"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
	}},
	{8, tableRequests, func() proto.Message { return new(v1.RequestRecord) }, map[string]*memdb.IndexSchema{
		"id":    {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "RequestId"}},
		"index": {Name: "index", Indexer: &memdb.UintFieldIndex{Field: "Index"}},
	}},
	{9, tableACLTokens, func() proto.Message { return new(v1.ACLToken) }, map[string]*memdb.IndexSchema{
		"id":     {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "AccessorId"}},
		"secret": {Name: "secret", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "SecretHash"}},
	}},
	{10, tableBackups, func() proto.Message { return new(v1.Backup) }, map[string]*memdb.IndexSchema{
		"id":       {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
		"instance": {Name: "instance", Indexer: &memdb.StringFieldIndex{Field: "InstanceId"}},
		"app":      {Name: "app", Indexer: &memdb.StringFieldIndex{Field: "AppId"}},
	}},
}

func schema() *memdb.DBSchema {
	db := &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{}}
	for _, t := range tables {
		db.Tables[t.name] = &memdb.TableSchema{Name: t.name, Indexes: t.indexes}
	}
	return db
}
