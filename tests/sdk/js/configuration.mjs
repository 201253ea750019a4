// The configuration API, driven through the official Dapr JS SDK (`client.configuration.*`).
// The SDK serves it over gRPC only (its HTTP client throws HTTPNotSupportedError for every
// configuration call), so the harness runs this script with DAPR_COMMUNICATION_PROTOCOL=grpc.
//
// Environment (set by the e2e harness):
//   DAPR_GRPC_PORT   the sidecar's gRPC API port (passed to the SDK as daprPort)
//   CONFIG_STORE     a configuration.redis store on the Redis at REDIS_PORT
//   REDIS_PORT       that Redis (written with redis-cli, as a user would)
//   MISSING_STORE    a store name that does not exist
//   RUN_ID           unique per run: keys are made from it
//
// SDK calls made (GRPCClientConfiguration, @dapr/dapr 3.18.0):
//   configuration.get(s, keys)                 GetConfiguration → {items: {k: {key, value, version, metadata}}}
//   configuration.subscribeWithKeys(s, keys, cb)  SubscribeConfiguration stream; cb({items}) per update
//                                              (the first message, with the id and no items, is skipped);
//                                              stop() aborts the stream and calls UnsubscribeConfiguration
import { execFileSync } from "node:child_process";
import {
  GRPC,
  Suite,
  expect,
  expectEq,
  expectGrpcError,
  expectReject,
  newClient,
  requireEnv,
  startClient,
} from "./lib/harness.mjs";

const env = requireEnv("DAPR_GRPC_PORT", "CONFIG_STORE", "REDIS_PORT", "MISSING_STORE", "RUN_ID");
const suite = new Suite("js/configuration");
if (!GRPC) {
  console.log("not ok - environment: the SDK serves configuration over gRPC only; set DAPR_COMMUNICATION_PROTOCOL=grpc");
  process.exit(2);
}
const client = newClient();
await startClient(suite, client);
const store = env.CONFIG_STORE;
const key = (name) => `${env.RUN_ID}-${name}`;
const redis = (...args) => execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", env.REDIS_PORT, ...args]);

/** Waits (bounded) until `cond()` holds. */
async function until(what, cond, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

redis("SET", key("a"), "on||1");
redis("SET", key("b"), "off");

await suite.check("configuration.get reads items in daprd's value||version form", async () => {
  const got = await client.configuration.get(store, [key("a"), key("b"), key("none")]);
  expectEq("a", got.items[key("a")], { key: key("a"), value: "on", version: "1", metadata: {} });
  expectEq("b", got.items[key("b")], { key: key("b"), value: "off", version: "", metadata: {} });
  expectEq("none", got.items[key("none")], undefined);
});

await suite.check("configuration.subscribeWithKeys hears each change once, and stop() ends it", async () => {
  const seen = [];
  const sub = await client.configuration.subscribeWithKeys(store, [key("a")], (u) => { seen.push(u.items); });
  // The stream is open once the sidecar has answered its first message (the SDK does not say
  // when): a new value is written until one is heard.
  let probe = 0;
  await until("the subscription", () => {
    redis("SET", key("a"), `probe-${++probe}||0`);
    return seen.length > 0;
  });
  const valuesOf = () => seen.flatMap((items) => Object.values(items).map((i) => i.value));
  redis("SET", key("unwatched"), "x||1");
  redis("SET", key("a"), "changed||2");
  await until("the update", () => valuesOf().includes("changed"));
  const changed = seen.find((items) => items[key("a")]?.value === "changed");
  expectEq("update", changed, { [key("a")]: { key: key("a"), value: "changed", version: "2", metadata: {} } });
  await sub.stop();
  redis("SET", key("a"), "after-stop||3");
  redis("SET", key("b"), "sentinel||9");
  const again = await client.configuration.get(store, [key("b")]);
  expectEq("sentinel", again.items[key("b")]?.value, "sentinel");
  const values = valuesOf();
  expect(!values.includes("x"), `heard an unwatched key: ${values}`);
  expect(!values.includes("after-stop"), `heard after stop: ${values}`);
  expect(values.filter((v) => v === "changed").length === 1, `each change once: ${values}`);
});

await suite.check("an unknown store throws InvalidArgument", async () => {
  const e = await expectReject("unknown store", () => client.configuration.get(env.MISSING_STORE, ["a"]));
  expectGrpcError("unknown store", e, { code: "InvalidArgument", message: `configuration store ${env.MISSING_STORE} not found` });
});
suite.finish();
