import { useEffect, useState } from "preact/hooks";
import type { App } from "../gen/berth/v1/app_pb";
import type { TaskView } from "../gen/berth/v1/service_pb";
import { TaskLogFile } from "../gen/berth/v1/service_pb";
import { apps, deployments, fmtTime, isNotFound, tasks } from "../api";
import { lineDiff } from "../diff";
import { Confirm, ErrorBox, Healthy, Link, go, usePoll } from "../util";
import { HealthResults, ReadinessResults, Waiting } from "./waiting";
import { Backups } from "./backups";

type Pending = { title: string; body: string; label: string; danger?: boolean; run: () => Promise<unknown> };

// AppPage shows one app: counts, actions, instances with their berths,
// the definition and its versions.
export function AppPage({ id }: { id: string }) {
  const app = usePoll((signal) => apps.getApp({ id }, { signal }), [id]);
  const list = usePoll((signal) => tasks.listTasks({ appId: id }, { signal }), [id]);
  const [notice, setNotice] = useState("");
  const [actionError, setActionError] = useState<unknown>();
  const [confirm, setConfirm] = useState<Pending | null>(null);

  // act runs an action and reports its outcome; the pages' polling shows
  // its effect.
  const act = async (what: string, run: () => Promise<unknown>) => {
    setNotice("");
    setActionError(undefined);
    try {
      const res = (await run()) as { deploymentId?: string } | undefined;
      setNotice(res?.deploymentId ? `${what}: deployment ${res.deploymentId}` : what);
      app.reload();
      list.reload();
    } catch (e) {
      setActionError(e);
    }
  };
  const ask = (p: Pending) => setConfirm(p);

  // A removed app is gone, whatever was shown of it before.
  const notFound = app.error !== undefined && isNotFound(app.error);
  const a = notFound ? undefined : app.data?.app;
  const s = notFound ? undefined : app.data?.summary;
  return (
    <section aria-labelledby="app-title">
      <h1 id="app-title">
        App <code>{id}</code>
      </h1>
      {notFound ? (
        <p data-testid="app-gone">
          App {id} does not exist (any more). <Link to="/apps">All apps</Link>
        </p>
      ) : (
        <ErrorBox error={app.error} />
      )}
      {a && s && (
        <>
          <dl class="summary" data-testid="app-summary">
            <div>
              <dt>Instances</dt>
              <dd data-testid="instances">{a.instances}</dd>
            </div>
            <div>
              <dt>Running</dt>
              <dd data-testid="running">{s.tasksRunning}</dd>
            </div>
            <div>
              <dt>Staged</dt>
              <dd>{s.tasksStaged}</dd>
            </div>
            <div>
              <dt>Healthy</dt>
              <dd data-testid="healthy">{s.tasksHealthy}</dd>
            </div>
            <div>
              <dt>Unhealthy</dt>
              <dd>{s.tasksUnhealthy}</dd>
            </div>
            <div>
              <dt>Stopped</dt>
              <dd data-testid="stopped">{s.instancesStopped}</dd>
            </div>
            <div>
              <dt>Waiting</dt>
              <dd data-testid="waiting-count">{s.instancesWaiting}</dd>
            </div>
            <div>
              <dt>Version</dt>
              <dd>{a.version}</dd>
            </div>
          </dl>
          {s.lastTaskFailure && (
            <p class="error" data-testid="app-last-failure">
              Last failure: {[s.lastTaskFailure.state, s.lastTaskFailure.reason].filter(Boolean).join(" ")}: {s.lastTaskFailure.message} (task{" "}
              {s.lastTaskFailure.taskId} on {s.lastTaskFailure.host}, {fmtTime(s.lastTaskFailure.timestamp)})
            </p>
          )}
          {s.unsupported.length > 0 && (
            <div class="note">
              Berth keeps but does not act upon:
              <ul>
                {s.unsupported.map((u) => (
                  <li key={u}>{u}</li>
                ))}
              </ul>
            </div>
          )}
          {s.instancesWaiting > 0 && <Waiting appId={id} />}
          {s.deployments.length > 0 && <Deployments ids={s.deployments} act={act} ask={ask} />}
          <Actions app={a} act={act} ask={ask} />
        </>
      )}
      <div aria-live="polite">
        {notice && (
          <p class="notice" data-testid="notice">
            {notice}
          </p>
        )}
      </div>
      <ErrorBox error={actionError} what="action failed" />
      <h2>Instances</h2>
      <ErrorBox error={list.error} />
      {list.data && !notFound && <Instances app={a} views={list.data.tasks} act={act} ask={ask} />}
      {a && <Backups app={a} instances={list.data?.tasks ?? []} ask={ask} />}
      {a && <Definition app={a} />}
      {a && <Versions id={id} current={a.version ?? ""} ask={ask} />}
      {confirm && (
        <Confirm
          title={confirm.title}
          confirmLabel={confirm.label}
          danger={confirm.danger}
          onCancel={() => setConfirm(null)}
          onConfirm={() => {
            const c = confirm;
            setConfirm(null);
            act(c.label, c.run);
          }}
        >
          <p>{confirm.body}</p>
        </Confirm>
      )}
    </section>
  );
}

