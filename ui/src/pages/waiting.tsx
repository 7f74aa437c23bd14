// Why instances wait (AppService.GetQueue) and the check results of an
// instance (TaskView): shared by the app page and the deployments page.
import type { HealthCheckResult, QueueEntry, ReadinessCheckResult } from "../gen/berth/v1/service_pb";
import { apps } from "../api";
import { ErrorBox, usePoll } from "../util";

// Waiting shows, for an app with instances waiting for an offer, the
// offers processed meanwhile and the reasons they were declined for (the
// leader's processed offers summary), in Marathon's funnel order.
export function Waiting({ appId }: { appId: string }) {
  const load = usePoll((signal) => apps.getQueue({ appId }, { signal }), [appId]);
  const entries = load.data?.queue.filter((q) => q.appId === appId) ?? [];
  if (!load.error && entries.length === 0) return null;
  return (
    <div class="note waiting" data-testid="waiting">
      <ErrorBox error={load.error} what="why instances wait" />
      {entries.map((q) => (
        <QueueEntryView key={q.appId} q={q} />
      ))}
    </div>
  );
}

function QueueEntryView({ q }: { q: QueueEntry }) {
  const sum = q.processedOffersSummary;
  const declined = sum?.rejectSummaryLaunchAttempt.filter((r) => r.declined > 0) ?? [];
  return (
    <>
      <p>
        {q.instanceIds.length} instance{q.instanceIds.length === 1 ? "" : "s"} waiting for an offer since {q.since}
        {sum ? `: ${sum.processedOffersCount} offers processed, ${sum.unusedOffersCount} did not fit.` : ": the leader has processed no offer for it yet."}
      </p>
      {declined.length > 0 && (
        <table class="list" data-testid="declined">
          <caption>Offers declined, by reason</caption>
          <thead>
            <tr>
              <th scope="col">Reason</th>
              <th scope="col">Declined</th>
              <th scope="col">Of processed</th>
            </tr>
          </thead>
          <tbody>
            {declined.map((r) => (
              <tr key={r.reason} data-reason={r.reason}>
                <th scope="row">{r.reason}</th>
                <td>{r.declined}</td>
                <td>{r.processed}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {q.lastUnusedOffers.length > 0 && (
        <details>
          <summary>Last unused offers</summary>
          <ul>
            {q.lastUnusedOffers.map((o) => (
              <li key={o.offerId}>
                {o.timestamp} {o.hostname} <code>{o.agentId}</code>: {o.reasons.join(", ")}
              </li>
            ))}
          </ul>
        </details>
      )}
    </>
  );
}

// HealthResults lists an instance's health check results, one per check.
export function HealthResults({ results }: { results: HealthCheckResult[] }) {
  if (results.length === 0) return null;
  return (
    <table class="list checks" data-testid="health-results">
      <caption>Health checks</caption>
      <thead>
        <tr>
          <th scope="col">Check</th>
          <th scope="col">Alive</th>
          <th scope="col">Consecutive failures</th>
          <th scope="col">Last success</th>
          <th scope="col">Last failure</th>
        </tr>
      </thead>
      <tbody>
        {results.map((r) => (
          <tr key={r.index}>
            <th scope="row">#{r.index}</th>
            <td class={r.alive ? "ok" : "bad"}>{r.alive ? "alive" : "not alive"}</td>
            <td>{r.consecutiveFailures}</td>
            <td>{r.lastSuccess}</td>
            <td>{[r.lastFailure, r.lastFailureCause].filter(Boolean).join(": ")}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// ReadinessResults lists readiness check results with the last answer.
export function ReadinessResults({ results }: { results: ReadinessCheckResult[] }) {
  if (results.length === 0) return null;
  return (
    <table class="list checks" data-testid="readiness-results">
      <caption>Readiness checks</caption>
      <thead>
        <tr>
          <th scope="col">Check</th>
          <th scope="col">Task</th>
          <th scope="col">Ready</th>
          <th scope="col">Last answer</th>
        </tr>
      </thead>
      <tbody>
        {results.map((r) => (
          <tr key={r.name + r.taskId}>
            <th scope="row">{r.name}</th>
            <td>
              <code>{r.taskId}</code>
            </td>
            <td class={r.ready ? "ok" : "bad"}>{r.ready ? "ready" : "not ready"}</td>
            <td>
              {r.lastResponse
                ? `HTTP ${r.lastResponse.status}${r.lastResponse.contentType ? ` (${r.lastResponse.contentType})` : ""}${r.lastResponse.body ? `: ${r.lastResponse.body.slice(0, 200)}` : ""}`
                : "none yet"}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
