// Shared pieces of the pages: polling loads, error boxes, the confirmation
// dialog and the hash router's links.
import { useEffect, useRef, useState } from "preact/hooks";
import type { ComponentChildren } from "preact";
import { errorText, isUnauthenticated, onTokenChange } from "./api";

// The pages refresh what they show at this interval (and at once after an
// action or a new token).
export const refreshMillis = 2000;

export interface Load<T> {
  data?: T;
  error?: unknown;
  reload: () => void;
}

// usePoll runs fetch now, every refreshMillis and whenever the token
// changes, keeping the last good result while a refresh fails.
export function usePoll<T>(fetch: (signal: AbortSignal) => Promise<T>, deps: unknown[], every = refreshMillis): Load<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown }>({});
  const [tick, setTick] = useState(0);
  const fetchRef = useRef(fetch);
  fetchRef.current = fetch;
  useEffect(() => onTokenChange(() => setTick((t) => t + 1)), []);
  useEffect(() => {
    const ctl = new AbortController();
    let timer: number | undefined;
    const run = async () => {
      // A tab in the background does not poll (it catches up when shown).
      if (document.hidden && every > 0) {
        timer = window.setTimeout(run, every);
        return;
      }
      try {
        const data = await fetchRef.current(ctl.signal);
        if (!ctl.signal.aborted) setState({ data });
      } catch (error) {
        if (!ctl.signal.aborted) setState((s) => ({ data: s.data, error }));
      }
      if (!ctl.signal.aborted && every > 0) timer = window.setTimeout(run, every);
    };
    run();
    return () => {
      ctl.abort();
      window.clearTimeout(timer);
    };
  }, [...deps, tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

export function ErrorBox({ error, what }: { error: unknown; what?: string }) {
  if (!error) return null;
  if (isUnauthenticated(error)) {
    return (
      <p class="error" role="alert" data-testid="need-token">
        This server requires an ACL token. Enter one in the token field at the top of the page.
      </p>
    );
  }
  return (
    <p class="error" role="alert">
      {what ? `${what}: ` : ""}
      {errorText(error)}
    </p>
  );
}

export function Link({ to, children, ...rest }: { to: string; children: ComponentChildren; [k: string]: unknown }) {
  return (
    <a href={"#" + to} {...rest}>
      {children}
    </a>
  );
}

export function appPath(id: string): string {
  return "/app/" + encodeURIComponent(id);
}

export function go(to: string) {
  location.hash = "#" + to;
}

// Confirm is a modal dialog asking to confirm a destructive action; the
// text says what will be lost. It is keyboard-operable (Escape cancels).
export function Confirm({
  title,
  children,
  confirmLabel,
  danger,
  onConfirm,
  onCancel,
}: {
  title: string;
  children: ComponentChildren;
  confirmLabel: string;
  danger?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  return (
    <dialog ref={ref} class="confirm" aria-labelledby="confirm-title" onCancel={onCancel} data-testid="confirm">
      <h2 id="confirm-title">{title}</h2>
      <div>{children}</div>
      <div class="buttons">
        <button type="button" onClick={onCancel} autofocus>
          Cancel
        </button>
        <button type="button" class={danger ? "danger" : ""} onClick={onConfirm} data-testid="confirm-ok">
          {confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

export function Healthy({ v }: { v: boolean | undefined }) {
  if (v === undefined) return <span class="muted">unknown</span>;
  return v ? <span class="ok">healthy</span> : <span class="bad">unhealthy</span>;
}
