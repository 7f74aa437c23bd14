// fieldLines maps each field path of a JSON text to the line (1-based) where
// it starts, in the API's path form: "container.volumes[0].persistent.size".
// It lets a field violation from the API be shown at its line. The text is
// scanned leniently: on malformed JSON it returns what it found so far.
export function fieldLines(text: string): Map<string, number> {
  const out = new Map<string, number>();
  let i = 0;
  let line = 1;
  const ws = () => {
    while (i < text.length) {
      const c = text[i];
      if (c === "\n") line++;
      else if (c !== " " && c !== "\t" && c !== "\r") return;
      i++;
    }
  };
  const str = (): string => {
    // text[i] is the opening quote.
    const start = ++i;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === "\\") i++;
      i++;
    }
    const raw = text.slice(start, i);
    i++;
    try {
      return JSON.parse('"' + raw + '"');
    } catch {
      return raw;
    }
  };
  const value = (path: string, depth: number): void => {
    if (depth > 64) throw new Error("too deep");
    ws();
    if (path) out.set(path, line);
    const c = text[i];
    if (c === "{") {
      i++;
      for (;;) {
        ws();
        if (text[i] === "}") {
          i++;
          return;
        }
        if (text[i] !== '"') throw new Error("key");
        const keyLine = line;
        const key = str();
        const p = path ? `${path}.${key}` : key;
        ws();
        if (text[i] !== ":") throw new Error("colon");
        i++;
        value(p, depth + 1);
        out.set(p, keyLine);
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return;
        } else throw new Error("object");
      }
    } else if (c === "[") {
      i++;
      for (let n = 0; ; n++) {
        ws();
        if (text[i] === "]") {
          i++;
          return;
        }
        value(`${path}[${n}]`, depth + 1);
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") {
          i++;
          return;
        } else throw new Error("array");
      }
    } else if (c === '"') {
      str();
    } else {
      while (i < text.length && !",}] \t\r\n".includes(text[i])) i++;
    }
  };
  try {
    value("", 0);
  } catch {
    // Malformed: keep the paths seen before the fault.
  }
  return out;
}

// lineOf finds the line of a violation's field: map keys written as
// env["LANG"] are looked up as env.LANG, and a path that is absent from the
// text (a required field left out) falls back to its nearest parent.
export function lineOf(lines: Map<string, number>, field: string): number | undefined {
  let p = field.replace(/\["((?:[^"\\]|\\.)*)"\]/g, (_, k) => "." + k);
  for (;;) {
    const l = lines.get(p);
    if (l !== undefined) return l;
    const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
    if (cut <= 0) return undefined;
    p = p.slice(0, cut);
  }
}
