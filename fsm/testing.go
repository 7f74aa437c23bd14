package fsm

import (
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TB is the part of testing.TB a TestReader needs (also met by property
// testing libraries' test handles).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// TestReader reads the current content of a store for tests: every call
// takes a fresh Snapshot of the store that state returns and fails the
// test on a read error, so assertions stay one line.
type TestReader struct {
	tb    TB
	state func() *Store
}

// NewTestReader returns a TestReader over state (typically FSM.State).
func NewTestReader(tb TB, state func() *Store) TestReader {
	return TestReader{tb: tb, state: state}
}

func testRead[T any](r TestReader, v T, err error) T {
	r.tb.Helper()
	if err != nil {
		r.tb.Fatalf("read state: %v", err)
	}
	return v
}

func (r TestReader) snap() *Snapshot { return r.state().Snapshot() }

// Store returns the current store.
func (r TestReader) Store() *Store { return r.state() }

// LastIndex is the current store's applied index.
func (r TestReader) LastIndex() uint64 { return r.state().LastIndex() }

// Watch is the current store's Watch.
func (r TestReader) Watch() <-chan struct{} { return r.state().Watch() }

// App reads Snapshot.App.
func (r TestReader) App(id string) *v1.App { v, err := r.snap().App(id); return testRead(r, v, err) }

// Apps reads Snapshot.Apps.
func (r TestReader) Apps() []*v1.App { v, err := r.snap().Apps(); return testRead(r, v, err) }

// AppVersion reads Snapshot.AppVersion.
func (r TestReader) AppVersion(id, version string) *v1.App {
	v, err := r.snap().AppVersion(id, version)
	return testRead(r, v, err)
}

// AppVersions reads Snapshot.AppVersions.
func (r TestReader) AppVersions(id string) []string {
	v, err := r.snap().AppVersions(id)
	return testRead(r, v, err)
}

// Instance reads Snapshot.Instance.
func (r TestReader) Instance(id string) *v1.Instance {
	v, err := r.snap().Instance(id)
	return testRead(r, v, err)
}

// Instances reads Snapshot.Instances.
func (r TestReader) Instances() []*v1.Instance {
	v, err := r.snap().Instances()
	return testRead(r, v, err)
}

// InstancesByApp reads Snapshot.InstancesByApp.
func (r TestReader) InstancesByApp(appID string) []*v1.Instance {
	v, err := r.snap().InstancesByApp(appID)
	return testRead(r, v, err)
}

// InstanceByTaskID reads Snapshot.InstanceByTaskID.
func (r TestReader) InstanceByTaskID(taskID string) *v1.Instance {
	v, err := r.snap().InstanceByTaskID(taskID)
	return testRead(r, v, err)
}

// Reservation reads Snapshot.Reservation.
func (r TestReader) Reservation(instanceID string) *v1.Reservation {
	v, err := r.snap().Reservation(instanceID)
	return testRead(r, v, err)
}

// ReservationsByAgent reads Snapshot.ReservationsByAgent.
func (r TestReader) ReservationsByAgent(agentID string) []*v1.Reservation {
	v, err := r.snap().ReservationsByAgent(agentID)
	return testRead(r, v, err)
}

// Volume reads Snapshot.Volume.
func (r TestReader) Volume(persistenceID string) *v1.LocalVolume {
	v, err := r.snap().Volume(persistenceID)
	return testRead(r, v, err)
}

// Volumes reads Snapshot.Volumes.
func (r TestReader) Volumes() []*v1.LocalVolume {
	v, err := r.snap().Volumes()
	return testRead(r, v, err)
}

// Deployment reads Snapshot.Deployment.
func (r TestReader) Deployment(id string) *v1.Deployment {
	v, err := r.snap().Deployment(id)
	return testRead(r, v, err)
}

// Deployments reads Snapshot.Deployments.
func (r TestReader) Deployments() []*v1.Deployment {
	v, err := r.snap().Deployments()
	return testRead(r, v, err)
}

// DeploymentsByApp reads Snapshot.DeploymentsByApp.
func (r TestReader) DeploymentsByApp(appID string) []*v1.Deployment {
	v, err := r.snap().DeploymentsByApp(appID)
	return testRead(r, v, err)
}

// FrameworkID reads Snapshot.FrameworkID.
func (r TestReader) FrameworkID() string {
	v, err := r.snap().FrameworkID()
	return testRead(r, v, err)
}

// Backup reads Snapshot.Backup.
func (r TestReader) Backup(id string) *v1.Backup {
	v, err := r.snap().Backup(id)
	return testRead(r, v, err)
}

// Backups reads Snapshot.Backups.
func (r TestReader) Backups() []*v1.Backup { v, err := r.snap().Backups(); return testRead(r, v, err) }
