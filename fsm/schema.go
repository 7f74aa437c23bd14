package fsm

import (
	"fmt"

	"github.com/hashicorp/go-memdb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Table names of the state store.
const (
	tableApps        = "apps"
	tableAppVersions = "app_versions"
	tableInstances   = "instances"
	tableReservation = "reservations"
	tableVolumes     = "volumes"
	tableDeployments = "deployments"
	tableMeta        = "meta"
	tableRequests    = "requests"
)

// Meta keys.
const (
	metaFrameworkID = "framework_id"
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

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableApps: {
			Name: tableApps,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
			},
		},
		tableAppVersions: {
			Name: tableAppVersions,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
					&memdb.StringFieldIndex{Field: "AppId"},
					&memdb.StringFieldIndex{Field: "Version"},
				}}},
				"app": {Name: "app", Indexer: &memdb.StringFieldIndex{Field: "AppId"}},
			},
		},
		tableInstances: {
			Name: tableInstances,
			Indexes: map[string]*memdb.IndexSchema{
				"id":  {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
				"app": {Name: "app", Indexer: &memdb.StringFieldIndex{Field: "AppId"}},
				"task": {Name: "task", Unique: true, AllowMissing: true, Indexer: funcIndex{func(o any) (string, bool) {
					t := o.(*v1.Instance).GetTask()
					return t.GetId(), t != nil
				}}},
			},
		},
		tableReservation: {
			Name: tableReservation,
			Indexes: map[string]*memdb.IndexSchema{
				"id":    {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "InstanceId"}},
				"agent": {Name: "agent", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "AgentId"}},
			},
		},
		tableVolumes: {
			Name: tableVolumes,
			Indexes: map[string]*memdb.IndexSchema{
				"id":       {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "PersistenceId"}},
				"instance": {Name: "instance", Indexer: &memdb.StringFieldIndex{Field: "InstanceId"}},
				"agent":    {Name: "agent", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "AgentId"}},
			},
		},
		tableDeployments: {
			Name: tableDeployments,
			Indexes: map[string]*memdb.IndexSchema{
				"id":  {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
				"app": {Name: "app", AllowMissing: true, Indexer: &memdb.StringSliceFieldIndex{Field: "AffectedApps"}},
			},
		},
		tableMeta: {
			Name: tableMeta,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
			},
		},
		tableRequests: {
			Name: tableRequests,
			Indexes: map[string]*memdb.IndexSchema{
				"id":    {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "RequestId"}},
				"index": {Name: "index", Indexer: &memdb.UintFieldIndex{Field: "Index"}},
			},
		},
	}}
}
