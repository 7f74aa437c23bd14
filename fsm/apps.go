package fsm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func init() {
	registerCommand(v1.CommandType_COMMAND_TYPE_APP_CREATE, "", applyAppCreate)
	registerCommand(v1.CommandType_COMMAND_TYPE_APP_UPDATE, "", applyAppUpdate)
	registerCommand(v1.CommandType_COMMAND_TYPE_APP_DELETE, "", applyAppDelete)
}

func applyAppCreate(tx *txn, e logEntry, cmd *v1.AppCreateCommand) (string, error) {
	index := e.index
	app := cmd.GetApp()
	if app.GetId() == "" {
		return cmd.GetRequestId(), refuse(ErrInvalid, "app create: app id is empty")
	}
	existing, err := tx.First(tableApps, "id", app.GetId())
	if err != nil {
		return cmd.GetRequestId(), err
	}
	if existing != nil {
		return cmd.GetRequestId(), refuse(ErrAlreadyExists, "app %s already exists", app.GetId())
	}
	if err := putApp(tx, app); err != nil {
		return cmd.GetRequestId(), err
	}
	return cmd.GetRequestId(), putAll(tx, index, cmd.GetDeployment(), nil, cmd.GetPutInstances())
}

func applyAppUpdate(tx *txn, e logEntry, cmd *v1.AppUpdateCommand) (string, error) {
	index := e.index
	app := cmd.GetApp()
	raw, err := tx.First(tableApps, "id", app.GetId())
	if err != nil {
		return cmd.GetRequestId(), err
	}
	if raw == nil {
		return cmd.GetRequestId(), refuse(ErrNotFound, "app %s does not exist", app.GetId())
	}
	if ev := cmd.GetExpectedVersion(); ev != "" && raw.(*v1.App).GetVersion() != ev {
		return cmd.GetRequestId(), refuse(ErrConflict, "app %s is at version %s, not %s",
			app.GetId(), raw.(*v1.App).GetVersion(), ev)
	}
	if err := putApp(tx, app); err != nil {
		return cmd.GetRequestId(), err
	}
	return cmd.GetRequestId(), putAll(tx, index, cmd.GetDeployment(), cmd.GetCancelDeployments(), cmd.GetPutInstances())
}

func applyAppDelete(tx *txn, e logEntry, cmd *v1.AppDeleteCommand) (string, error) {
	index := e.index
	id := cmd.GetAppId()
	raw, err := tx.First(tableApps, "id", id)
	if err != nil {
		return cmd.GetRequestId(), err
	}
	if raw == nil {
		return cmd.GetRequestId(), refuse(ErrNotFound, "app %s does not exist", id)
	}
	if err := tx.Delete(tableApps, raw); err != nil {
		return cmd.GetRequestId(), err
	}
	if err := addAppTotals(tx.Txn, -1, -int64(raw.(*v1.App).GetInstances())); err != nil {
		return cmd.GetRequestId(), err
	}
	if _, err := tx.DeleteAll(tableAppVersions, "app", id); err != nil {
		return cmd.GetRequestId(), err
	}
	// Every instance of a removed app is decommissioned in the same entry,
	// so no instance can outlive its app unnoticed: the scheduler destroys
	// their volumes and releases their reservations.
	insts, err := (&Snapshot{tx: tx.Txn, inst: tx.inst}).InstancesByApp(id)
	if err != nil {
		return cmd.GetRequestId(), err
	}
	var decommission []*v1.Instance
	for _, cur := range insts {
		inst := proto.Clone(cur).(*v1.Instance)
		inst.Goal = v1.Goal_GOAL_DECOMMISSIONED
		decommission = append(decommission, inst)
	}
	for _, inst := range decommission {
		if err := putInstance(tx, index, inst); err != nil {
			return cmd.GetRequestId(), err
		}
	}
	return cmd.GetRequestId(), putAll(tx, index, cmd.GetDeployment(), cmd.GetCancelDeployments(), cmd.GetPutInstances())
}

// putApp stores the app as current and records the version in its history.
func putApp(tx *txn, app *v1.App) error {
	if app.GetVersion() == "" {
		return refuse(ErrInvalid, "app %s has no version", app.GetId())
	}
	old, err := tx.First(tableApps, "id", app.GetId())
	if err != nil {
		return err
	}
	apps, instances := 1, int64(app.GetInstances())
	if old != nil {
		apps, instances = 0, instances-int64(old.(*v1.App).GetInstances())
	}
	if err := tx.Insert(tableApps, app); err != nil {
		return err
	}
	if err := addAppTotals(tx.Txn, apps, instances); err != nil {
		return err
	}
	return tx.Insert(tableAppVersions, &v1.AppVersion{AppId: app.GetId(), Version: app.GetVersion(), App: app})
}

// putAll stores an optional deployment, cancels deployments and upserts
// instances: the parts that app commands share.
func putAll(tx *txn, index uint64, d *v1.Deployment, cancel []string, instances []*v1.Instance) error {
	if err := cancelDeployments(tx, cancel); err != nil {
		return err
	}
	if d != nil {
		if err := putDeployment(tx, d); err != nil {
			return err
		}
	}
	for _, inst := range instances {
		if err := putInstance(tx, index, inst); err != nil {
			return err
		}
	}
	return nil
}

// AppTotals is the number of apps and the sum of their instances.
type AppTotals struct {
	Apps      int
	Instances int64
}

// readAppTotals reads the totals that app writes keep in the meta table.
func readAppTotals(tx *memdb.Txn) (AppTotals, error) {
	raw, err := tx.First(tableMeta, "id", metaAppTotals)
	if err != nil || raw == nil {
		return AppTotals{}, err
	}
	v := raw.(*v1.MetaRecord).GetValue()
	apps, instances, _ := strings.Cut(v, " ")
	var t AppTotals
	var err1, err2 error
	t.Apps, err1 = strconv.Atoi(apps)
	t.Instances, err2 = strconv.ParseInt(instances, 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return AppTotals{}, fmt.Errorf("read %s %q: %w", metaAppTotals, v, err)
	}
	return t, nil
}

func writeAppTotals(tx *memdb.Txn, t AppTotals) error {
	return tx.Insert(tableMeta, &v1.MetaRecord{Key: metaAppTotals, Value: strconv.Itoa(t.Apps) + " " + strconv.FormatInt(t.Instances, 10)})
}

// addAppTotals changes the totals by apps and instances.
func addAppTotals(tx *memdb.Txn, apps int, instances int64) error {
	t, err := readAppTotals(tx)
	if err != nil {
		return err
	}
	t.Apps += apps
	t.Instances += instances
	return writeAppTotals(tx, t)
}

// recountAppTotals computes the totals from every app (after a restore).
func recountAppTotals(tx *memdb.Txn) error {
	it, err := tx.Get(tableApps, "id")
	if err != nil {
		return err
	}
	var t AppTotals
	for raw := it.Next(); raw != nil; raw = it.Next() {
		t.Apps++
		t.Instances += int64(raw.(*v1.App).GetInstances())
	}
	return writeAppTotals(tx, t)
}

// AppTotals returns the number of apps and the sum of their instances
// without reading every app.
func (s *Snapshot) AppTotals() (AppTotals, error) { return readAppTotals(s.tx) }
