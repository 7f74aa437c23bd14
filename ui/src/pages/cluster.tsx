import { useState } from "preact/hooks";
import type { MesosResources } from "../gen/berth/v1/service_pb";
import type { AgentResources, AgentView } from "../gen/berth/v1/agent_pb";
import { agents, cluster } from "../api";
import { Confirm, ErrorBox, usePoll } from "../util";

function Res({ r }: { r: MesosResources | AgentResources | undefined }) {
  if (!r) return null;
  const parts = [`${+r.cpus.toFixed(2)} cpus`, `${+r.mem.toFixed(0)} MiB mem`, `${+r.disk.toFixed(0)} MiB disk`];
  if (r.gpus) parts.push(`${r.gpus} gpus`);
  if ("ports" in r) parts.push(`${r.ports} ports`);
  return <>{parts.join(", ")}</>;
}

// MesosSection shows the Mesos master's view: Berth's subscription
// (ClusterService.MesosStatus) and the agents (AgentService.ListAgents)
// with their drain state, maintenance window and resources, and the
// operator's actions on them.
function MesosSection() {
  const load = usePoll((signal) => cluster.mesosStatus({}, { signal }), [], 5000);
  const list = usePoll((signal) => agents.listAgents({}, { signal }), []);
  const [notice, setNotice] = useState("");
  const [error, setError] = useState<unknown>();
  const [confirm, setConfirm] = useState<AgentView | null>(null);
  const act = async (what: string, run: () => Promise<unknown>) => {
    setNotice("");
    setError(undefined);
    try {
      await run();
      setNotice(what);
      list.reload();
    } catch (e) {
      setError(e);
    }
  };
  const m = load.data;
  const free = new Map((m?.agents ?? []).map((a) => [a.id, a.free]));
  return (
    <section aria-labelledby="mesos-title">
      <h2 id="mesos-title">Mesos</h2>
      <ErrorBox error={load.error} what="Mesos master" />
      {m && (
        <p data-testid="mesos-subscription">
          Master {m.master}: framework <code>{m.frameworkId || "(none yet)"}</code>{" "}
          {m.frameworkConnected ? (
            <span class="ok">subscribed{m.frameworkActive ? "" : " (inactive)"}</span>
          ) : (
            <span class="bad">not subscribed</span>
          )}
        </p>
      )}
      <h3>Agents</h3>
      <ErrorBox error={list.error} what="agents" />
      <div aria-live="polite">
        {notice && (
          <p class="notice" data-testid="agent-action-notice">
            {notice}
          </p>
        )}
      </div>
      <ErrorBox error={error} what="agent action failed" />
      {list.data && (
        <table class="list" data-testid="agents">
          <thead>
            <tr>
              <th scope="col">Agent</th>
              <th scope="col">State</th>
              <th scope="col">Total</th>
              <th scope="col">Free</th>
              <th scope="col">Reserved</th>
              <th scope="col">In use</th>
              <th scope="col">Maintenance</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {list.data.agents.map((a) => (
              <AgentRow key={a.id} a={a} free={free.get(a.id)} act={act} askGone={() => setConfirm(a)} />
            ))}
          </tbody>
        </table>
      )}
      {confirm && (
        <Confirm
          title={`Mark agent ${confirm.hostname} gone?`}
          confirmLabel="Mark gone"
          danger
          onCancel={() => setConfirm(null)}
          onConfirm={() => {
            const a = confirm;
            setConfirm(null);
            act(`Agent ${a.hostname} marked gone`, () => agents.markAgentGone({ agentId: a.id }));
          }}
        >
          <p>
            Mesos forgets the agent {confirm.hostname} (<code>{confirm.id}</code>) for good: its tasks are lost, and the reservations and
            persistent volumes on it, with their data, are destroyed. The instances whose berths were there start again elsewhere with
            empty volumes. It cannot be undone: the agent must re-register with a new id.
          </p>
        </Confirm>
      )}
    </section>
  );
}

