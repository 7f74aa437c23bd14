// The Backups section of an app page: its backups (BackupService), live
// progress of running copies (backup_progress events), and the actions:
// create, verify, delete, restore into the instance.
import { useEffect, useState } from "preact/hooks";
import type { App } from "../gen/berth/v1/app_pb";
import { BackupKind, BackupState, type Backup } from "../gen/berth/v1/backup_pb";
import type { TaskView } from "../gen/berth/v1/service_pb";
import { backups, events, fmtTime, isAbort, isRefusal } from "../api";
import { ErrorBox, usePoll } from "../util";

type Ask = (p: { title: string; body: string; label: string; danger?: boolean; run: () => Promise<unknown> }) => void;

interface Progress {
  message: string;
  rate: number;
}

// useBackupEvents follows the app's backup events while enabled: progress
// by backup id, and a counter that changes whenever a record changed state.
function useBackupEvents(appId: string, enabled: boolean): { progress: Record<string, Progress>; changed: number } {
  const [progress, setProgress] = useState<Record<string, Progress>>({});
  const [changed, setChanged] = useState(0);
  useEffect(() => {
    if (!enabled) return;
    const ctl = new AbortController();
    (async () => {
      while (!ctl.signal.aborted) {
        try {
          for await (const ev of events.streamEvents({ appId, types: ["backup_event", "backup_progress"] }, { signal: ctl.signal })) {
            const id = ev.backup?.id;
            if (!id) continue;
            if (ev.type === "backup_progress") setProgress((p) => ({ ...p, [id]: { message: ev.message, rate: ev.rateBytesPerSecond } }));
            else setChanged((c) => c + 1);
          }
        } catch (e) {
          if (ctl.signal.aborted || isAbort(e) || isRefusal(e)) return;
        }
        await new Promise((r) => setTimeout(r, 2000));
      }
    })();
    return () => ctl.abort();
  }, [appId, enabled]);
  return { progress, changed };
}

const stateName = (s: BackupState) => BackupState[s] ?? String(s);

function mib(n: bigint): string {
  return `${(Number(n) / (1 << 20)).toFixed(1)} MiB`;
}

