import { useState } from "preact/hooks";
import { DeploymentStatus, type Deployment } from "../gen/berth/v1/state_pb";
import { deployments, fmtTime, tasks } from "../api";
import type { CurrentActions } from "../gen/berth/v1/service_pb";
import { ErrorBox, Healthy, Link, appPath, usePoll } from "../util";
import { ReadinessResults, Waiting } from "./waiting";

const statusNames: Record<number, string> = {
  [DeploymentStatus.RUNNING]: "running",
  [DeploymentStatus.SUCCEEDED]: "succeeded",
  [DeploymentStatus.FAILED]: "failed",
  [DeploymentStatus.CANCELED]: "canceled",
};

// DeploymentsPage lists deployments with their steps, the current one
// marked, and cancels them.
export function DeploymentsPage() {
  const [all, setAll] = useState(false);
  const load = usePoll((signal) => deployments.listDeployments({ includeFinished: all }, { signal }), [all]);
  const [error, setError] = useState<unknown>();
  const cancel = async (id: string, force: boolean) => {
    setError(undefined);
    try {
      await deployments.cancelDeployment({ id, force });
      load.reload();
    } catch (e) {
      setError(e);
    }
  };
  const list = load.data?.deployments ?? [];
  return (
    <section aria-labelledby="deps-title">
      <h1 id="deps-title">Deployments</h1>
      <label class="inline">
        <input type="checkbox" checked={all} onChange={(e) => setAll(e.currentTarget.checked)} /> Include finished
        deployments
      </label>
      <ErrorBox error={load.error ?? error} />
      {load.data && list.length === 0 && <p class="muted">No deployments{all ? "" : " in progress"}.</p>}
      {list.map((d) => (
        <DeploymentCard key={d.id} d={d} current={load.data?.currentActions.find((c) => c.deploymentId === d.id)} cancel={cancel} />
      ))}
    </section>
  );
}

function DeploymentCard({ d, current, cancel }: { d: Deployment; current?: CurrentActions; cancel: (id: string, force: boolean) => void }) {
  const running = d.status === DeploymentStatus.RUNNING;
  return (
    <article class="deployment" aria-label={`Deployment ${d.id}`} data-deployment={d.id}>
      <h2>
        <code>{d.id}</code> <span class={`status ${statusNames[d.status]}`}>{statusNames[d.status] ?? "unknown"}</span>
      </h2>
      <p>
        Version {d.version}, created {fmtTime(d.createdAt)}
        {d.finishedAt ? `, finished ${fmtTime(d.finishedAt)}` : ""}. Apps:{" "}
        {d.affectedApps.map((a) => (
          <Link key={a} to={appPath(a)}>
            {a}{" "}
          </Link>
        ))}
      </p>
      {d.message && <p class={d.status === DeploymentStatus.FAILED ? "error" : ""}>{d.message}</p>}
      <ol class="steps" aria-label="Steps">
        {d.steps.map((s, i) => {
          const n = i + 1;
          const state = n < d.currentStep || !running ? "done" : n === d.currentStep ? "current" : "waiting";
          return (
            <li key={n} class={`step ${running ? state : ""}`} aria-current={running && state === "current" ? "step" : undefined}>
              Step {n} of {d.steps.length}
              {running ? ` (${state})` : ""}:{" "}
              {s.actions.map((a) => `${a.action} ${a.app}`).join(", ")}
            </li>
          );
        })}
      </ol>
      {running &&
        current?.actions.map((a) => (
          <div key={a.action + a.app} data-testid="current-action">
            <p>
              Now: {a.action} {a.app}
            </p>
            <ReadinessResults results={a.readinessCheckResults} />
          </div>
        ))}
      {running && d.affectedApps.map((a) => <AppInstances key={a} appId={a} version={d.version} />)}
      {running && (
        <div class="buttons">
          <button type="button" onClick={() => cancel(d.id, false)}>
            Cancel (roll back)
          </button>
          <button type="button" onClick={() => cancel(d.id, true)}>
            Stop where it stands
          </button>
        </div>
      )}
    </article>
  );
}

// AppInstances shows where each instance of an app being deployed stands:
// the version it runs, its task state, health and readiness.
function AppInstances({ appId, version }: { appId: string; version: string }) {
  const load = usePoll((signal) => tasks.listTasks({ appId }, { signal }), [appId]);
  const list = load.data?.tasks ?? [];
  return (
    <div>
      <h3>
        Instances of <Link to={appPath(appId)}>{appId}</Link>
      </h3>
      <ErrorBox error={load.error} />
      <Waiting appId={appId} />
      {load.data && list.length === 0 && <p class="muted">None yet.</p>}
      {list.length > 0 && (
        <table class="list" data-testid="deployment-instances">
          <thead>
            <tr>
              <th scope="col">Instance</th>
              <th scope="col">Version</th>
              <th scope="col">Goal</th>
              <th scope="col">State</th>
              <th scope="col">Health</th>
              <th scope="col">Readiness</th>
              <th scope="col">Waiting for</th>
            </tr>
          </thead>
          <tbody>
            {list.map((t) => (
              <tr key={t.instanceId}>
                <th scope="row">
                  <code>{t.instanceId}</code>
                </th>
                <td>{t.version ? (t.version === version ? "target" : t.version) : ""}</td>
                <td>{t.goal}</td>
                <td>{t.state || "no task"}</td>
                <td>
                  <Healthy v={t.healthy} />
                </td>
                <td>{t.ready === undefined ? "" : t.ready ? "ready" : "not ready"}</td>
                <td>
                  {t.launchNotBefore
                    ? `launch backoff until ${t.launchNotBefore}`
                    : t.reservationState === "pending"
                      ? "its reservation to show up in an offer"
                      : t.reservationState === "none" && t.goal === "Running"
                        ? "an offer that fits"
                        : ""}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
