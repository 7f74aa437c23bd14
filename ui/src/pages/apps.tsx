import { useState } from "preact/hooks";
import { apps } from "../api";
import { ErrorBox, Link, appPath, usePoll } from "../util";

// AppsPage lists the apps with their instance counts, deployments and last
// failure, filtered by id and label selector (ListApps does the filtering).
export function AppsPage() {
  const [idFilter, setIdFilter] = useState("");
  const [labelFilter, setLabelFilter] = useState("");
  const load = usePoll((signal) => apps.listApps({ idContains: idFilter, label: labelFilter }, { signal }), [idFilter, labelFilter]);
  const res = load.data;
  return (
    <section aria-labelledby="apps-title">
      <div class="titlebar">
        <h1 id="apps-title">Apps</h1>
        <Link to="/new" class="button" data-testid="new-app">
          Create app
        </Link>
      </div>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Id contains
          <input type="search" value={idFilter} onInput={(e) => setIdFilter(e.currentTarget.value)} name="id" />
        </label>
        <label>
          Label selector
          <input
            type="search"
            value={labelFilter}
            placeholder="tier==db, env in (prod,stage)"
            onInput={(e) => setLabelFilter(e.currentTarget.value)}
            name="label"
          />
        </label>
      </form>
      <ErrorBox error={load.error} />
      {res && res.apps.length === 0 && <p class="muted">No apps{idFilter || labelFilter ? " match the filter" : " yet"}.</p>}
      {res && res.apps.length > 0 && (
        <table class="list" data-testid="apps-table">
          <thead>
            <tr>
              <th scope="col">App</th>
              <th scope="col">Instances</th>
              <th scope="col">Running</th>
              <th scope="col">Staged</th>
              <th scope="col">Healthy</th>
              <th scope="col">Unhealthy</th>
              <th scope="col">Stopped</th>
              <th scope="col">Deployments</th>
              <th scope="col">Last failure</th>
            </tr>
          </thead>
          <tbody>
            {res.apps.map((app, i) => {
              const s = res.summaries[i];
              const f = s?.lastTaskFailure;
              return (
                <tr key={app.id} data-app={app.id}>
                  <th scope="row">
                    <Link to={appPath(app.id)}>{app.id}</Link>
                    {Object.keys(app.labels).length > 0 && (
                      <div class="labels">
                        {Object.entries(app.labels).map(([k, v]) => (
                          <span class="label" key={k}>
                            {k}={v}
                          </span>
                        ))}
                      </div>
                    )}
                  </th>
                  <td>{app.instances ?? 1}</td>
                  <td>{s?.tasksRunning ?? 0}</td>
                  <td>{s?.tasksStaged ?? 0}</td>
                  <td>{s?.tasksHealthy ?? 0}</td>
                  <td class={s?.tasksUnhealthy ? "bad" : ""}>{s?.tasksUnhealthy ?? 0}</td>
                  <td>{s?.instancesStopped ?? 0}</td>
                  <td>{s?.deployments.length ? s.deployments.length : ""}</td>
                  <td class="failure" data-testid="last-failure">
                    {f ? `${f.state}: ${f.message || f.reason}` : ""}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
