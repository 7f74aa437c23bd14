import { useEffect, useState } from "preact/hooks";
import type { Event } from "../gen/berth/v1/service_pb";
import { events, isAbort, isRefusal, onTokenChange } from "../api";
import { ErrorBox, Link, appPath } from "../util";

const keep = 200;

// EventsPage streams events live (StreamEvents), newest first.
export function EventsPage() {
  const [list, setList] = useState<Event[]>([]);
  const [appId, setAppId] = useState("");
  const [types, setTypes] = useState("");
  const [error, setError] = useState<unknown>();
  const [status, setStatus] = useState("connecting…");
  const [tick, setTick] = useState(0);
  useEffect(() => onTokenChange(() => setTick((t) => t + 1)), []);
  useEffect(() => {
    const ctl = new AbortController();
    setError(undefined);
    (async () => {
      // Reconnect after a server restart or leader change, until the
      // page is left.
      while (!ctl.signal.aborted) {
        try {
          const want = types.split(",").map((t) => t.trim()).filter(Boolean);
          for await (const ev of events.streamEvents({ appId, types: want }, { signal: ctl.signal })) {
            // The server's first event (event_stream_attached) says the
            // stream is attached.
            setStatus("live");
            setError(undefined);
            setList((l) => [ev, ...l].slice(0, keep));
          }
        } catch (e) {
          if (ctl.signal.aborted || isAbort(e)) return;
          setError(e);
          // A refused stream is tried again when the filter or the token
          // changes.
          if (isRefusal(e)) {
            setStatus("refused");
            return;
          }
        }
        setStatus("reconnecting…");
        await new Promise((r) => setTimeout(r, 2000));
      }
    })();
    return () => ctl.abort();
  }, [appId, types, tick]);
  return (
    <section aria-labelledby="events-title">
      <h1 id="events-title">Events</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          App id
          <input type="search" value={appId} onChange={(e) => setAppId(e.currentTarget.value)} placeholder="all apps" />
        </label>
        <label>
          Types
          <input
            type="search"
            value={types}
            onChange={(e) => setTypes(e.currentTarget.value)}
            placeholder="all (or e.g. status_update_event, deployment_success)"
            size={40}
          />
        </label>
        <span class="muted" aria-live="polite">
          {status}
        </span>
        <button type="button" onClick={() => setList([])}>
          Clear
        </button>
      </form>
      <ErrorBox error={error} />
      <table class="list events" data-testid="events">
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Type</th>
            <th scope="col">App</th>
            <th scope="col">Instance / task</th>
            <th scope="col">What</th>
          </tr>
        </thead>
        <tbody>
          {list.map((ev, i) => (
            <tr key={list.length - i}>
              <td>{ev.timestamp}</td>
              <td>{ev.type}</td>
              <td>{ev.appId && <Link to={appPath(ev.appId)}>{ev.appId}</Link>}</td>
              <td>
                <code>{ev.taskId || ev.instanceId}</code>
              </td>
              <td>
                {[ev.taskState, ev.healthy === undefined ? "" : ev.healthy ? "healthy" : "unhealthy", ev.message, ev.deployment?.id ? `deployment ${ev.deployment.id}` : ""]
                  .filter(Boolean)
                  .join(" · ")}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
