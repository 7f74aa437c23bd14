package acl

import (
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// Permission is what a method needs from the caller's token.
type Permission int

// Permissions, weakest first. Each token policy grants the permissions up
// to its own: a write token may read, an operator token may write.
const (
	// PermAnonymous: anyone, with or without a token (health checks,
	// reflection, the one-time bootstrap).
	PermAnonymous Permission = iota
	// PermToken: any valid token (token self).
	PermToken
	PermRead
	PermWrite
	PermOperator
	PermManagement
)

func (p Permission) policy() v1.ACLPolicy {
	switch p {
	case PermRead:
		return v1.ACLPolicy_ACL_POLICY_READ
	case PermWrite:
		return v1.ACLPolicy_ACL_POLICY_WRITE
	case PermOperator:
		return v1.ACLPolicy_ACL_POLICY_OPERATOR
	case PermManagement:
		return v1.ACLPolicy_ACL_POLICY_MANAGEMENT
	}
	return v1.ACLPolicy_ACL_POLICY_UNSPECIFIED
}

// IDKind says what an id field of a request names, so that the app it
// belongs to can be found.
type IDKind int

// ID kinds.
const (
	// AppID: the field is an app id.
	AppID IDKind = iota + 1
	// TaskID: a task or instance id; its app is the instance's.
	TaskID
	// DeploymentID: a deployment id; its apps are the affected apps.
	DeploymentID
	// BackupID: a backup or restore id; its app is the record's.
	BackupID
)

// IDField is a request field (a dotted path of proto field names, e.g.
// "app.id") that names an app, task or deployment. An empty field names
// nothing.
type IDField struct {
	Path string
	Kind IDKind
}

// Rule is one row of the table: what a method needs.
type Rule struct {
	Permission Permission
	// Fields name the request's apps: every app they name must lie
	// under the token's app prefix.
	Fields []IDField
	// Filtered: the response lists apps (or their tasks, deployments,
	// events); the server drops the ones outside the token's prefix.
	Filtered bool
	// Write: the method changes the replicated state; it is audited.
	Write bool
}

// appScoped reports whether the rule limits the call to the token's apps.
func (r Rule) appScoped() bool { return len(r.Fields) > 0 || r.Filtered }

func appField(path string) []IDField { return []IDField{{Path: path, Kind: AppID}} }

var (
	read        = Rule{Permission: PermRead}
	operatorW   = Rule{Permission: PermOperator, Write: true}
	managementW = Rule{Permission: PermManagement, Write: true}
)

func readApp(path string) Rule { return Rule{Permission: PermRead, Fields: appField(path)} }
func writeApp(fields ...IDField) Rule {
	return Rule{Permission: PermWrite, Fields: fields, Write: true}
}

// Health checking and reflection, served beside Berth's services.
const (
	HealthCheckProcedure       = "/grpc.health.v1.Health/Check"
	HealthWatchProcedure       = "/grpc.health.v1.Health/Watch"
	HealthListProcedure        = "/grpc.health.v1.Health/List"
	ReflectionV1Procedure      = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	ReflectionV1AlphaProcedure = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

// Plain HTTP routes the API serves beside Connect, as Table keys.
const (
	RouteHealth  = "GET /v1/health"
	RouteReady   = "GET /v1/ready"
	RouteMetrics = "GET /metrics"
	RouteDebug   = "GET /v1/debug/"
	// RouteBinary serves the berth binary the Mesos fetcher downloads for
	// backup and restore tasks.
	RouteBinary = "GET /v1/binary/berth"
	RouteUI     = "GET /ui/"
)

// Routes are the rows of the plain HTTP routes beside the API: health and
// readiness are open (load balancers and systemd call them); metrics and
// the debug endpoints (profiles, logs, the scheduler summary) are operator
// work, as in Nomad and Consul. The web UI's files are public: they hold
// no state, and every API call the UI makes carries the user's token.
var Routes = map[string]Rule{
	RouteUI:      {Permission: PermAnonymous},
	RouteHealth:  {Permission: PermAnonymous},
	RouteReady:   {Permission: PermAnonymous},
	RouteMetrics: {Permission: PermOperator},
	RouteDebug:   {Permission: PermOperator},
	// The binary is open: the Mesos fetcher on an agent carries no Berth
	// token, and the binary holds no secret (it is the release anyone can
	// download). It shows no state.
	RouteBinary: {Permission: PermAnonymous},
}

// Table is the one table of method → permission (invariant 6): every
// procedure the API serves has a row, and a procedure without one is
// refused. Keys are Connect procedure names ("/berth.v1.AppService/GetApp").
var Table = map[string]Rule{
	berthv1connect.AppServiceCreateAppProcedure:       writeApp(IDField{"app.id", AppID}),
	berthv1connect.AppServiceGetAppProcedure:          readApp("id"),
	berthv1connect.AppServiceListAppsProcedure:        {Permission: PermRead, Filtered: true},
	berthv1connect.AppServiceUpdateAppProcedure:       writeApp(IDField{"id", AppID}, IDField{"app.id", AppID}),
	berthv1connect.AppServiceDeleteAppProcedure:       writeApp(IDField{"id", AppID}),
	berthv1connect.AppServiceListAppVersionsProcedure: readApp("id"),
	berthv1connect.AppServiceRestartAppProcedure:      writeApp(IDField{"id", AppID}),
	berthv1connect.AppServiceResetDelayProcedure:      writeApp(IDField{"id", AppID}),
	berthv1connect.AppServiceGetQueueProcedure:        {Permission: PermRead, Fields: appField("app_id"), Filtered: true},
	// Conversions between Marathon JSON and App read no state: any token
	// that may read apps may ask for them.
	berthv1connect.AppServiceParseAppProcedure:  read,
	berthv1connect.AppServiceRenderAppProcedure: read,

	berthv1connect.TaskServiceListTasksProcedure:        {Permission: PermRead, Fields: appField("app_id"), Filtered: true},
	berthv1connect.TaskServiceKillTaskProcedure:         writeApp(IDField{"id", TaskID}),
	berthv1connect.TaskServiceReadTaskLogProcedure:      {Permission: PermRead, Fields: []IDField{{"task_id", TaskID}}},
	berthv1connect.TaskServiceListCheckResultsProcedure: {Permission: PermRead, Fields: appField("app_id"), Filtered: true},

	berthv1connect.DeploymentServiceListDeploymentsProcedure:  {Permission: PermRead, Filtered: true},
	berthv1connect.DeploymentServiceGetDeploymentProcedure:    {Permission: PermRead, Fields: []IDField{{"id", DeploymentID}}},
	berthv1connect.DeploymentServiceCancelDeploymentProcedure: writeApp(IDField{"id", DeploymentID}),

	berthv1connect.EventServiceStreamEventsProcedure: {Permission: PermRead, Fields: appField("app_id"), Filtered: true},

	// Backups act on an app's berths as its other writes do: a write
	// token for the app starts, deletes, prunes and restores them (a
	// restore replaces the volume's data, as a wipe does); a read token
	// lists and gets them. Verify records its outcome: write.
	berthv1connect.BackupServiceCreateBackupProcedure: writeApp(IDField{"app_id", AppID}),
	berthv1connect.BackupServiceListBackupsProcedure:  {Permission: PermRead, Fields: appField("app_id"), Filtered: true},
	berthv1connect.BackupServiceGetBackupProcedure:    {Permission: PermRead, Fields: []IDField{{"id", BackupID}}},
	berthv1connect.BackupServiceVerifyBackupProcedure: writeApp(IDField{"id", BackupID}),
	berthv1connect.BackupServiceDeleteBackupProcedure: writeApp(IDField{"id", BackupID}),
	berthv1connect.BackupServicePruneBackupsProcedure: writeApp(IDField{"app_id", AppID}),
	berthv1connect.BackupServiceRestoreProcedure:      writeApp(IDField{"app_id", AppID}, IDField{"backup_id", BackupID}),
	// Moving an instance destroys its old berth once the new one runs.
	berthv1connect.BackupServiceMigrateInstanceProcedure: writeApp(IDField{"instance_id", TaskID}),
	berthv1connect.BackupServiceReplaceInstanceProcedure: writeApp(IDField{"instance_id", TaskID}, IDField{"backup_id", BackupID}),

	berthv1connect.ClusterServiceMembersProcedure:            read,
	berthv1connect.ClusterServiceLeaderProcedure:             read,
	berthv1connect.ClusterServiceMesosStatusProcedure:        read,
	berthv1connect.ClusterServiceListPeersProcedure:          read,
	berthv1connect.ClusterServiceRemovePeerProcedure:         operatorW,
	berthv1connect.ClusterServiceTransferLeadershipProcedure: operatorW,
	// A snapshot holds every app's env and every token's hash; restoring
	// one replaces the tokens: management only, as in Consul and Nomad.
	berthv1connect.ClusterServiceSaveSnapshotProcedure:          {Permission: PermManagement},
	berthv1connect.ClusterServiceRestoreSnapshotProcedure:       managementW,
	berthv1connect.ClusterServiceSaveSnapshotStreamProcedure:    {Permission: PermManagement},
	berthv1connect.ClusterServiceRestoreSnapshotStreamProcedure: managementW,
	// Leave retires the server that receives it (operator work, like
	// removing a peer).
	berthv1connect.ClusterServiceLeaveProcedure: operatorW,
	// The gossip keyring: listing shows key material (management, as
	// Consul's keyring needs operator write plus agent write); changing it
	// can split the cluster.
	berthv1connect.KeyringServiceListKeysProcedure:   {Permission: PermManagement},
	berthv1connect.KeyringServiceInstallKeyProcedure: managementW,
	berthv1connect.KeyringServiceUseKeyProcedure:     managementW,
	berthv1connect.KeyringServiceRemoveKeyProcedure:  managementW,

	// Mesos agents: what the master says of them, and the operator calls
	// that take them away (drain, gone, maintenance) are operator work, as
	// Mesos' own operator API is.
	berthv1connect.AgentServiceListAgentsProcedure:          {Permission: PermOperator},
	berthv1connect.AgentServiceDrainAgentProcedure:          operatorW,
	berthv1connect.AgentServiceReactivateAgentProcedure:     operatorW,
	berthv1connect.AgentServiceMarkAgentGoneProcedure:       operatorW,
	berthv1connect.AgentServiceScheduleMaintenanceProcedure: operatorW,
	berthv1connect.AgentServiceStartMaintenanceProcedure:    operatorW,
	berthv1connect.AgentServiceStopMaintenanceProcedure:     operatorW,

	// Bootstrap is open, and works once per cluster.
	berthv1connect.ACLServiceBootstrapProcedure:   {Permission: PermAnonymous, Write: true},
	berthv1connect.ACLServiceCreateTokenProcedure: managementW,
	berthv1connect.ACLServiceListTokensProcedure:  {Permission: PermManagement},
	berthv1connect.ACLServiceDeleteTokenProcedure: managementW,
	berthv1connect.ACLServiceTokenSelfProcedure:   {Permission: PermToken},

	// Load balancers and grpcurl use these without credentials; neither
	// shows any state.
	HealthCheckProcedure:       {Permission: PermAnonymous},
	HealthWatchProcedure:       {Permission: PermAnonymous},
	HealthListProcedure:        {Permission: PermAnonymous},
	ReflectionV1Procedure:      {Permission: PermAnonymous},
	ReflectionV1AlphaProcedure: {Permission: PermAnonymous},
}
