// State management, driven through the official Dapr JS SDK (`client.state.*`) over HTTP, or over
// gRPC with DAPR_COMMUNICATION_PROTOCOL=grpc.
//
// Environment (set by the e2e harness):
//   DAPR_HTTP_PORT   Dapr HTTP API port of the sidecar (the SDK reads it itself)
//   DAPR_GRPC_PORT   instead, in gRPC mode: its gRPC API port (passed to the SDK as daprPort)
//   DAPR_COMMUNICATION_PROTOCOL  optional: http (default) or grpc
//   STATE_STORE      a state store with ETags, transactions, TTL and query support
//   MISSING_STORE    a store name that does not exist
//   DAPR_API_TOKEN   optional; the SDK sends it as `dapr-api-token` on its own
//
// SDK calls made (HTTPClientState, @dapr/dapr 3.18.0; see tests/sdk/README.md):
//   state.save(s, items, {metadata})  POST /v1.0/state/<s>?metadata.k=v, JSON array of
//                                     {key, value, etag?, metadata?, options:{}}. Never throws:
//                                     an HTTP error comes back as the resolved value {error: Error}.
//   state.get(s, key)                 GET /v1.0/state/<s>/<key>? ; body JSON-parsed; 204 -> ""
//                                     (the ETag header is not exposed)
//   state.getBulk(s, keys)            POST /v1.0/state/<s>/bulk? {keys} (no `parallelism`: the SDK
//                                     passes the un-called Settings getter, which JSON drops);
//                                     returns the sidecar's array as is
//   state.delete(s, key, {etag})      DELETE /v1.0/state/<s>/<key>? with If-Match: <etag>;
//                                     never throws either ({error: Error} on failure)
//   state.transaction(s, ops, meta)   POST /v1.0/state/<s>/transaction {operations, metadata}; throws
//   state.query(s, q)                 POST /v1.0-alpha1/state/<s>/query; throws; 204 -> {results:[]}
// Keys are pasted into the URL unescaped by the SDK, so they are kept to [A-Za-z0-9-].
//
// SDK calls made in gRPC mode (GRPCClientState; see tests/sdk/README.md):
//   state.save      SaveState{states: [{key, value: object ? JSON : String(value) as bytes, etag,
//                   options, metadata: item metadata + options.metadata}]}; resolves {}, THROWS
//                   the ConnectError on failure (no {error} result over gRPC)
//   state.get       GetState; the bytes JSON-parsed, else the string; a missing key (empty data) -> ""
//   state.getBulk   GetBulkState{parallelism 10}; [{key, data (parsed as in get; "" if missing), etag}],
//                   the per-item `error` dropped
//   state.delete    DeleteState{etag, options}; resolves {}, throws on failure
//   state.transaction  ExecuteStateTransaction; request.value must be a string (Buffer.from)
//   state.query     QueryStateAlpha1{query: JSON}; results[].data are the raw bytes (not parsed)
import { StateConcurrencyEnum } from "@dapr/dapr";
import {
  API_PORT_ENV,
  GRPC,
  Suite,
  byProtocol,
  expect,
  expectEq,
  expectGrpcError,
  expectReject,
  fmt,
  parseSdkHttpError,
  newClient,
  requireEnv,
  startClient,
} from "./lib/harness.mjs";

const env = requireEnv(API_PORT_ENV, "STATE_STORE", "MISSING_STORE");
const STORE = env.STATE_STORE;
const MISSING = env.MISSING_STORE;
const nonce = `sdkjs-${process.pid}-${Date.now()}`;
const k = (name) => `${nonce}-${name}`;

const suite = new Suite("js/state");

// state.save / state.delete log every failure through the SDK logger (console.error by default)
// before returning {error}. Several checks below provoke failures on purpose, so the SDK's log
// lines are routed to stdout as `# ` diagnostics to keep the output TAP-clean.
const client = newClient();

/** For save/delete, which resolve to {} on success and {error} on failure. */
function expectNoError(what, res) {
  expect(res && typeof res === "object", `${what}: unexpected result ${fmt(res)}`);
  if (res.error !== undefined) {
    throw new Error(`${what} failed: ${res.error?.message ?? fmt(res.error)}`);
  }
}

/** For save/delete: the {error} they resolve to, as {status, errorCode, body}. */
function expectSdkError(what, res) {
  expect(res && typeof res === "object", `${what}: unexpected result ${fmt(res)}`);
  expect(res.error !== undefined, `${what}: expected an error, got ${fmt(res)}`);
  const h = parseSdkHttpError(res.error);
  expect(h, `${what}: unexpected error shape: ${res.error?.message ?? fmt(res.error)}`);
  return h;
}

