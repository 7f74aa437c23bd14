import { useState } from "preact/hooks";
import { DeploymentStatus, type Deployment } from "../gen/berth/v1/state_pb";
import { deployments, fmtTime } from "../api";
import { ErrorBox, Link, appPath, usePoll } from "../util";

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
        <DeploymentCard key={d.id} d={d} cancel={cancel} />
      ))}
    </section>
  );
}

function DeploymentCard({ d, cancel }: { d: Deployment; cancel: (id: string, force: boolean) => void }) {
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
