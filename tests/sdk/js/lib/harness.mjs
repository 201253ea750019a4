// Shared helpers for the JS SDK compatibility scripts (one script per building block).
//
// Output contract: one line per check, `ok - <name>` or `not ok - <name>: <why>`; skipped checks
// are `ok - <name> # SKIP <why>` (TAP style). Diagnostics start with `# `. The process exits 0
// only if every check passed.
//
// Every wait is bounded: each check has its own timeout and a watchdog ends the whole script
// after SDK_TEST_TIMEOUT_SECS (default 180) seconds.

const DEFAULT_CHECK_TIMEOUT_MS = 15_000;

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
    this.name = name;
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
 * GET /v1.0/metadata, bounded by the SDK at 62 tries 500 ms apart; the check's timeout covers a
 * sidecar that accepts and never answers). Ends the suite if the sidecar is not reachable.
 */
export async function startClient(suite, client) {
  const started = await suite.check(
    "client.start() waits for the sidecar (GET /v1.0/metadata polling)",
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