/** For the throwing methods (get, getBulk, transaction, query). */
async function expectThrownHttp(what, fn) {
  const err = await expectReject(what, fn);
  const h = parseSdkHttpError(err);
  expect(h, `${what}: unexpected error shape: ${err?.message ?? err}`);
  return h;
}

/**
 * A call that must fail. HTTP: save/delete (`resolves: true`) resolve {error}, the other methods
 * throw; the error must carry `status` and, if given, `errorCode`. gRPC: every method throws a
 * ConnectError, checked against `grpc` (see expectGrpcError: code, message, ErrorInfo reason).
 */
async function expectFailure(what, call, { resolves = false, status, errorCode, grpc }) {
  if (GRPC) return expectGrpcError(what, await expectReject(what, call), grpc);
  const h = resolves ? expectSdkError(what, await call()) : await expectThrownHttp(what, call);
  expectEq("status", h.status, status);
  if (errorCode !== undefined) expectEq("errorCode", h.errorCode, errorCode);
  return h;
}

/** What a missing key looks like in a getBulk entry (and after a TTL expired). */
function expectAbsentEntry(what, e) {
  expect(e, `${what}: no getBulk entry`);
  if (GRPC) {
    // GetBulkState answers the key with empty data and etag "" (daprd grpc.go GetBulkState); the
    // SDK turns the empty bytes into "" and drops the item's `error` field.
    expectEq(`${what}: data`, e.data, "");
    expectEq(`${what}: etag`, e.etag, "");
    return;
  }
  expect(!("data" in e) || e.data === undefined || e.data === null, `${what} has data: ${fmt(e)}`);
  expect(!e.error, `${what} has an error: ${fmt(e)}`);
  expect(!e.etag, `${what} has an etag: ${fmt(e)}`);
}

/** The single getBulk entry for `key`, or undefined. */
async function bulkEntry(key) {
  const items = await client.state.getBulk(STORE, [key]);
  expect(Array.isArray(items), `getBulk did not return an array: ${fmt(items)}`);
  return items.find((i) => i?.key === key);
}

/** The etag getBulk reports for `key` (the SDK's only way to read one: get() drops headers). */
async function etagOf(key) {
  const e = await bulkEntry(key);
  expect(e, `getBulk has no entry for ${key}`);
  expect(typeof e.etag === "string" && e.etag !== "", `getBulk entry has no etag: ${fmt(e)}`);
  return e.etag;
}

/** Polls state.get until it returns "" (absent); bounded by `deadlineMs`. */
async function waitGone(key, deadlineMs) {
  const until = Date.now() + deadlineMs;
  let last;
  for (;;) {
    last = await client.state.get(STORE, key);
    if (last === "") return;
    if (Date.now() >= until) {
      throw new Error(`${key} still readable after ${deadlineMs} ms: ${fmt(last)}`);
    }
    await new Promise((r) => setTimeout(r, 200)); // poll interval, not a fixed wait
  }
}

// 1. Readiness, the way the SDK does it (GET /v1.0/metadata polling, bounded by the SDK).
await startClient(suite, client);

// 2. Save + get round trips of every JSON kind (the SDK JSON-parses the body).
//    Over gRPC the SDK saves a non-object as String(value)'s bytes, unquoted, and get() JSON-parses
//    whatever it reads: the string "42" is stored as the bytes 42 and comes back as the number 42
//    (the same happens against daprd). That one value is expected as the number in gRPC mode.
const values = {
  object: { name: "outrider", n: 1, ok: true },
  string: `plain text ${nonce} ünïcødé`,
  numericString: "42",
  number: 42.5,
  boolean: false,
  array: [1, "two", { three: 3 }, null],
  nested: { order: { id: 7, items: [{ sku: "a", qty: 2 }], meta: { tags: ["x", "y"] } } },
};
const saved = await suite.check("state.save of several items (object, string, number, array, nested)", async () => {
  const res = await client.state.save(
    STORE,
    Object.entries(values).map(([name, value]) => ({ key: k(name), value })),
  );
  expectNoError("save", res);
});
const readBack = GRPC ? { ...values, numericString: 42 } : values;
for (const [name, value] of Object.entries(readBack)) {
  const note = GRPC && name === "numericString" ? " (gRPC: saved as the bytes 42, read back as 42)" : "";
  await suite.check(`state.get returns the saved ${name} value${note}`, async () => {
    expect(saved, "the save above failed");
    expectEq(`get ${name}`, await client.state.get(STORE, k(name)), value);
  });
}

