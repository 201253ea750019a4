// Distributed locks, driven through the official Dapr JS SDK (`client.lock.*`) over HTTP, or over
// gRPC with DAPR_COMMUNICATION_PROTOCOL=grpc.
//
// Environment (set by the e2e harness):
//   DAPR_HTTP_PORT   Dapr HTTP API port of the sidecar (the SDK reads it itself)
//   DAPR_GRPC_PORT   instead, in gRPC mode: its gRPC API port (passed to the SDK as daprPort)
//   DAPR_COMMUNICATION_PROTOCOL  optional: http (default) or grpc
//   LOCK_STORE       a lock store (lock.redis or lock.in-memory)
//   MISSING_STORE    a store name that does not exist
//   RUN_ID           unique per run: resource ids are made from it
//
// SDK calls made (@dapr/dapr 3.18.0):
//   lock.lock(s, id, owner, secs)  HTTP: POST /v1.0-alpha1/lock/<s> {resourceId, lockOwner,
//                                  expiryInSeconds} → {success}; gRPC: TryLockAlpha1
//   lock.unlock(s, id, owner)      HTTP: POST /v1.0-alpha1/unlock/<s> {resourceId, lockOwner} →
//                                  {status: LockStatus (the number mapped)}; gRPC: UnlockAlpha1
// Both throw on an error answer (HTTP >= 400, a gRPC status).
import {
  API_PORT_ENV,
  GRPC,
  Suite,
  expectEq,
  expectGrpcError,
  expectReject,
  parseSdkHttpError,
  newClient,
  requireEnv,
  startClient,
} from "./lib/harness.mjs";

const env = requireEnv(API_PORT_ENV, "LOCK_STORE", "MISSING_STORE", "RUN_ID");
const suite = new Suite("js/lock");
const client = newClient();
await startClient(suite, client);
const store = env.LOCK_STORE;
// The SDK's LockStatus (types/lock/UnlockResponse, not exported by the package): daprd's numbers.
const LockStatus = { Success: 0, LockDoesNotExist: 1, LockBelongsToOthers: 2 };
const id = (name) => `${env.RUN_ID}-${name}`;

await suite.check("lock.lock takes a free lock and refuses a second owner", async () => {
  expectEq("first", await client.lock.lock(store, id("a"), "owner-1", 60), { success: true });
  expectEq("second", await client.lock.lock(store, id("a"), "owner-2", 60), { success: false });
});
await suite.check("lock.unlock answers LockBelongsToOthers to another owner", async () => {
  expectEq("other", await client.lock.unlock(store, id("a"), "owner-2"), { status: LockStatus.LockBelongsToOthers });
});
await suite.check("lock.unlock by the owner succeeds and frees the lock", async () => {
  expectEq("owner", await client.lock.unlock(store, id("a"), "owner-1"), { status: LockStatus.Success });
  expectEq("again", await client.lock.unlock(store, id("a"), "owner-1"), { status: LockStatus.LockDoesNotExist });
  expectEq("next", await client.lock.lock(store, id("a"), "owner-2", 60), { success: true });
});
await suite.check("a lock expires after expiryInSeconds", async () => {
  expectEq("take", await client.lock.lock(store, id("short"), "owner-1", 1), { success: true });
  const deadline = Date.now() + 10_000;
  for (;;) {
    if ((await client.lock.lock(store, id("short"), "owner-2", 60)).success) break;
    if (Date.now() > deadline) throw new Error("the lock never expired");
    await new Promise((r) => setTimeout(r, 100));
  }
});
await suite.check("8 clients incrementing a counter under the lock lose nothing", async () => {
  let counter = 0;
  const worker = async (w) => {
    for (let i = 0; i < 10; i++) {
      while (!(await client.lock.lock(store, id("counter"), `worker-${w}`, 30)).success) {
        await new Promise((r) => setTimeout(r, 5));
      }
      const seen = counter;
      await new Promise((r) => setTimeout(r, 2));
      counter = seen + 1;
      expectEq("unlock", await client.lock.unlock(store, id("counter"), `worker-${w}`), { status: LockStatus.Success });
    }
  };
  await Promise.all([...Array(8).keys()].map(worker));
  expectEq("counter", counter, 80);
});
// daprd's lock errors (pkg/api/universal/lock.go, messages/predefined.go): plain statuses.
const failures = [
  ["a non-positive expiry", () => client.lock.lock(store, id("x"), "o", 0), 400, "ERR_MALFORMED_REQUEST",
    "InvalidArgument", `ExpiryInSeconds is not positive in lock store ${store}`],
  ["an empty owner", () => client.lock.lock(store, id("x"), "", 5), 400, "ERR_MALFORMED_REQUEST",
    "InvalidArgument", `LockOwner is empty in lock store ${store}`],
  ["an unknown store", () => client.lock.unlock(env.MISSING_STORE, id("x"), "o"), 400, "ERR_LOCK_STORE_NOT_FOUND",
    "InvalidArgument", `lock store ${env.MISSING_STORE} not found`],
  ["an id holding ||", () => client.lock.lock(store, "a||b", "o", 5), 500, "ERR_TRY_LOCK",
    "Internal", /^failed to try acquiring lock: .*can't contain/],
];
for (const [what, call, status, code, grpcCode, grpcMessage] of failures) {
  await suite.check(`${what} throws ${GRPC ? grpcCode : `${status} ${code}`}`, async () => {
    const e = await expectReject(what, call);
    if (GRPC) {
      expectGrpcError(what, e, { code: grpcCode, message: grpcMessage });
      return;
    }
    const h = parseSdkHttpError(e);
    expectEq("status", h?.status, status);
    expectEq("errorCode", h?.errorCode, code);
  });
}
suite.finish();
