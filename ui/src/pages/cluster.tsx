import { cluster } from "../api";
import { ErrorBox, usePoll } from "../util";

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
    </section>
  );
}