type Act = (what: string, run: () => Promise<unknown>) => void;
type Ask = (p: Pending) => void;

function Actions({ app, act, ask }: { app: App; act: Act; ask: Ask }) {
  const id = app.id;
  const [count, setCount] = useState(String(app.instances ?? 1));
  const [force, setForce] = useState(false);
  const n = Number.parseInt(count, 10);
  const valid = Number.isInteger(n) && n >= 0 && String(n) === count.trim();
  const stopped = (app.instances ?? 0) === 0;
  return (
    <div class="actions" role="group" aria-label="App actions">
      <Link to={"/edit/" + encodeURIComponent(id)} class="button">
        Edit JSON
      </Link>
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          if (valid) act(`Scaled to ${n}`, () => apps.updateApp({ id, partial: true, force, app: { instances: n } }));
        }}
      >
        <label>
          Instances{" "}
          <input
            type="number"
            min={0}
            value={count}
            onInput={(e) => setCount(e.currentTarget.value)}
            aria-invalid={!valid}
            data-testid="scale-count"
            size={4}
          />
        </label>
        <button type="submit" disabled={!valid} data-testid="scale">
          Scale
        </button>
      </form>
      {stopped ? (
        <button
          type="button"
          data-testid="start"
          onClick={() => act("Starting", () => apps.updateApp({ id, partial: true, force, app: { instances: valid && n > 0 ? n : 1 } }))}
        >
          Start
        </button>
      ) : (
        <button
          type="button"
          data-testid="stop"
          onClick={() => act("Stopping (reservations and volumes are kept)", () => apps.updateApp({ id, partial: true, force, app: { instances: 0 } }))}
        >
          Stop
        </button>
      )}
      <button type="button" data-testid="restart" onClick={() => act("Restarting", () => apps.restartApp({ id, force }))}>
        Restart
      </button>
      <button type="button" onClick={() => act("Launch delay reset", () => apps.resetDelay({ id }))}>
        Reset delay
      </button>
      <button
        type="button"
        class="danger"
        data-testid="remove"
        onClick={() =>
          ask({
            title: `Remove ${id}?`,
            body: `Every instance of ${id} is killed and its persistent volumes are destroyed: their data is lost for good.`,
            label: "Remove app and destroy its data",
            danger: true,
            run: async () => {
              const r = await apps.deleteApp({ id, force });
              return r;
            },
          })
        }
      >
        Remove
      </button>
      <label class="inline">
        <input type="checkbox" checked={force} onChange={(e) => setForce(e.currentTarget.checked)} /> Force (cancel a running
        deployment)
      </label>
    </div>
  );
}

