// Package scheduler is Berth's Mesos framework: it runs on the Raft leader
// only and keeps every app's instances on their berths.
//
// It is a level-triggered reconciler with a pure core. Decide takes a State
// (a snapshot of committed apps, instances and deployments, plus the
// leader's volatile Memory), one Input (Subscribed, Offers, StatusUpdate,
// StatusUpdates, HealthResult, ReadinessResult or Tick) and the time, and returns a Decision: the
// SchedulerPlanCommand to commit first, then the Mesos calls to send and the
// events to publish once it committed (docs/ARCHITECTURE.md invariant 1). The
// core does no I/O and reads no clock; the tests drive it against an
// in-memory fake master, including crashes between commit and send.
//
// Resident instances (apps with a persistent volume) follow the model of
// docs/ARCHITECTURE.md: a new instance reserves, creates its volumes and launches
// in one ACCEPT after committing a PENDING reservation; the reservation is
// confirmed when its labelled resources are offered or the task reports from
// the agent, and unpinned when neither happens within the reservation
// timeout; later launches go on the labelled resources and volume. Stop and
// scale-down keep berths; start reuses them; decommissioned instances are
// killed, then their berths destroyed and unreserved when next offered.
// Labelled resources that no committed instance claims are collected the
// same way. Stateless apps launch on unreserved resources, or on resources
// reserved for the framework's role without Berth labels when their
// acceptedResourceRoles list that role; an app.role other than the
// framework's fails the deployment (one role per subscription).
//
// Upgrades follow upgradeStrategy as Marathon's TaskReplaceActor does:
// resident apps kill first and relaunch on the same berths, at most
// instances - minHealthy down at a time; stateless apps start new
// instances first, up to maxCapacity, and kill an old one whenever enough
// others are up that minHealthy (= ceil(instances × minimumHealthCapacity))
// still holds, with one instance of over-capacity when minHealthy equals
// maxCapacity (= floor(instances × (1 + maximumOverCapacity))). Scale-only
// changes restart nothing. During a deployment, a task of the new
// configuration counts as up only once it is healthy (if checked) and has
// passed the app's readinessChecks, which the leader runs (HTTP, HTTPS)
// like its own health checks, for tasks of running deployments only.
//
// Scheduler is the driver: it subscribes with mesos-go's httpsched (the
// framework id from SUBSCRIBED is committed before anything else and reused
// on every later subscription), feeds events, ticks, store changes and
// leader-run health and readiness check results to Decide, commits each
// plan through Deps.Commit and only then sends its calls. It stops sending
// the moment its context ends. On each subscription it reconciles every
// known live task explicitly and tracks the answers: once every task has
// had a status update it logs "reconciliation complete" (tasks, took) and
// publishes a reconciliation_complete event (Decision.Reconciliation); after
// Config.ReconciliationTimeout it reports reconciliation_incomplete with the
// number still missing instead. Between decisions the driver keeps its State
// and patches it after its own commits, so a status update does not copy
// every instance out of the store. Status updates already queued behind one
// another (at most 512) are decided together as StatusUpdates: one plan,
// one commit, then all their acknowledgements; a lone update is not delayed
// and other events keep their place in the order.
//
// A task that ends unexpectedly (TASK_FAILED, TASK_ERROR, TASK_LOST,
// TASK_DROPPED, TASK_GONE*, or TASK_KILLED without a kill having been
// asked for; a kill by Berth's health checks counts) is recorded on its
// instance as Instance.last_failure by the plan that processes the status,
// and listed in Decision.TaskFailures; the driver logs each once, after the
// commit ("task failed": app, instance, task, state, reason, message,
// sandbox, agent). Every task records its sandbox as the agents' files API
// names it and its agent's HTTP endpoint from the offer, so its stdout and
// stderr can be read later from any server.
//
// Wiring (as in cmd/berth):
//
//	f := fsm.New(logger)
//	deps := scheduler.Deps{
//		Store: func() scheduler.Store { return f.State() },
//		Commit: func(ctx context.Context, plan *v1.SchedulerPlanCommand) error {
//			return apply(ctx, v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, plan) // raft Apply, then ApplyResult.Err
//		},
//		SetFrameworkID: func(ctx context.Context, id string) error {
//			return apply(ctx, v1.CommandType_COMMAND_TYPE_FRAMEWORK_ID_SET, &v1.FrameworkIDSetCommand{FrameworkId: id})
//		},
//		Publish: events.Publish,
//	}
//	// On gaining leadership, with lctx cancelled when it is lost:
//	err := scheduler.New(scheduler.Config{MesosMaster: "http://127.0.0.1:5050", Logger: logger}, deps).Run(lctx)
package scheduler
