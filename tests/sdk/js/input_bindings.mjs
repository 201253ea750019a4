// Input bindings, driven through the official Dapr JS SDK over HTTP, or over gRPC with
// DAPR_COMMUNICATION_PROTOCOL=grpc: this script IS the app. The sidecar starts it as its child;
// it takes a cron binding's ticks and an MQTT binding's events with the SDK's DaprServer, and
// sends the MQTT events itself through the output side of the same binding:
//
//   outrider run --app-id X --app-port P -- node tests/sdk/js/input_bindings.mjs
//
// Environment (set by the sidecar for its child, or by the e2e harness):
//   DAPR_HTTP_PORT / DAPR_GRPC_PORT   the sidecar's API port for the protocol
//   APP_PORT         the port the sidecar expects the app on (DaprServer listens there)
//   CRON_BINDING     a bindings.cron binding ticking often (lower case: the SDK's gRPC server
//                    lists the names it takes in lower case)
//   QUEUE_BINDING    a bindings.mqtt3 binding (input and output) on a topic of this run's own
//
// SDK behaviour relied on (@dapr/dapr 3.18.0):
//   HTTP: server.binding.receive(name, cb) registers, on the SDK's Express app, OPTIONS /<name>
//         (answered 200: the sidecar's question whether the app takes the binding) and POST
//         /<name> (cb(body parsed as JSON); 200 when cb resolves, 500 when it throws).
//   gRPC: receive() keeps cb under the name in lower case; ListInputBindings answers those
//         names; OnBindingEvent calls cb(data JSON-parsed, else as a string) and answers an
//         empty BindingEventResponse, or fails the call when cb throws.
//   client.binding.send(name, "create", data)  as in bindings.mjs.
import { DaprServer, LogLevel } from "@dapr/dapr";
import {
  API_PORT_ENV,
  GRPC,
  Suite,
  bounded,
  clientOptions,
  expect,
  expectEq,
  fmt,
  newClient,
  requireEnv,
  startClient,
  startServer,
  waitUntil,
} from "./lib/harness.mjs";

const env = requireEnv(API_PORT_ENV, "APP_PORT", "CRON_BINDING", "QUEUE_BINDING");
const WAIT_MS = 20_000;
const nonce = `sdkjs-${process.pid}-${Date.now()}`;
process.env.SDK_TEST_TIMEOUT_SECS ||= "90";
const suite = new Suite("js/input_bindings");

const diag = (lvl) => (msg, ...rest) =>
  console.log(`# sdk ${lvl}: ${[msg, ...rest].map(String).join(" ").replace(/\s*\n\s*/g, " | ")}`);
const logger = {
  level: LogLevel.Warn,
  service: { error: diag("error"), warn: diag("warn"), info: diag("info"), verbose: diag("verbose"), debug: diag("debug") },
};

const server = new DaprServer({
  serverHost: "127.0.0.1",
  serverPort: env.APP_PORT,
  communicationProtocol: clientOptions().communicationProtocol,
  ...(GRPC ? { clientOptions: clientOptions({ logger }) } : {}),
  logger,
});

/** What each binding's handler received, in order. */
const ticks = [];
const events = [];
await server.binding.receive(env.CRON_BINDING, async (data) => {
  ticks.push(data);
});
await server.binding.receive(env.QUEUE_BINDING, async (data) => {
  events.push(data);
  const times = events.filter((e) => e?.nonce === data?.nonce && e?.kind === data?.kind).length;
  // The first delivery of this one fails: the broker must hand it over again.
  if (data?.kind === "fail-once" && times === 1) throw new Error("not now");
});


await startServer(suite, server, "DaprServer.start() listens on $APP_PORT and waits for the sidecar");
const client = newClient();
await startClient(suite, client);

await suite.check("binding.receive gets the cron binding's ticks", async () => {
  await waitUntil(() => ticks.length >= 2, WAIT_MS, () => `ticks: ${fmt(ticks)}`);
});

await suite.check("an event sent through the MQTT binding comes back to binding.receive", async () => {
  await client.binding.send(env.QUEUE_BINDING, "create", { kind: "plain", nonce, items: [1, 2] });
  await waitUntil(() => events.some((e) => e?.kind === "plain"), WAIT_MS, () => `events: ${fmt(events)}`);
  const got = events.filter((e) => e?.kind === "plain");
  expectEq("the event", got[0], { kind: "plain", nonce, items: [1, 2] });
});

await suite.check("an event whose handler throws is delivered again", async () => {
  await client.binding.send(env.QUEUE_BINDING, "create", { kind: "fail-once", nonce });
  const count = () => events.filter((e) => e?.kind === "fail-once").length;
  await waitUntil(() => count() >= 2, WAIT_MS, () => `events: ${fmt(events)}`);
  expect(count() === 2, `delivered ${count()} times, once after the failure expected`);
});

await bounded(server.stop(), 5_000);
await bounded(client.stop(), 5_000);
suite.finish();