function Deployments({ ids, act, ask }: { ids: string[]; act: Act; ask: Ask }) {
  return (
    <div class="note" data-testid="deployments-note">
      Deployments in progress:
      <ul>
        {ids.map((d) => (
          <li key={d}>
            <Link to={"/deployments"}>{d}</Link>{" "}
            <button type="button" onClick={() => act("Deployment canceled (rolling back)", () => deployments.cancelDeployment({ id: d }))}>
              Cancel (roll back)
            </button>{" "}
            <button
              type="button"
              onClick={() =>
                ask({
                  title: "Stop the deployment where it stands?",
                  body: "Nothing is rolled back: old and new instances may be left mixed.",
                  label: "Stop deployment",
                  run: () => deployments.cancelDeployment({ id: d, force: true }),
                })
              }
            >
              Stop here
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

function volumeSize(v: { sizeMib: number; containerPath: string }, app: App | undefined): string {
  if (v.sizeMib) return `${v.sizeMib} MiB`;
  const decl = app?.container?.volumes.find((d) => d.containerPath === v.containerPath);
  return decl?.persistent?.size ? `${decl.persistent.size} MiB` : "";
}

function Instances({ app, views, act, ask }: { app: App | undefined; views: TaskView[]; act: Act; ask: Ask }) {
  if (views.length === 0) return <p class="muted">No instances.</p>;
  return (
    <div class="instances" data-testid="instances-list">
      {views.map((t) => (
        <article class="instance" key={t.instanceId} data-instance={t.instanceId} data-state={t.state} aria-label={`Instance ${t.instanceId}`}>
          <h3>
            <code>{t.instanceId}</code>
          </h3>
          <dl class="fields">
            <dt>Task</dt>
            <dd>
              <code>{t.id !== t.instanceId ? t.id : "none yet"}</code>
            </dd>
            <dt>Goal</dt>
            <dd data-testid="goal">{t.goal}</dd>
            <dt>State</dt>
            <dd data-testid="task-state">{t.state || "no task"}</dd>
            <dt>Health</dt>
            <dd data-testid="task-health">
              <Healthy v={t.healthy} />
            </dd>
            {t.ready !== undefined && (
              <>
                <dt>Readiness</dt>
                <dd>{t.ready ? <span class="ok">ready</span> : <span class="bad">not ready</span>}</dd>
              </>
            )}
            {t.version && (
              <>
                <dt>Version</dt>
                <dd>{t.version}</dd>
              </>
            )}
            <dt>Agent</dt>
            <dd>
              {t.host} <code>{t.agentId}</code>
            </dd>
            {t.agentNotice && (
              <>
                <dt>Agent notice</dt>
                <dd class="bad" data-testid="agent-notice">
                  {t.agentNotice}
                </dd>
              </>
            )}
            {t.berthEpoch > 0n && (
              <>
                <dt>Berth epoch</dt>
                <dd data-testid="berth-epoch">{String(t.berthEpoch)}</dd>
              </>
            )}
            <dt>Reservation</dt>
            <dd data-testid="reservation">
              {t.reservationState}
              {t.role ? ` (role ${t.role})` : ""}
            </dd>
            <dt>Volumes</dt>
            <dd>
              {t.localVolumes.length === 0
                ? "none"
                : t.localVolumes.map((v) => (
                    <div key={v.persistenceId} data-testid="volume">
                      <code>{v.persistenceId}</code> at {v.containerPath}, {volumeSize(v, app)}
                    </div>
                  ))}
            </dd>
            {t.ports.length > 0 && (
              <>
                <dt>Ports</dt>
                <dd>{t.ports.join(", ")}</dd>
              </>
            )}
            {t.startedAt && (
              <>
                <dt>Started</dt>
                <dd>{t.startedAt}</dd>
              </>
            )}
            {t.launchNotBefore && (
              <>
                <dt>Next launch not before</dt>
                <dd>{t.launchNotBefore}</dd>
              </>
            )}
            {(t.message || t.reason) && (
              <>
                <dt>Last status</dt>
                <dd>
                  {t.reason} {t.message}
                </dd>
              </>
            )}
            {t.lastFailure && (
              <>
                <dt>Last failure</dt>
                <dd class="bad" data-testid="instance-failure">
                  {[t.lastFailure.state, t.lastFailure.reason].filter(Boolean).join(" ")}: {t.lastFailure.message} (
                  {fmtTime(t.lastFailure.timestamp)})
                </dd>
              </>
            )}
          </dl>
          <HealthResults results={t.healthCheckResults} />
          <ReadinessResults results={t.readinessCheckResults} />
          <div class="buttons">
            <button
              type="button"
              disabled={!t.state}
              onClick={() => act("Killed (it is relaunched on its berth)", () => tasks.killTask({ id: t.id }))}
            >
              Kill
            </button>
            <button
              type="button"
              class="danger"
              data-testid="wipe"
              onClick={() =>
                ask({
                  title: "Kill and wipe this instance?",
                  body: `The task is killed and the persistent volume${t.localVolumes.length === 1 ? "" : "s"} of ${t.instanceId} (${t.localVolumes
                    .map((v) => v.persistenceId)
                    .join(", ") || "none"}) will be destroyed: its data is lost for good. A fresh instance with an empty volume replaces it.`,
                  label: "Kill and destroy the data",
                  danger: true,
                  run: () => tasks.killTask({ id: t.instanceId, wipe: true }),
                })
              }
            >
              Kill and wipe
            </button>
          </div>
          <Logs taskId={t.lastFailure && !t.state ? t.lastFailure.taskId : t.id} />
        </article>
      ))}
    </div>
  );
}

// Logs shows the tail of a task's stdout or stderr (ReadTaskLog).
function Logs({ taskId }: { taskId: string }) {
  const [file, setFile] = useState<TaskLogFile | null>(null);
  const [text, setText] = useState("");
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    if (file === null) return;
    const ctl = new AbortController();
    setText("");
    setError(undefined);
    (async () => {
      const dec = new TextDecoder();
      let out = "";
      try {
        for await (const chunk of tasks.readTaskLog({ taskId, file, lines: 100 }, { signal: ctl.signal })) {
          out += dec.decode(chunk.data, { stream: true });
          setText(out);
        }
        setText(out + dec.decode() || "(empty)");
      } catch (e) {
        if (!ctl.signal.aborted) setError(e);
      }
    })();
    return () => ctl.abort();
  }, [file, taskId]);
  return (
    <div class="logs">
      <button type="button" onClick={() => setFile(TaskLogFile.STDOUT)} aria-pressed={file === TaskLogFile.STDOUT}>
        stdout
      </button>{" "}
      <button type="button" onClick={() => setFile(TaskLogFile.STDERR)} aria-pressed={file === TaskLogFile.STDERR}>
        stderr
      </button>
      {file !== null && (
        <button type="button" class="link" onClick={() => setFile(null)}>
          hide
        </button>
      )}
      <ErrorBox error={error} what="read log" />
      {file !== null && !error && (
        <pre class="log" tabIndex={0} aria-label={`${file === TaskLogFile.STDOUT ? "stdout" : "stderr"} of ${taskId}`} data-testid="log">
          {text}
        </pre>
      )}
    </div>
  );
}

function Definition({ app }: { app: App }) {
  const [json, setJson] = useState("");
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    apps.renderApp({ app }).then((r) => setJson(r.json), setError);
  }, [app.version]);
  return (
    <details class="definition">
      <summary>
        <h2>Definition</h2>
      </summary>
      <ErrorBox error={error} />
      <pre tabIndex={0} data-testid="definition">
        {json}
      </pre>
    </details>
  );
}

function Versions({ id, current, ask }: { id: string; current: string; ask: Ask }) {
  const list = usePoll((signal) => apps.listAppVersions({ id }, { signal }), [id, current], 0);
  const versions = list.data?.versions ?? [];
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [diff, setDiff] = useState<{ op: string; text: string }[] | null>(null);
  const [error, setError] = useState<unknown>();
  const render = async (v: string) => {
    const r = await apps.getApp({ id, version: v });
    return (await apps.renderApp({ app: r.app })).json;
  };
  const compare = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      const [a, b] = await Promise.all([render(from || versions[1] || versions[0]), render(to || versions[0])]);
      setDiff(lineDiff(a, b));
    } catch (err) {
      setError(err);
    }
  };
  return (
    <section aria-labelledby="versions-title">
      <h2 id="versions-title">Versions</h2>
      <ErrorBox error={list.error ?? error} />
      <ol class="versions">
        {versions.map((v) => (
          <li key={v}>
            <code>{v}</code>
            {v === current ? (
              " (current)"
            ) : (
              <button
                type="button"
                onClick={() =>
                  ask({
                    title: `Roll ${id} back to ${v}?`,
                    body: "The definition of that version becomes the app's under a new version, and is deployed.",
                    label: "Roll back",
                    run: () => apps.updateApp({ id, versionToDeploy: v }),
                  })
                }
              >
                Roll back to this version
              </button>
            )}
          </li>
        ))}
      </ol>
      {versions.length > 1 && (
        <form class="inline" onSubmit={compare}>
          <label>
            From{" "}
            <select value={from || versions[1]} onChange={(e) => setFrom(e.currentTarget.value)}>
              {versions.map((v) => (
                <option key={v}>{v}</option>
              ))}
            </select>
          </label>{" "}
          <label>
            to{" "}
            <select value={to || versions[0]} onChange={(e) => setTo(e.currentTarget.value)}>
              {versions.map((v) => (
                <option key={v}>{v}</option>
              ))}
            </select>
          </label>{" "}
          <button type="submit" data-testid="compare">
            Compare
          </button>
        </form>
      )}
      {diff && (
        <pre class="diff" tabIndex={0} aria-label="Differences between the two versions">
          {diff.map((l, i) => (
            <div key={i} class={l.op === "+" ? "add" : l.op === "-" ? "del" : ""}>
              {l.op} {l.text}
            </div>
          ))}
        </pre>
      )}
      <p>
        <button type="button" class="link" onClick={() => go("/apps")}>
          Back to all apps
        </button>
      </p>
    </section>
  );
}
