// Shared helpers for the JS SDK compatibility scripts (one script per building block).
//
// Output contract: one line per check, `ok - <name>` or `not ok - <name>: <why>`; skipped checks
// are `ok - <name> # SKIP <why>` (TAP style). Diagnostics start with `# `. The process exits 0
// only if every check passed.
//
// Every wait is bounded: each check has its own timeout and a watchdog ends the whole script
// after SDK_TEST_TIMEOUT_SECS (default 180) seconds.
//
// Protocol: DAPR_COMMUNICATION_PROTOCOL=http (default) or grpc picks the SDK's transport for every
// DaprClient / DaprServer a script builds (`clientOptions()`). In gRPC mode the client dials
// 127.0.0.1:$DAPR_GRPC_PORT (passed as daprPort) and errors are connect-es ConnectErrors
// (`parseSdkGrpcError`) instead of the HTTP client's JSON-in-Error.
import { CommunicationProtocolEnum, DaprClient, LogLevel } from "@dapr/dapr";

const DEFAULT_CHECK_TIMEOUT_MS = 15_000;

const PROTOCOL_RAW = (process.env.DAPR_COMMUNICATION_PROTOCOL ?? "").trim().toLowerCase();
if (PROTOCOL_RAW !== "" && PROTOCOL_RAW !== "http" && PROTOCOL_RAW !== "grpc") {
  console.log(
    `not ok - environment: DAPR_COMMUNICATION_PROTOCOL must be "http" or "grpc", got ${JSON.stringify(process.env.DAPR_COMMUNICATION_PROTOCOL)}`,
  );
  process.exit(2);
}
/** "http" (the default) or "grpc", from DAPR_COMMUNICATION_PROTOCOL. */
export const PROTOCOL = PROTOCOL_RAW || "http";
/** True when the scripts drive the sidecar through the SDK's gRPC transport. */
export const GRPC = PROTOCOL === "grpc";
/** The environment variable naming the sidecar port the selected transport uses. */
export const API_PORT_ENV = GRPC ? "DAPR_GRPC_PORT" : "DAPR_HTTP_PORT";

/**
 * DaprClient options (also DaprServer `clientOptions`) for the selected protocol, merged with
 * `extra`. HTTP leaves host and port to the SDK (127.0.0.1:$DAPR_HTTP_PORT), as an application
 * would; gRPC passes daprHost 127.0.0.1 and daprPort $DAPR_GRPC_PORT explicitly.
 */
export function clientOptions(extra = {}) {
  if (!GRPC) return { communicationProtocol: CommunicationProtocolEnum.HTTP, ...extra };
  return {
    communicationProtocol: CommunicationProtocolEnum.GRPC,
    daprHost: "127.0.0.1",
    daprPort: process.env.DAPR_GRPC_PORT,
    ...extra,
  };
}

/** Writes one SDK log line as a `# ` diagnostic, on one line. */
const diag = (lvl) => (msg, ...rest) =>
  console.log(`# sdk ${lvl}: ${[msg, ...rest].map(String).join(" ").replace(/\s*\n\s*/g, " | ")}`);

/** The SDK's logger for the scripts: warnings and errors (everything with SDK_DEBUG set) as diagnostics. */
export const sdkLogger = {
  level: process.env.SDK_DEBUG ? LogLevel.Debug : LogLevel.Warn,
  service: { error: diag("error"), warn: diag("warn"), info: diag("info"), verbose: diag("verbose"), debug: diag("debug") },
};

/** A DaprClient for the selected protocol (`clientOptions`), logging through `sdkLogger`. */
export function newClient(extra = {}) {
  return new DaprClient(clientOptions({ logger: sdkLogger, ...extra }));
}

/** `http`, or `grpc` in gRPC mode: for check names and expectations that differ by transport. */
export function byProtocol(http, grpc) {
  return GRPC ? grpc : http;
}

/** Reads required environment variables; exits with a failure line when one is missing. */
export function requireEnv(...names) {
  const out = {};
  const missing = [];
  for (const n of names) {
    const v = process.env[n];
    if (v === undefined || v === "") missing.push(n);
    else out[n] = v;
  }
  if (missing.length) {
    console.log(`not ok - environment: missing ${missing.join(", ")}`);
    process.exit(2);
  }
  return out;
}

function oneLine(s) {
  return String(s).replace(/\s*\n\s*/g, " | ").slice(0, 800);
}

export function fmt(v) {
  if (typeof v === "string") return JSON.stringify(v);
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

/** Throws unless actual === expected (or deep-equal for plain JSON values). */
export function expectEq(what, actual, expected) {
  const same =
    typeof expected === "object" && expected !== null
      ? fmt(sortKeys(actual)) === fmt(sortKeys(expected))
      : actual === expected;
  if (!same) throw new Error(`${what}: expected ${fmt(expected)}, got ${fmt(actual)}`);
}

export function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sortKeys(v[k])]),
    );
  }
  return v;
}