// 3. Missing key: 204 with an empty body; the SDK's execute() JSON-parses "" (fails) and returns "".
//    gRPC: GetState is OK with empty data, which the SDK turns into "" the same way.
await suite.check(byProtocol('state.get of a missing key returns "" (204)', 'state.get of a missing key returns "" (OK, empty data)'), async () => {
  expectEq("get missing", await client.state.get(STORE, k("never-saved")), "");
});

// 4. Bulk get: returns the sidecar's array unchanged: [{key, data, etag, metadata?}, {key} for missing].
await suite.check(
  byProtocol(
    "state.getBulk returns every key: values + etags, the missing one without data",
    "state.getBulk returns every key: values + etags, the missing one with empty data and etag",
  ),
  async () => {
    const keys = [k("object"), k("string"), k("array"), k("never-saved")];
    const items = await client.state.getBulk(STORE, keys);
    expect(Array.isArray(items), `not an array: ${fmt(items)}`);
    expectEq("number of entries", items.length, keys.length);
    const byKey = Object.fromEntries(items.map((i) => [i?.key, i]));
    expectEq("returned keys", Object.keys(byKey).sort(), [...keys].sort());
    for (const name of ["object", "string", "array"]) {
      const e = byKey[k(name)];
      expectEq(`${name} data`, e.data, values[name]);
      expect(typeof e.etag === "string" && e.etag !== "", `${name}: no etag in ${fmt(e)}`);
      expect(!e.error, `${name}: unexpected error ${fmt(e)}`);
    }
    expectAbsentEntry("missing key", byKey[k("never-saved")]);
  },
);

// 5. Optimistic concurrency through the item's `etag` field.
await suite.check("save with the current etag succeeds and changes the etag", async () => {
  const key = k("etag");
  expectNoError("save v1", await client.state.save(STORE, [{ key, value: { v: 1 } }]));
  const e1 = await etagOf(key);
  expectNoError("save v2 with etag", await client.state.save(STORE, [{ key, value: { v: 2 }, etag: e1 }]));
  expectEq("value after etag save", await client.state.get(STORE, key), { v: 2 });
  const e2 = await etagOf(key);
  expect(e2 !== e1, `etag did not change on write: ${e1}`);
});

// An etag mismatch: HTTP 409 ERR_STATE_SAVE; gRPC (daprd grpc.go SaveState, getStateErrorCode)
// Aborted "failed saving state in state store <s>: <store error>", one ErrorInfo ERR_STATE_SAVE.
const saveMismatch = {
  resolves: true,
  status: 409,
  grpc: {
    code: "Aborted",
    message: new RegExp(`^failed saving state in state store ${STORE}: .+`),
    reason: "ERR_STATE_SAVE",
  },
};
const FAILS_409 = byProtocol("fails with 409", "fails with Aborted ERR_STATE_SAVE");

await suite.check(`save with a stale etag ${FAILS_409} and leaves the value`, async () => {
  const key = k("etag-stale");
  expectNoError("save v1", await client.state.save(STORE, [{ key, value: "v1" }]));
  const e1 = await etagOf(key);
  expectNoError("save v2", await client.state.save(STORE, [{ key, value: "v2", etag: e1 }]));
  await expectFailure("save with stale etag", () => client.state.save(STORE, [{ key, value: "v3", etag: e1 }]), {
    ...saveMismatch,
    errorCode: "ERR_STATE_SAVE",
  });
  expectEq("value after the rejected save", await client.state.get(STORE, key), "v2");
});

await suite.check(`save with a made-up etag ${FAILS_409}`, async () => {
  const key = k("etag-wrong");
  expectNoError("save", await client.state.save(STORE, [{ key, value: 1 }]));
  const wrong = `not-${await etagOf(key)}`;
  await expectFailure("save with wrong etag", () => client.state.save(STORE, [{ key, value: 2, etag: wrong }]), saveMismatch);
  expectEq("value after the rejected save", await client.state.get(STORE, key), 1);
});

// api.md §3.9: first-write without an etag on an existing item is a mismatch.
await suite.check(`save with concurrency first-write and no etag on an existing key ${FAILS_409}`, async () => {
  const key = k("first-write");
  const fw = { concurrency: StateConcurrencyEnum.CONCURRENCY_FIRST_WRITE };
  expectNoError("first save (new key)", await client.state.save(STORE, [{ key, value: "a", options: fw }]));
  await expectFailure(
    "second first-write save",
    () => client.state.save(STORE, [{ key, value: "b", options: { ...fw } }]),
    saveMismatch,
  );
  expectEq("value", await client.state.get(STORE, key), "a");
});