// Backups lists the app's backups and restores (newest first, as the API
// sorts them) with their actions.
export function Backups({ app, instances, ask }: { app: App; instances: TaskView[]; ask: Ask }) {
  const appId = app.id;
  const live = useBackupEvents(appId, !!app.backup);
  const list = usePoll((signal) => backups.listBackups({ appId, includeRestores: true }, { signal }), [appId, live.changed]);
  const [notice, setNotice] = useState("");
  const [error, setError] = useState<unknown>();
  const [instance, setInstance] = useState("");
  const run = async (what: (r: unknown) => string, call: () => Promise<unknown>) => {
    setNotice("");
    setError(undefined);
    try {
      setNotice(what(await call()));
      list.reload();
    } catch (e) {
      setError(e);
    }
  };
  const all = list.data?.backups ?? [];
  if (!app.backup && all.length === 0) return null;
  return (
    <section aria-labelledby="backups-title" data-testid="backups">
      <h2 id="backups-title">Backups</h2>
      {app.backup && (
        <p class="muted">
          Target <code>{app.backup.target}</code>
          {app.backup.schedule ? `, schedule ${app.backup.schedule}` : ", on request only"}
        </p>
      )}
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          run(
            (r) => `Backup requested: ${(r as { backups: Backup[] }).backups.map((b) => b.id).join(", ")}`,
            () => backups.createBackup({ appId, instanceId: instance }),
          );
        }}
      >
        <label>
          Instance{" "}
          <select value={instance} onChange={(e) => setInstance(e.currentTarget.value)}>
            <option value="">every instance</option>
            {instances.map((t) => (
              <option key={t.instanceId} value={t.instanceId}>
                {t.instanceId}
              </option>
            ))}
          </select>
        </label>{" "}
        <button type="submit" data-testid="backup-create">
          Create backup
        </button>
      </form>
      <div aria-live="polite">
        {notice && (
          <p class="notice" data-testid="backup-notice">
            {notice}
          </p>
        )}
      </div>
      <ErrorBox error={error} what="backup action failed" />
      <ErrorBox error={list.error} />
      {list.data && all.length === 0 && <p class="muted">No backups yet.</p>}
      {all.length > 0 && (
        <table class="list" data-testid="backup-list">
          <thead>
            <tr>
              <th scope="col">Id</th>
              <th scope="col">Kind</th>
              <th scope="col">Instance</th>
              <th scope="col">State</th>
              <th scope="col">Size</th>
              <th scope="col">Chunks (new)</th>
              <th scope="col">Created</th>
              <th scope="col">Finished</th>
              <th scope="col">Verified</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {all.map((b) => {
              const p = live.progress[b.id];
              const isBackup = b.kind !== BackupKind.RESTORE;
              const running = b.state === BackupState.RUNNING || b.state === BackupState.PENDING;
              return (
                <tr key={b.id} data-backup={b.id} data-state={stateName(b.state)}>
                  <th scope="row">
                    <code>{b.id}</code>
                    {b.scheduled ? " (scheduled)" : ""}
                  </th>
                  <td>{isBackup ? "backup" : `restore of ${b.sourceBackupId}`}</td>
                  <td>
                    <code>{b.instanceId}</code>
                  </td>
                  <td class={b.state === BackupState.FAILED ? "bad" : b.state === BackupState.SUCCEEDED ? "ok" : ""} data-testid="backup-state">
                    {stateName(b.state)}
                    {b.error && `: ${b.error}`}
                    {running && p && (
                      <div data-testid="backup-progress">
                        {p.message}
                        {p.rate > 0 ? `, ${(p.rate / (1 << 20)).toFixed(1)} MiB/s` : ""}
                      </div>
                    )}
                  </td>
                  <td>{mib(b.bytes)}</td>
                  <td>
                    {String(b.chunksTotal)} ({String(b.chunksNew)})
                  </td>
                  <td>{fmtTime(b.createdAt)}</td>
                  <td>{fmtTime(b.finishedAt)}</td>
                  <td class={b.verifyError ? "bad" : ""} data-testid="backup-verified">
                    {b.verifyError || fmtTime(b.verifiedAt)}
                  </td>
                  <td>
                    <div class="buttons">
                    {isBackup && b.state === BackupState.SUCCEEDED && (
                      <>
                        <button
                          type="button"
                          data-testid="backup-verify"
                          onClick={() =>
                            run((r) => {
                              const v = r as { ok: boolean; chunks: bigint; missingChunks: string[]; corruptChunks: string[] };
                              return `Backup ${b.id} ${v.ok ? "verified" : "DAMAGED"}: ${v.chunks} chunks read, ${v.missingChunks.length} missing, ${v.corruptChunks.length} corrupt`;
                            }, () => backups.verifyBackup({ id: b.id }))
                          }
                        >
                          Verify
                        </button>
                        <button
                          type="button"
                          class="danger"
                          data-testid="backup-restore"
                          onClick={() =>
                            ask({
                              title: `Restore ${b.id} into ${b.instanceId}?`,
                              body: `The instance ${b.instanceId} is stopped and the current data of its volume is replaced by the backup ${b.id} of ${fmtTime(b.finishedAt)}: whatever was written since is lost. The instance starts again on the restored data.`,
                              label: "Replace the volume's data",
                              danger: true,
                              run: () => backups.restore({ appId, instanceId: b.instanceId, backupId: b.id }),
                            })
                          }
                        >
                          Restore
                        </button>
                      </>
                    )}
                    {!running && (
                      <button
                        type="button"
                        data-testid="backup-delete"
                        onClick={() =>
                          ask({
                            title: `Delete ${b.id}?`,
                            body: `The ${isBackup ? "backup" : "restore record"} ${b.id} is deleted${isBackup ? ", with the chunks no other backup uses: it cannot be restored any more" : ""}.`,
                            label: "Delete",
                            danger: isBackup,
                            run: () => backups.deleteBackup({ id: b.id }),
                          })
                        }
                      >
                        Delete
                      </button>
                    )}
                    </div>
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
