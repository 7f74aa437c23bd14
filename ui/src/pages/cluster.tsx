import type { MesosResources } from "../gen/berth/v1/service_pb";
import { cluster } from "../api";
import { ErrorBox, usePoll } from "../util";

function Res({ r }: { r: MesosResources | undefined }) {
  if (!r) return null;
  const parts = [`${+r.cpus.toFixed(2)} cpus`, `${+r.mem.toFixed(0)} MiB mem`, `${+r.disk.toFixed(0)} MiB disk`];
  if (r.gpus) parts.push(`${r.gpus} gpus`);
  parts.push(`${r.ports} ports`);
  return <>{parts.join(", ")}</>;
}

// MesosSection shows the Mesos master's view: Berth's subscription and the
// agents with their resources (ClusterService.MesosStatus).
function MesosSection() {
  const load = usePoll((signal) => cluster.mesosStatus({}, { signal }), [], 5000);
  const m = load.data;
  return (
    <section aria-labelledby="mesos-title">
      <h2 id="mesos-title">Mesos</h2>
      <ErrorBox error={load.error} what="Mesos master" />
      {m && (
        <>
          <p data-testid="mesos-subscription">
            Master {m.master}: framework <code>{m.frameworkId || "(none yet)"}</code>{" "}
            {m.frameworkConnected ? (
              <span class="ok">subscribed{m.frameworkActive ? "" : " (inactive)"}</span>
            ) : (
              <span class="bad">not subscribed</span>
            )}
          </p>
          <table class="list" data-testid="agents">
            <thead>
              <tr>
                <th scope="col">Agent</th>
                <th scope="col">Active</th>
                <th scope="col">Total</th>
                <th scope="col">Free</th>
                <th scope="col">Reserved</th>
                <th scope="col">In use</th>
              </tr>
            </thead>
            <tbody>
              {m.agents.map((a) => (
                <tr key={a.id}>
                  <th scope="row">
                    {a.hostname} <code>{a.id}</code>
                  </th>
                  <td class={a.active ? "ok" : "bad"}>{a.active ? "yes" : "no"}</td>
                  <td>
                    <Res r={a.total} />
                  </td>
                  <td>
                    <Res r={a.free} />
                  </td>
                  <td>
                    <Res r={a.reserved} />
                  </td>
                  <td>
                    <Res r={a.allocated} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
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
