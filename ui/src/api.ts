// The API clients of the UI: the generated Connect clients of every service,
// over one transport that adds the ACL token the user entered. Nothing here
// knows a method by hand; the services come from src/gen (buf generate).
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { AppService, ClusterService, DeploymentService, EventService, TaskService } from "./gen/berth/v1/service_pb";
import { ACLService } from "./gen/berth/v1/acl_pb";
import { AgentService } from "./gen/berth/v1/agent_pb";
import { BackupService } from "./gen/berth/v1/backup_pb";

const tokenKey = "berth.token";

// The token lives in session storage: it is gone when the tab closes.
export function getToken(): string {
  return sessionStorage.getItem(tokenKey) ?? "";
}

export function setToken(secret: string) {
  if (secret) sessionStorage.setItem(tokenKey, secret);
  else sessionStorage.removeItem(tokenKey);
  for (const f of tokenListeners) f();
}

const tokenListeners = new Set<() => void>();

export function onTokenChange(f: () => void): () => void {
  tokenListeners.add(f);
  return () => tokenListeners.delete(f);
}

// Every call carries the token as the CLI sends it (Authorization: Bearer).
const withToken: Interceptor = (next) => (req) => {
  const t = getToken();
  if (t) req.header.set("Authorization", `Bearer ${t}`);
  return next(req);
};

const transport = createConnectTransport({
  baseUrl: location.origin,
  interceptors: [withToken],
});

export const apps = createClient(AppService, transport);
export const tasks = createClient(TaskService, transport);
export const deployments = createClient(DeploymentService, transport);
export const events = createClient(EventService, transport);
export const cluster = createClient(ClusterService, transport);
export const aclClient = createClient(ACLService, transport);
export const agents = createClient(AgentService, transport);
export const backups = createClient(BackupService, transport);

export interface FieldViolation {
  field: string;
  description: string;
}

// fieldViolations reads the google.rpc.BadRequest detail the API attaches
// to a validation error (rpc.ViolationsError): one violation per field.
// The message is small and fixed (repeated {1: field, 2: description}), so
// it is read with the wire reader rather than generating googleapis.
export function fieldViolations(err: unknown): FieldViolation[] {
  const ce = ConnectError.from(err);
  const out: FieldViolation[] = [];
  for (const d of ce.details) {
    if (!("type" in d) || d.type !== "google.rpc.BadRequest" || !(d.value instanceof Uint8Array)) continue;
    const r = new BinaryReader(d.value);
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (no !== 1 || wt !== WireType.LengthDelimited) {
        r.skip(wt);
        continue;
      }
      const fr = new BinaryReader(r.bytes());
      const v: FieldViolation = { field: "", description: "" };
      while (fr.pos < fr.len) {
        const [fno, fwt] = fr.tag();
        if (fno === 1 && fwt === WireType.LengthDelimited) v.field = fr.string();
        else if (fno === 2 && fwt === WireType.LengthDelimited) v.description = fr.string();
        else fr.skip(fwt);
      }
      out.push(v);
    }
  }
  return out;
}

// errorText is what the user reads of a failed call: the server's message
// after its code ("[permission_denied] ...").
export function errorText(err: unknown): string {
  return ConnectError.from(err).message;
}

export function isUnauthenticated(err: unknown): boolean {
  const c = ConnectError.from(err).code;
  return c === Code.Unauthenticated;
}

export function isPermissionDenied(err: unknown): boolean {
  return ConnectError.from(err).code === Code.PermissionDenied;
}

export function isNotFound(err: unknown): boolean {
  return ConnectError.from(err).code === Code.NotFound;
}

// isRefusal tells a request the server refused (retrying it as it is
// cannot help) from a failure to reach it.
export function isRefusal(err: unknown): boolean {
  const c = ConnectError.from(err).code;
  return c === Code.InvalidArgument || c === Code.PermissionDenied || c === Code.Unauthenticated || c === Code.NotFound;
}

export function isAbort(err: unknown): boolean {
  return ConnectError.from(err).code === Code.Canceled;
}

export function fmtTime(ts: Timestamp | undefined): string {
  if (!ts) return "";
  return timestampDate(ts).toISOString();
}
