import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { apps, errorText, fieldViolations, type FieldViolation } from "../api";
import { fieldLines, lineOf } from "../jsonpath";
import { ErrorBox, Link, appPath, go } from "../util";

const example = `{
  "id": "/my-app",
  "cmd": "sleep 3600",
  "cpus": 0.1,
  "mem": 32,
  "instances": 1
}`;

// EditPage creates an app (id undefined) or edits one, as Marathon JSON.
// The server parses (ParseApp) and validates (CreateApp / UpdateApp); each
// violation it names is shown at the line of its field.
export function EditPage({ id }: { id?: string }) {
  const [text, setText] = useState(id ? "" : example);
  const [loadError, setLoadError] = useState<unknown>();
  const [violations, setViolations] = useState<FieldViolation[]>([]);
  const [error, setError] = useState<string>("");
  const [busy, setBusy] = useState(false);
  const [force, setForce] = useState(false);
  const area = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    if (!id) return;
    (async () => {
      try {
        const res = await apps.getApp({ id });
        const r = await apps.renderApp({ app: res.app });
        setText(r.json);
      } catch (e) {
        setLoadError(e);
      }
    })();
  }, [id]);

  const lines = useMemo(() => fieldLines(text), [text]);
  const textLines = useMemo(() => text.split("\n"), [text]);
  const gutter = useRef<HTMLPreElement>(null);
  // The lines the violations point at are marked in the gutter.
  const badLines = useMemo(() => {
    const out = new Set<number>();
    for (const v of violations) {
      const l = lineOf(lines, v.field);
      if (l !== undefined) out.add(l);
    }
    return out;
  }, [violations, lines]);

  const fail = (e: unknown) => {
    const vs = fieldViolations(e);
    setViolations(vs);
    setError(vs.length ? "" : errorText(e));
  };

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setBusy(true);
    setViolations([]);
    setError("");
    try {
      const parsed = await apps.parseApp({ json: text });
      if (id) {
        await apps.updateApp({ id, app: parsed.app, force });
        go(appPath(id));
      } else {
        const res = await apps.createApp({ app: parsed.app });
        go(appPath(res.app?.id ?? parsed.app?.id ?? ""));
      }
    } catch (e) {
      fail(e);
    } finally {
      setBusy(false);
    }
  };

  const jump = (line: number | undefined) => {
    const ta = area.current;
    if (!ta || line === undefined) return;
    let start = 0;
    for (let i = 1; i < line; i++) start += textLines[i - 1].length + 1;
    ta.focus();
    ta.setSelectionRange(start, start + textLines[line - 1].length);
  };

  const title = id ? `Edit ${id}` : "Create app";
  return (
    <section aria-labelledby="edit-title">
      <h1 id="edit-title">{title}</h1>
      {id && (
        <p>
          <Link to={appPath(id)}>Back to {id}</Link>
        </p>
      )}
      <ErrorBox error={loadError} what="load app" />
      <form onSubmit={submit} class="editor">
        <label for="app-json">App definition (Marathon JSON)</label>
        <div class="code">
          <pre class="gutter" aria-hidden="true" ref={gutter}>
            {textLines.map((_, i) => (
              <div key={i} class={badLines.has(i + 1) ? "err" : ""}>
                {i + 1}
              </div>
            ))}
          </pre>
          <textarea
            id="app-json"
            ref={area}
            onScroll={(e) => {
              if (gutter.current) gutter.current.scrollTop = e.currentTarget.scrollTop;
            }}
            rows={Math.min(40, Math.max(14, textLines.length + 2))}
            spellcheck={false}
            value={text}
            aria-invalid={violations.length > 0 || error !== ""}
            aria-describedby="edit-errors"
            onInput={(e) => setText(e.currentTarget.value)}
            data-testid="app-json"
          />
        </div>
        {id && (
          <label class="inline">
            <input type="checkbox" checked={force} onChange={(e) => setForce(e.currentTarget.checked)} /> Force (cancel
            a running deployment of the app)
          </label>
        )}
        <div class="buttons">
          <button type="submit" disabled={busy} data-testid="save-app">
            {id ? "Save and deploy" : "Create and deploy"}
          </button>
        </div>
        <div id="edit-errors" aria-live="polite">
          {error && (
            <p class="error" role="alert" data-testid="edit-error">
              {error}
            </p>
          )}
          {violations.length > 0 && (
            <div class="violations" role="alert">
              <p>The server refused the definition:</p>
              <ol>
                {violations.map((v) => {
                  const line = lineOf(lines, v.field);
                  return (
                    <li key={v.field + v.description} data-field={v.field} class="violation">
                      {line !== undefined && (
                        <button type="button" class="link" onClick={() => jump(line)} aria-label={`Go to line ${line}`}>
                          line {line}
                        </button>
                      )}
                      {line !== undefined && <pre class="at">{textLines[line - 1].trim()}</pre>}
                      <span>
                        <code>{v.field}</code>: {v.description}
                      </span>
                    </li>
                  );
                })}
              </ol>
            </div>
          )}
        </div>
      </form>
    </section>
  );
}
