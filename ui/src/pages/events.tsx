import { useEffect, useState } from "preact/hooks";
import type { Event } from "../gen/berth/v1/service_pb";
import { events, isAbort, onTokenChange } from "../api";
import { ErrorBox, Link, appPath } from "../util";

const keep = 200;

// EventsPage streams events live (StreamEvents), newest first.
export function EventsPage() {
  const [list, setList] = useState<Event[]>([]);
  const [appId, setAppId] = useState("");
  const [error, setError] = useState<unknown>();
  const [connected, setConnected] = useState(false);
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
          setConnected(true);
          for await (const ev of events.streamEvents({ appId }, { signal: ctl.signal })) {
            setError(undefined);
            setList((l) => [ev, ...l].slice(0, keep));
          }
        } catch (e) {
          if (ctl.signal.aborted || isAbort(e)) return;
          setError(e);
        }
        setConnected(false);
        await new Promise((r) => setTimeout(r, 2000));
      }
    })();
    return () => ctl.abort();
  }, [appId, tick]);
  return (
    <section aria-labelledby="events-title">
      <h1 id="events-title">Events</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          App id
          <input type="search" value={appId} onChange={(e) => setAppId(e.currentTarget.value)} placeholder="all apps" />
        </label>
        <span class="muted" aria-live="polite">
          {connected ? "live" : "reconnecting…"}
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