/**
 * The JS SDK (HTTPClient.execute) throws `new Error(JSON.stringify({error: statusText,
 * error_msg: <response body text>, status}))` for any status outside 200..399. Returns
 * {status, statusText, body, errorCode} or null if `e` is not such an error.
 */
export function parseSdkHttpError(e) {
  let parsed;
  try {
    parsed = JSON.parse(e?.message ?? "");
  } catch {
    return null;
  }
  if (!parsed || typeof parsed !== "object" || !("status" in parsed)) return null;
  let errorCode;
  try {
    errorCode = JSON.parse(parsed.error_msg)?.errorCode;
  } catch {
    errorCode = undefined;
  }
  return { status: parsed.status, statusText: parsed.error, body: parsed.error_msg, errorCode };
}

/** gRPC status code names (Go's spelling), indexed by code. */
export const GRPC_CODES = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
];

/** The fields of a protobuf message as [fieldNumber, value] (varint as Number, bytes as Uint8Array). */
function protoFields(bytes) {
  const out = [];
  let pos = 0;
  const varint = () => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = bytes[pos++];
      if (b === undefined) throw new Error("truncated varint");
      v += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) return v;
    }
  };
  while (pos < bytes.length) {
    const tag = varint();
    const no = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) out.push([no, varint()]);
    else if (wire === 2) {
      const n = varint();
      if (pos + n > bytes.length) throw new Error("truncated length-delimited field");
      out.push([no, bytes.subarray(pos, pos + n)]);
      pos += n;
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

const utf8 = (b) => Buffer.from(b).toString("utf8");

/** google.rpc.ErrorInfo {reason = 1, domain = 2, map<string, string> metadata = 3}. */
function decodeErrorInfo(bytes) {
  const info = { reason: "", domain: "", metadata: {} };
  for (const [no, v] of protoFields(bytes)) {
    if (no === 1) info.reason = utf8(v);
    else if (no === 2) info.domain = utf8(v);
    else if (no === 3) {
      let key = "";
      let value = "";
      for (const [eno, ev] of protoFields(v)) {
        if (eno === 1) key = utf8(ev);
        else if (eno === 2) value = utf8(ev);
      }
      info.metadata[key] = value;
    }
  }
  return info;
}

/**
 * The SDK's gRPC client (connect-es) throws a ConnectError: `code` (number), `rawMessage`,
 * `details` ([{type, value}] from grpc-status-details-bin; when that trailer is present connect
 * takes code and message from it) and `metadata` (the trailers). Returns {code (Go name),
 * message, detailTypes, errorInfo (the first google.rpc.ErrorInfo, decoded), statusMismatch
 * (why grpc-status/grpc-message disagree with the details' google.rpc.Status, else "")}, or null
 * if `e` is not a ConnectError.
 */
export function parseSdkGrpcError(e) {
  if (!e || typeof e !== "object" || e.name !== "ConnectError" || typeof e.code !== "number") return null;
  const details = (e.details ?? []).map((d) => ({ type: d.type ?? d.desc?.typeName, value: d.value }));
  const infos = details.filter((d) => d.type === "google.rpc.ErrorInfo").map((d) => decodeErrorInfo(d.value));
  let statusMismatch = "";
  const md = e.metadata;
  if (md?.get?.("grpc-status-details-bin") != null) {
    const status = md.get("grpc-status");
    let message = md.get("grpc-message") ?? "";
    try {
      message = decodeURIComponent(message);
    } catch {
      // left as sent
    }
    if (status !== String(e.code)) {
      statusMismatch = `grpc-status ${status} but google.rpc.Status code ${e.code}`;
    } else if (message !== e.rawMessage) {
      statusMismatch = `grpc-message ${JSON.stringify(message)} but google.rpc.Status message ${JSON.stringify(e.rawMessage)}`;
    }
  }
  return {
    code: GRPC_CODES[e.code] ?? String(e.code),
    message: e.rawMessage,
    detailTypes: details.map((d) => d.type),
    errorInfo: infos[0],
    statusMismatch,
  };
}

/**
 * Asserts that `e` is a ConnectError with gRPC status `code` and returns parseSdkGrpcError(e).
 * `message`: the exact message, or a RegExp it must match. `reason`: the ErrorInfo reason
 * (domain must be dapr.io); `details`: the exact list of detail type names (default: one
 * ErrorInfo when `reason` is given, none otherwise). The google.rpc.Status in
 * grpc-status-details-bin must agree with grpc-status / grpc-message.
 */
export function expectGrpcError(what, e, { code, message, reason, details } = {}) {
  const g = parseSdkGrpcError(e);
  expect(g, `${what}: expected a gRPC error (ConnectError), got ${e?.message ?? fmt(e)}`);
  expectEq(`${what}: gRPC code (message ${JSON.stringify(g.message)})`, g.code, code);
  if (message instanceof RegExp) {
    expect(message.test(g.message), `${what}: message ${JSON.stringify(g.message)} does not match ${message}`);
  } else if (message !== undefined) {
    expectEq(`${what}: message`, g.message, message);
  }
  expectEq(
    `${what}: details`,
    g.detailTypes,
    details ?? (reason !== undefined ? ["google.rpc.ErrorInfo"] : []),
  );
  if (reason !== undefined) {
    expectEq(`${what}: ErrorInfo.reason`, g.errorInfo?.reason, reason);
    expectEq(`${what}: ErrorInfo.domain`, g.errorInfo?.domain, "dapr.io");
  }
  expect(!g.statusMismatch, `${what}: ${g.statusMismatch}`);
  return g;
}

/** Runs `fn` and returns the error it throws; fails if it resolves. */
export async function expectReject(what, fn) {
  let value;
  try {
    value = await fn();
  } catch (e) {
    return e;
  }
  throw new Error(`${what}: expected the SDK to throw, it returned ${fmt(value)}`);
}

function withTimeout(promise, ms, name) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class Suite {
  constructor(name) {
    this.name = GRPC ? `${name} (grpc)` : name;
    this.passed = 0;
    this.failed = 0;
    this.skipped = 0;
    const secs = Number(process.env.SDK_TEST_TIMEOUT_SECS || 180);
    this.watchdog = setTimeout(() => {
      console.log(`not ok - watchdog: ${name} did not finish within ${secs} s`);
      process.exit(3);
    }, secs * 1000);
    this.watchdog.unref();
  }

  /** Runs one check; returns true if it passed. */
  async check(name, fn, { timeoutMs = DEFAULT_CHECK_TIMEOUT_MS } = {}) {
    try {
      await withTimeout(Promise.resolve().then(fn), timeoutMs, name);
      this.passed++;
      console.log(`ok - ${name}`);
      return true;
    } catch (e) {
      this.failed++;
      const why = e instanceof Error ? e.message : fmt(e);
      console.log(`not ok - ${name}: ${oneLine(why)}`);
      return false;
    }
  }

  skip(name, why) {
    this.skipped++;
    console.log(`ok - ${name} # SKIP ${oneLine(why)}`);
  }

  /** Prints the summary and exits (0 only if nothing failed). */
  finish() {
    clearTimeout(this.watchdog);
    const total = this.passed + this.failed;
    console.log(
      `# ${this.name}: checks=${total} passed=${this.passed} failed=${this.failed} skipped=${this.skipped}`,
    );
    process.exit(this.failed === 0 && total > 0 ? 0 : 1);
  }
}

/**
 * The first check of every script: the SDK's own readiness wait (client.start() polls
 * GET /v1.0/metadata over HTTP, the GetMetadata RPC over gRPC, bounded by the SDK at ~62 tries
 * 500 ms apart; the check's timeout covers a sidecar that accepts and never answers). Ends the
 * suite if the sidecar is not reachable.
 */
export async function startClient(suite, client) {
  const started = await suite.check(
    byProtocol(
      "client.start() waits for the sidecar (GET /v1.0/metadata polling)",
      "client.start() waits for the sidecar (gRPC GetMetadata polling)",
    ),
    async () => {
      await client.start();
      expect(client.getIsInitialized(), "client not initialised after start()");
    },
    { timeoutMs: 45_000 },
  );
  if (!started) {
    console.log("# sidecar not reachable through the SDK; remaining checks not run");
    suite.finish();
  }
}

/**
 * The app side's first check: `server.start()` (listen on $APP_PORT, then the SDK's own wait for
 * the sidecar), named `what`. Ends the suite, stopping the server, if it does not start.
 */
export async function startServer(suite, server, what) {
  const serving = await suite.check(what, async () => {
    await server.start();
  }, { timeoutMs: 45_000 });
  if (!serving) {
    console.log("# the app could not start; remaining checks not run");
    await bounded(server.stop(), 5_000);
    suite.finish();
  }
}

/** Polls `cond` every 25 ms until it is truthy; throws `why()` after `ms`. */
export async function waitUntil(cond, ms, why) {
  const until = Date.now() + ms;
  for (;;) {
    if (cond()) return;
    if (Date.now() >= until) throw new Error(why());
    await new Promise((r) => setTimeout(r, 25)); // poll interval, not a fixed wait
  }
}

/** Races `p` against a timer (for shutdown steps, which must not hang the exit). */
export function bounded(p, ms) {
  let t;
  return Promise.race([p, new Promise((r) => (t = setTimeout(r, ms)))]).finally(() => clearTimeout(t));
}
