// Virtual actors, driven through the official Dapr JS SDK over HTTP: this script IS the app. It
// registers an actor type with the SDK's DaprServer (the sidecar reads /dapr/config and calls
// the actor's methods, timers and reminders at /actors/...), and calls it through the SDK's
// ActorProxyBuilder, as a Dapr actor app and its client would:
//
//   outrider run --app-id X --app-port P -- node tests/sdk/js/actors.mjs
//
// Environment (set by the sidecar for its child, or by the e2e harness):
//   DAPR_HTTP_PORT   the sidecar's HTTP API port
//   APP_PORT         the port the sidecar expects the app on (DaprServer listens there)
//
// SDK behaviour relied on (@dapr/dapr 3.18.0; actors are HTTP only in this SDK):
//   server.actor.init() adds GET /dapr/config ({entities, ...clientOptions.actor}), PUT
//   /actors/:type/:id/method/:m (the JSON body, an array, spread as the arguments), PUT
//   .../method/timer/:name (calls body.callback with body.data), PUT .../method/remind/:name
//   (calls receiveReminder(data)), DELETE /actors/:type/:id (deactivate).
//   The actor's state manager reads GET /v1.0/actors/:type/:id/state/:key (204: absent) and
//   saves after each method with POST .../state [{operation, request: {key, value}}].
//   ActorProxyBuilder(Cls, client).build(new ActorId(id)).m(args) POSTs
//   /v1.0/actors/Cls.name/:id/method/m with the arguments as a JSON array; never `await` the
//   proxy itself (its `then` would be called remotely).
import {
  AbstractActor,
  ActorId,
  ActorProxyBuilder,
  CommunicationProtocolEnum,
  DaprServer,
  LogLevel,
  Temporal,
} from "@dapr/dapr";
import {
  API_PORT_ENV,
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

const env = requireEnv(API_PORT_ENV, "APP_PORT");
const WAIT_MS = 20_000;
process.env.SDK_TEST_TIMEOUT_SECS ||= "120";
const suite = new Suite("js/actors");
// Timer, reminder and deactivation handlers of this SDK do not catch errors: keep a failing
// callback from ending the app.
process.on("unhandledRejection", (e) => console.log(`# unhandled: ${e?.message ?? e}`));

/** What the actors' callbacks saw, by actor id. */
const seen = { timer: [], reminder: [], deactivated: [] };

class CounterActor extends AbstractActor {
  async increment(by) {
    const sm = this.getStateManager();
    const [has, cur] = await sm.tryGetState("count");
    const next = (has ? cur : 0) + (typeof by === "number" ? by : 1);
    await sm.setState("count", next);
    return next;
  }
  async get() {
    const [has, v] = await this.getStateManager().tryGetState("count");
    return has ? v : 0;
  }
  async startTimer(name) {
    await this.registerActorTimer(name, "onTimer", Temporal.Duration.from({ milliseconds: 200 }),
      Temporal.Duration.from({ milliseconds: 300 }), undefined, JSON.stringify({ from: name }));
    return "ok";
  }
  async stopTimer(name) {
    await this.unregisterActorTimer(name);
    return "ok";
  }
  async startReminder(name) {
    await this.registerActorReminder(name, Temporal.Duration.from({ milliseconds: 300 }),
      Temporal.Duration.from({ seconds: 1 }), undefined, JSON.stringify({ reminder: name }));
    return "ok";
  }
  async stopReminder(name) {
    await this.unregisterActorReminder(name);
    return "ok";
  }
  async onTimer(data) {
    seen.timer.push({ id: this.getActorId().getId(), data });
  }
  async receiveReminder(data) {
    seen.reminder.push({ id: this.getActorId().getId(), data });
  }
  async onDeactivate() {
    seen.deactivated.push(this.getActorId().getId());
  }
}

const logger = { level: LogLevel.Warn };
const server = new DaprServer({
  serverHost: "127.0.0.1",
  serverPort: env.APP_PORT,
  communicationProtocol: CommunicationProtocolEnum.HTTP,
  clientOptions: clientOptions({
    logger,
    actor: { actorIdleTimeout: "1h", reentrancy: { enabled: false } },
  }),
  logger,
});
await server.actor.init();
await server.actor.registerActor(CounterActor);
await startServer(suite, server, "DaprServer.start() with an actor type: the sidecar reads /dapr/config");
const client = newClient();
await startClient(suite, client);
const nonce = `${process.pid}-${Date.now()}`;
const actor = (id) => new ActorProxyBuilder(CounterActor, client).build(new ActorId(`${id}-${nonce}`));

await suite.check("the metadata lists the hosted actor type", async () => {
  await waitUntil(async () => {
    const m = await client.metadata.get();
    return (m.actors ?? []).some((a) => a.type === "CounterActor");
  }, WAIT_MS, () => "no CounterActor in the metadata");
});

await suite.check("a proxy calls the actor, whose state persists between calls", async () => {
  const a = actor("counter");
  expectEq("first increment", await a.increment(5), 5);
  expectEq("second increment", await a.increment(), 6);
  expectEq("read back", await a.get(), 6);
  expectEq("another actor starts afresh", await actor("other").increment(2), 2);
});

await suite.check("concurrent calls to one actor take turns: no update is lost", async () => {
  const a = actor("busy");
  await Promise.all(Array.from({ length: 10 }, () => a.increment(1)));
  expectEq("after 10 concurrent increments", await a.get(), 10);
});

await suite.check("an actor timer calls its callback until unregistered", async () => {
  const a = actor("timed");
  expectEq("startTimer", await a.startTimer("tick"), "ok");
  const fired = () => seen.timer.filter((t) => t.id === `timed-${nonce}`);
  await waitUntil(() => fired().length >= 2, WAIT_MS, () => `timer: ${fmt(seen.timer)}`);
  expectEq("the timer's data", fired()[0].data, { from: "tick" });
  expectEq("stopTimer", await a.stopTimer("tick"), "ok");
});

await suite.check("an actor reminder calls receiveReminder until unregistered", async () => {
  const a = actor("reminded");
  expectEq("startReminder", await a.startReminder("nudge"), "ok");
  const fired = () => seen.reminder.filter((r) => r.id === `reminded-${nonce}`);
  await waitUntil(() => fired().length >= 2, WAIT_MS, () => `reminders: ${fmt(seen.reminder)}`);
  expectEq("the reminder's data", fired()[0].data, { reminder: "nudge" });
  expectEq("stopReminder", await a.stopReminder("nudge"), "ok");
  const after = fired().length;
  // A second reminder due later: when it fired, the first had its chance to fire again.
  await actor("marker").startReminder("marker");
  await waitUntil(() => seen.reminder.some((r) => r.id === `marker-${nonce}`), WAIT_MS, () => "no marker");
  await actor("marker").stopReminder("marker");
  expect(fired().length <= after + 1, `an unregistered reminder kept firing: ${fired().length} > ${after}`);
});

await bounded(server.stop(), 5_000);
await bounded(client.stop(), 5_000);
suite.finish();