// 6. Delete.
await suite.check("state.delete removes a key", async () => {
  const key = k("delete");
  expectNoError("save", await client.state.save(STORE, [{ key, value: { bye: true } }]));
  expectEq("before delete", await client.state.get(STORE, key), { bye: true });
  expectNoError("delete", await client.state.delete(STORE, key));
  expectEq("after delete", await client.state.get(STORE, key), "");
});

await suite.check("state.delete of a missing key succeeds", async () => {
  expectNoError("delete missing", await client.state.delete(STORE, k("never-saved")));
});

// options.etag becomes the If-Match header (gRPC: DeleteStateRequest.etag). gRPC mismatch (daprd
// grpc.go DeleteState): Aborted "failed deleting state with key <key>: <store error>", one
// ErrorInfo ERR_STATE_DELETE.
await suite.check(
  byProtocol(
    "state.delete with a wrong etag fails with 409; with the right one it deletes",
    "state.delete with a wrong etag fails with Aborted ERR_STATE_DELETE; with the right one it deletes",
  ),
  async () => {
    const key = k("delete-etag");
    expectNoError("save", await client.state.save(STORE, [{ key, value: "keep" }]));
    const etag = await etagOf(key);
    await expectFailure("delete with wrong etag", () => client.state.delete(STORE, key, { etag: `not-${etag}` }), {
      resolves: true,
      status: 409,
      errorCode: "ERR_STATE_DELETE",
      grpc: {
        code: "Aborted",
        message: new RegExp(`^failed deleting state with key ${key}: .+`),
        reason: "ERR_STATE_DELETE",
      },
    });
    expectEq("value after the rejected delete", await client.state.get(STORE, key), "keep");
    expectNoError("delete with the right etag", await client.state.delete(STORE, key, { etag }));
    expectEq("after delete", await client.state.get(STORE, key), "");
  },
);

// 7. Transactions.
//    The gRPC client sends request.value through Buffer.from(), which takes strings only (an object
//    throws in the SDK), so in gRPC mode the object goes in as its JSON text; get() parses it back.
await suite.check("state.transaction applies upsert + delete", async () => {
  const up = k("tx-upsert");
  const del = k("tx-delete");
  const upValue = { tx: 1, list: [1, 2] };
  expectNoError("seed", await client.state.save(STORE, [{ key: del, value: "doomed" }]));
  await client.state.transaction(STORE, [
    { operation: "upsert", request: { key: up, value: GRPC ? JSON.stringify(upValue) : upValue } },
    { operation: "delete", request: { key: del } },
  ]);
  expectEq("upserted value", await client.state.get(STORE, up), { tx: 1, list: [1, 2] });
  expectEq("deleted value", await client.state.get(STORE, del), "");
});

// gRPC (daprd grpc.go ExecuteStateTransaction): Unimplemented "operation type merge not
// supported", one ErrorInfo ERR_NOT_SUPPORTED_STATE_OPERATION.
await suite.check(
  byProtocol(
    "state.transaction with an invalid operation type fails with 400 and applies nothing",
    "state.transaction with an invalid operation type fails with Unimplemented ERR_NOT_SUPPORTED_STATE_OPERATION and applies nothing",
  ),
  async () => {
    const good = k("tx-bad-upsert");
    await expectFailure(
      "transaction with op 'merge'",
      () =>
        client.state.transaction(STORE, [
          { operation: "upsert", request: { key: good, value: "no" } },
          { operation: "merge", request: { key: k("tx-bad-merge"), value: "no" } },
        ]),
      {
        status: 400,
        errorCode: "ERR_NOT_SUPPORTED_STATE_OPERATION",
        grpc: {
          code: "Unimplemented",
          message: "operation type merge not supported",
          reason: "ERR_NOT_SUPPORTED_STATE_OPERATION",
        },
      },
    );
    expectEq("upsert of the rejected transaction", await client.state.get(STORE, good), "");
  },
);