function AgentRow({
  a,
  free,
  act,
  askGone,
}: {
  a: AgentView;
  free: MesosResources | undefined;
  act: (what: string, run: () => Promise<unknown>) => void;
  askGone: () => void;
}) {
  const [grace, setGrace] = useState("");
  const [start, setStart] = useState("");
  const [hours, setHours] = useState("1");
  const draining = a.state === "DRAINING" || a.state === "DRAINED";
  const g = grace.trim() === "" ? undefined : Number(grace);
  const graceValid = g === undefined || (Number.isFinite(g) && g >= 0);
  const h = Number(hours);
  return (
    <tr data-agent={a.id} data-hostname={a.hostname}>
      <th scope="row">
        {a.hostname} <code>{a.id}</code>
        {Object.entries(a.attributes).map(([k, v]) => (
          <div key={k} class="muted">
            {k}:{v}
          </div>
        ))}
      </th>
      <td class={a.state === "ACTIVE" ? "ok" : "bad"} data-testid="agent-state">
        {a.state}
        {a.drainMarkGone ? " (then gone)" : ""}
      </td>
      <td>
        <Res r={a.total} />
      </td>
      <td>
        <Res r={free} />
      </td>
      <td>
        <Res r={a.reserved} />
      </td>
      <td>
        <Res r={a.allocated} />
      </td>
      <td data-testid="agent-maintenance">
        {a.maintenanceStart ? `${a.maintenanceStart}${a.maintenanceDuration ? ` for ${a.maintenanceDuration}` : ""}` : "none"}
      </td>
      <td>
        <div class="buttons">
        {draining ? (
          <button type="button" data-testid="agent-reactivate" onClick={() => act(`Agent ${a.hostname} reactivated`, () => agents.reactivateAgent({ agentId: a.id }))}>
            Reactivate
          </button>
        ) : (
          <form
            class="inline"
            onSubmit={(e) => {
              e.preventDefault();
              if (graceValid) act(`Agent ${a.hostname} draining`, () => agents.drainAgent({ agentId: a.id, maxGraceSeconds: g }));
            }}
          >
            <label>
              Grace (s){" "}
              <input type="number" min={0} size={5} value={grace} placeholder="default" aria-invalid={!graceValid} onInput={(e) => setGrace(e.currentTarget.value)} data-testid="agent-grace" />
            </label>{" "}
            <button type="submit" disabled={!graceValid} data-testid="agent-drain">
              Drain
            </button>
          </form>
        )}
        <button type="button" class="danger" data-testid="agent-gone" onClick={askGone}>
          Mark gone
        </button>
        </div>
        <details>
          <summary>Maintenance</summary>
          <form
            class="inline"
            onSubmit={(e) => {
              e.preventDefault();
              act(`Maintenance of ${a.hostname} scheduled`, () =>
                agents.scheduleMaintenance({ agentIds: [a.id], start: start ? new Date(start).toISOString().replace(/\.\d{3}Z$/, "Z") : "", durationSeconds: h * 3600 }),
              );
            }}
          >
            <label>
              Start (local time, empty: now){" "}
              <input type="datetime-local" value={start} onInput={(e) => setStart(e.currentTarget.value)} />
            </label>{" "}
            <label>
              Hours <input type="number" min={0} step="any" size={4} value={hours} onInput={(e) => setHours(e.currentTarget.value)} />
            </label>{" "}
            <button type="submit" disabled={!(h >= 0)} data-testid="agent-schedule">
              Schedule
            </button>
          </form>
          {a.maintenanceStart && (
            <>
              <button type="button" onClick={() => act(`Maintenance of ${a.hostname} started (the agent goes down)`, () => agents.startMaintenance({ agents: [a.id] }))}>
                Start maintenance
              </button>{" "}
              <button type="button" onClick={() => act(`Maintenance of ${a.hostname} stopped`, () => agents.stopMaintenance({ agents: [a.id] }))}>
                Stop maintenance
              </button>
            </>
          )}
        </details>
      </td>
    </tr>
  );
}

// ClusterPage shows the Berth servers (gossip), the Raft leader and the
// Raft configuration.
export function ClusterPage() {
  const load = usePoll(
    async (signal) => {
      const [members, leader, peers] = await Promise.all([
        cluster.members({}, { signal }),
        cluster.leader({}, { signal }),
        cluster.listPeers({}, { signal }),
      ]);
      return { members: members.members, leader, peers: peers.peers };
    },
    [],
    5000,
  );
  const d = load.data;
  return (
    <section aria-labelledby="cluster-title">
      <h1 id="cluster-title">Cluster</h1>
      <ErrorBox error={load.error} />
      {d && (
        <>
          <h2>Leader</h2>
          <p data-testid="leader">
            {d.leader.id ? (
              <>
                <strong>{d.leader.id}</strong> (API {d.leader.apiAddr}, Raft {d.leader.raftAddr}, term {String(d.leader.term)})
              </>
            ) : (
              "No leader known"
            )}
          </p>
          <h2>Servers</h2>
          <table class="list">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">API</th>
                <th scope="col">Raft</th>
                <th scope="col">Gossip</th>
                <th scope="col">Version</th>
                <th scope="col">Leader</th>
                <th scope="col">Disk</th>
              </tr>
            </thead>
            <tbody>
              {d.members.map((m) => (
                <tr key={m.name}>
                  <th scope="row">{m.name}</th>
                  <td class={m.status === "alive" ? "ok" : "bad"}>{m.status}</td>
                  <td>{m.apiAddr}</td>
                  <td>{m.raftAddr}</td>
                  <td>{m.gossipAddr}</td>
                  <td>{m.version}</td>
                  <td>{m.leader ? "yes" : ""}</td>
                  <td class={m.diskError ? "bad" : ""}>{m.diskError || "ok"}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h2>Raft peers</h2>
          <table class="list" data-testid="peers">
            <thead>
              <tr>
                <th scope="col">Id</th>
                <th scope="col">Address</th>
                <th scope="col">Suffrage</th>
                <th scope="col">Leader</th>
              </tr>
            </thead>
            <tbody>
              {d.peers.map((p) => (
                <tr key={p.id}>
                  <th scope="row">{p.id}</th>
                  <td>{p.address}</td>
                  <td>{p.suffrage}</td>
                  <td>{p.leader ? "yes" : ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      <MesosSection />
    </section>
  );
}
