package fsm

import (
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

// tables is the one list of the store's tables: each with its record tag
// in snapshots, its message type and its memdb indexes (none for the
// instances, kept in an instanceSet). The tags are part of the
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
	// The instances are not in memdb: see instanceSet (instances.go).
	{3, tableInstances, func() proto.Message { return new(v1.Instance) }, nil},
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
		if t.indexes != nil {
			db.Tables[t.name] = &memdb.TableSchema{Name: t.name, Indexes: t.indexes}
		}
	}
	return db
}