// 8. TTL: metadata.ttlInSeconds, either request-level (query string) or per item (body). Over gRPC
//    both end up in StateItem.metadata (SaveState has no request-level metadata).
await suite.check(
  byProtocol(
    "save with options.metadata ttlInSeconds=1 (query): readable at once, gone within 10 s",
    "save with options.metadata ttlInSeconds=1 (request-level, the SDK copies it to the item): readable at once, gone within 10 s",
  ),
  async () => {
    const key = k("ttl-query");
    expectNoError(
      "save with ttl",
      await client.state.save(STORE, [{ key, value: "short-lived" }], { metadata: { ttlInSeconds: "1" } }),
    );
    expectEq("right after save", await client.state.get(STORE, key), "short-lived");
    await waitGone(key, 10_000);
    const e = await bulkEntry(key);
    if (GRPC) expectAbsentEntry("getBulk entry after expiry", e);
    else expect(e && e.data === undefined, `getBulk still has data after expiry: ${fmt(e)}`);
  },
  { timeoutMs: 20_000 },
);

await suite.check(
  byProtocol(
    "save with item metadata ttlInSeconds=1 (body): readable at once, gone within 10 s",
    "save with item metadata ttlInSeconds=1 (StateItem.metadata): readable at once, gone within 10 s",
  ),
  async () => {
    const key = k("ttl-item");
    const other = k("ttl-item-neighbour");
    expectNoError(
      "save with ttl",
      await client.state.save(STORE, [
        { key, value: { brief: true }, metadata: { ttlInSeconds: "1" } },
        { key: other, value: "stays" },
      ]),
    );
    expectEq("right after save", await client.state.get(STORE, key), { brief: true });
    await waitGone(key, 10_000);
    expectEq("item saved without ttl in the same call", await client.state.get(STORE, other), "stays");
  },
  { timeoutMs: 20_000 },
);

// 9. Query (api.md §3.7): filter, sort and paging over this run's values only.
//    Over gRPC the SDK hands back each result's data as the raw bytes: they must be the JSON saved.
const queryData = (r) => {
  if (!GRPC) return r.data;
  expect(r.data instanceof Uint8Array, `query result data is not bytes: ${fmt(r)}`);
  return JSON.parse(Buffer.from(r.data).toString("utf8"));
};
await suite.check("state.query filters, sorts and pages; an empty result is {results: []}", async () => {
  const run = k("query-run");
  const items = [1, 2, 3].map((n) => ({ key: k(`q${n}`), value: { run, team: n === 2 ? "edge" : "core", n } }));
  items.push({ key: k("q4"), value: { run, team: "core", n: 4 } });
  expectNoError("save query items", await client.state.save(STORE, items));
  const query = (token) => ({
    filter: { AND: [{ EQ: { run } }, { EQ: { team: "core" } }] },
    sort: [{ key: "n", order: "DESC" }],
    page: token ? { limit: 2, token } : { limit: 2 },
  });
  const first = await client.state.query(STORE, query());
  expectEq("first page values", first.results.map((r) => queryData(r).n), [4, 3]);
  expectEq("first page keys", first.results.map((r) => r.key), [k("q4"), k("q3")]);
  expect(typeof first.results[0].etag === "string", `no etag in ${fmt(first.results[0])}`);
  expect(typeof first.token === "string" && first.token !== "", `no token after a full page: ${fmt(first)}`);
  const second = await client.state.query(STORE, query(first.token));
  expectEq("second page values", second.results.map((r) => queryData(r).n), [1]);
  const none = await client.state.query(STORE, { filter: { EQ: { run: `${run}-nothing` } } });
  expectEq("no matches", none.results, []);
});

// 10. Unknown store: api.md §3.1 -> 400 ERR_STATE_STORE_NOT_FOUND. gRPC (daprd
//     universal.GetStateStore, errors/state.go NotFound): InvalidArgument "state store <s> is not
//     found", exactly one ErrorInfo DAPR_STATE_NOT_FOUND.
const storeNotFound = {
  status: 400,
  errorCode: "ERR_STATE_STORE_NOT_FOUND",
  grpc: { code: "InvalidArgument", message: `state store ${MISSING} is not found`, reason: "DAPR_STATE_NOT_FOUND" },
};
const NOT_FOUND = byProtocol("400 ERR_STATE_STORE_NOT_FOUND", "InvalidArgument DAPR_STATE_NOT_FOUND");
await suite.check(`state.save to ${MISSING} fails with ${NOT_FOUND}`, async () => {
  await expectFailure("save to missing store", () => client.state.save(MISSING, [{ key: k("x"), value: 1 }]), {
    ...storeNotFound,
    resolves: true,
  });
});

await suite.check(`state.get from ${MISSING} throws ${NOT_FOUND}`, async () => {
  await expectFailure("get from missing store", () => client.state.get(MISSING, k("x")), storeNotFound);
});

await client.stop();
suite.finish();
