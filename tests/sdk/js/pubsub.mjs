// Pub/sub, driven through the official Dapr JS SDK over HTTP: this script IS the app. The
// sidecar starts it as its child and it serves the subscriptions itself with the SDK's
// DaprServer, then publishes through a DaprClient and checks what its own handlers receive:
//
//   outrider run --app-id X --app-port P -- node tests/sdk/js/pubsub.mjs
//
// Environment (set by the sidecar for its child, or by the e2e harness):
//   DAPR_HTTP_PORT   Dapr HTTP API port of the sidecar (the SDK reads it itself)
//   APP_PORT         the port the sidecar expects the app on (DaprServer listens there)
//   APP_ID           the sidecar's app id (only reported)
//   PUBSUB_NAME      optional; the pub/sub component to use (default "pubsub")
//   MISSING_PUBSUB   optional; a pub/sub name no component has (default "sdkjs-missing-pubsub")
//   DAPR_API_TOKEN, SDK_TEST_TIMEOUT_SECS (default 90 here), SDK_DEBUG as in the other scripts;
//   SDK_DEBUG=1 also prints every request the sidecar makes to this app and the app's answer.
//
// SDK behaviour relied on (@dapr/dapr 3.18.0, see tests/sdk/README.md "Pub/sub"):
//   server.pubsub.subscribe(ps, topic, cb)  registers, before start(), the subscription
//       {pubsubname, topic, route: "/<ps lower>--<topic sanitised, lower>--default"} and an
//       Express POST handler on that route; the handler gets body.data (or body.data_base64
//       decoded, JSON-parsed when it parses) and answers 200 {"status": cb's return value}
//       (SUCCESS when cb returns nothing or throws).
//   server.start()   express listen(APP_PORT) on all interfaces, then serves GET /dapr/subscribe
//       (the list above), then its embedded client's start() (GET /v1.0/metadata polling). It
//       does not wait for the sidecar to subscribe, so the script polls GET /v1.0/metadata until
//       the subscriptions are listed before it publishes.
//   client.pubsub.publish(ps, topic, data, {contentType, metadata})  POST
//       /v1.0/publish/<ps>/<topic>?<metadata.k=v>; object -> application/json (or
//       application/cloudevents+json if it has id, source, type, specversion), string ->
//       text/plain, Buffer -> application/octet-stream, or options.contentType with the data sent
//       as is. Never throws: resolves {} or {error: Error} (the usual JSON message with status
//       and the sidecar's body), after logging the error through the SDK logger.
import {
  CommunicationProtocolEnum,
  DaprClient,
  DaprPubSubStatusEnum,
  DaprServer,
  LogLevel,
} from "@dapr/dapr";
import { Suite, expect, expectEq, fmt, parseSdkHttpError, requireEnv, startClient } from "./lib/harness.mjs";

const env = requireEnv("DAPR_HTTP_PORT", "APP_PORT");
const PUBSUB = process.env.PUBSUB_NAME || "pubsub";
const MISSING = process.env.MISSING_PUBSUB || "sdkjs-missing-pubsub";
const DEBUG = Boolean(process.env.SDK_DEBUG);
const DELIVERY_WAIT_MS = 15_000;
const nonce = `sdkjs-${process.pid}-${Date.now()}`;
const topicOf = (name) => `${nonce}-${name}`;

// The whole script normally takes a few seconds; its bounded waits add up to well under this.
process.env.SDK_TEST_TIMEOUT_SECS ||= "90";
const suite = new Suite("js/pubsub");
console.log(`# app ${process.env.APP_ID ?? "?"} on port ${env.APP_PORT}, sidecar ${env.DAPR_HTTP_PORT}, pubsub ${PUBSUB}`);

// The SDK logs errors (e.g. the failed publish below) through its logger; route them to `# `
// diagnostics to keep the output TAP-clean.
const diag = (lvl) => (msg, ...rest) =>
  console.log(`# sdk ${lvl}: ${[msg, ...rest].map(String).join(" ").replace(/\s*\n\s*/g, " | ")}`);
const logger = {
  level: DEBUG ? LogLevel.Debug : LogLevel.Warn,
  service: { error: diag("error"), warn: diag("warn"), info: diag("info"), verbose: diag("verbose"), debug: diag("debug") },
};

// ---------------------------------------------------------------------------------------------
// The app: one topic per case, all on $PUBSUB_NAME, handlers registered through the SDK.

/** topic name -> the deliveries its handler saw, in order: {data, headers, status}. */
const inbox = new Map();
const S = DaprPubSubStatusEnum;

const cases = {
  json: { data: { order: 7, nonce, items: [{ sku: "a", qty: 2 }], ok: true, note: "ünïcødé" } },
  text: { data: `plain text ${nonce} ünïcødé` },
  custom: { data: `<order id="7" nonce="${nonce}"/>`, contentType: "application/xml" },
  binary: { data: Buffer.from(`bytes ${nonce}`), expect: `bytes ${nonce}` },
  cloudevent: {
    data: {
      specversion: "1.0",
      id: `ce-${nonce}`,
      source: "sdkjs-test",
      type: "com.example.sdkjs",
      datacontenttype: "application/json",
      data: { inside: "the envelope", nonce },
    },
    expect: { inside: "the envelope", nonce },
  },
  drop: { data: { kind: "drop", nonce }, reply: () => S.DROP },
  // RETRY for the first delivery of a message, SUCCESS for every later one.
  retry: { data: { kind: "retry", nonce }, reply: (n) => (n === 1 ? S.RETRY : S.SUCCESS) },
  // Published with publishBulk: every entry is delivered on its own.
  bulk: { data: [{ kind: "bulk", n: 1, nonce }, `bulk two ${nonce}`] },
  // Subscribed with subscribeBulk: the sidecar POSTs batches, the SDK answers per entry.
  batched: {
    data: [1, 2, 3, 4, 5].map((n) => ({ kind: "batched", n, nonce })),
    bulkSubscribe: { maxMessagesCount: 3, maxAwaitDurationMs: 300 },
  },
};

const server = new DaprServer({
  serverHost: "127.0.0.1", // only used for the SDK's address string: listen() binds every interface
  serverPort: env.APP_PORT,
  communicationProtocol: CommunicationProtocolEnum.HTTP,
  logger,
});

// What the sidecar asks of the app. Registered on the SDK's own Express app, after its body
// parsers and before any SDK route, so it sees parsed bodies and never answers itself.
let subscribeCalls = 0;
let bulkPosts = 0;
server.daprServer.getServer().use((req, res, next) => {
  if (req.method === "GET" && req.path === "/dapr/subscribe") subscribeCalls++;
  if (req.method === "POST" && req.body?.type === "com.dapr.event.sent.bulk") bulkPosts++;
  if (DEBUG) {
    const h = { "content-type": req.headers["content-type"], traceparent: req.headers.traceparent, pubsubname: req.headers.pubsubname };
    console.log(`# app <- ${req.method} ${req.originalUrl} ${fmt(h)} ${fmt(req.body)}`);
    const send = res.send.bind(res);
    res.send = (body) => {
      res.send = send; // express re-enters send() (object -> JSON string): log the first call only
      console.log(`# app -> ${res.statusCode} ${req.method} ${req.originalUrl} ${typeof body === "string" ? body : fmt(body)}`);
      return send(body);
    };
  }
  next();
});

for (const [name, c] of Object.entries(cases)) {
  const topic = topicOf(name);
  inbox.set(topic, []);
  const handler = async (data, headers) => {
    const seen = inbox.get(topic);
    const status = c.reply ? c.reply(seen.length + 1) : S.SUCCESS;
    seen.push({ data, headers, status });
    return status;
  };
  if (c.bulkSubscribe) {
    await server.pubsub.subscribeBulk(PUBSUB, topic, handler, { route: `bulk-${name}`, ...c.bulkSubscribe });
  } else {
    await server.pubsub.subscribe(PUBSUB, topic, handler);
  }
}

/** Polls `cond` every 25 ms until it is truthy; throws `why()` after `ms`. */
async function waitUntil(cond, ms, why) {
  const until = Date.now() + ms;
  for (;;) {
    if (cond()) return;
    if (Date.now() >= until) throw new Error(why());
    await new Promise((r) => setTimeout(r, 25)); // poll interval, not a fixed wait
  }
}

/** Races `p` against a timer (for the shutdown steps, which must not hang the exit). */
function bounded(p, ms) {
  let t;
  return Promise.race([p, new Promise((r) => (t = setTimeout(r, ms)))]).finally(() => clearTimeout(t));
}

const deliveries = (name) => inbox.get(topicOf(name));
const expected = (name) => ("expect" in cases[name] ? cases[name].expect : cases[name].data);

// 1. The app side: listen on $APP_PORT and (the SDK's own step) wait for the sidecar.
const serving = await suite.check(
  "DaprServer.start() listens on $APP_PORT and waits for the sidecar",
  async () => {
    await server.start();
  },
  { timeoutMs: 45_000 },
);
if (!serving) {
  console.log("# the app could not start; remaining checks not run");
  await bounded(server.stop(), 5_000);
  suite.finish();
}

// 2. The publishing client, readied the SDK's way.
const client = new DaprClient({ communicationProtocol: CommunicationProtocolEnum.HTTP, logger });
await startClient(suite, client);

// 3. The sidecar asks GET /dapr/subscribe once the port answers, then subscribes; the SDK has no
//    signal for "subscribed", so wait until the metadata API lists every topic (bounded).
const subscribed = await suite.check(
  "the sidecar reads GET /dapr/subscribe and lists every SDK subscription (route, PROGRAMMATIC) in metadata",
  async () => {
    const sdkSubs = server.pubsub.getSubscriptions()[PUBSUB];
    const want = Object.keys(cases).map((n) => ({ topic: topicOf(n), path: sdkSubs[topicOf(n)].dapr.route }));
    let listed = [];
    const missing = () => want.filter((w) => !listed.some((s) => s?.pubsubname === PUBSUB && s?.topic === w.topic));
    const until = Date.now() + DELIVERY_WAIT_MS;
    for (;;) {
      const md = await client.metadata.get();
      listed = Array.isArray(md?.subscriptions) ? md.subscriptions : [];
      if (missing().length === 0) break;
      if (Date.now() >= until) {
        throw new Error(
          `after ${DELIVERY_WAIT_MS} ms, GET /dapr/subscribe called ${subscribeCalls} time(s); ` +
            `not listed: ${missing().map((w) => w.topic).join(", ")}; metadata subscriptions: ${fmt(listed)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100)); // poll interval, not a fixed wait
    }
    expect(subscribeCalls >= 1, "listed, but this app never saw GET /dapr/subscribe");
    for (const w of want) {
      const s = listed.find((x) => x.pubsubname === PUBSUB && x.topic === w.topic);
      expectEq(`${w.topic} rules`, s.rules, [{ match: "", path: w.path }]);
      expectEq(`${w.topic} type`, s.type, "PROGRAMMATIC");
    }
  },
  { timeoutMs: DELIVERY_WAIT_MS + 5_000 },
);

/** publish(), which resolves {} or {error}; fails the check on {error}. */
async function publishOk(name) {
  const c = cases[name];
  const res = await client.pubsub.publish(
    PUBSUB,
    topicOf(name),
    c.data,
    c.contentType ? { contentType: c.contentType } : {},
  );
  expect(res && typeof res === "object", `unexpected result ${fmt(res)}`);
  if (res.error !== undefined) throw new Error(`publish failed: ${res.error?.message ?? fmt(res.error)}`);
  expectEq("publish result", res, {});
}

/** Waits for the first delivery of `name` and checks the data the handler got. */
async function expectDelivered(name) {
  const seen = deliveries(name);
  await waitUntil(
    () => seen.length > 0,
    DELIVERY_WAIT_MS,
    () => `not delivered within ${DELIVERY_WAIT_MS} ms`,
  );
  expectEq("handler data", seen[0].data, expected(name));
  return seen[0];
}

const published = {};
if (!subscribed) {
  console.log("# subscriptions not in place; delivery checks not run");
} else {
  // 4. Plain deliveries: publish all of them, then wait for each (the waits overlap).
  const plain = [
    ["json", "a JSON object (application/json)"],
    ["text", "a string (text/plain)"],
    ["custom", "a string with contentType application/xml"],
    ["binary", "a Buffer (application/octet-stream, delivered as data_base64)"],
    ["cloudevent", "a CloudEvent object (application/cloudevents+json, passed through)"],
  ];
  for (const [name, what] of plain) {
    published[name] = await suite.check(`publish ${what} resolves {}`, () => publishOk(name));
  }
  for (const [name, what] of plain) {
    await suite.check(
      `the handler of ${name} receives ${name === "cloudevent" ? "the event's data" : "the published value"}`,
      async () => {
        expect(published[name], "the publish above failed");
        await expectDelivered(name);
      },
      { timeoutMs: DELIVERY_WAIT_MS + 5_000 },
    );
  }
  await suite.check(
    "deliveries are POSTed with Content-Type application/cloudevents+json",
    async () => {
      const first = deliveries("json")[0];
      expect(first, "the JSON message was not delivered");
      const ct = first.headers?.["content-type"] ?? "";
      expect(/^application\/cloudevents\+json\b/i.test(ct), `content-type at the app: ${fmt(ct)}`);
    },
  );

  // 5. DROP: acknowledged as dropped, never redelivered. Its first delivery is awaited before the
  //    retry message is published, so the retry check below (≥ 2 deliveries, i.e. at least one
  //    redelivery delay) proves time passed in which a wrongly redelivered DROP would show up.
  published.drop = await suite.check("publish the message whose handler answers DROP", () => publishOk("drop"));
  const dropSeen = await suite.check(
    "the DROP handler receives the message",
    async () => {
      expect(published.drop, "the publish above failed");
      await expectDelivered("drop");
    },
    { timeoutMs: DELIVERY_WAIT_MS + 5_000 },
  );

  // 6. RETRY then SUCCESS: the sidecar must deliver the same message again.
  published.retry = await suite.check("publish the message whose handler answers RETRY once", () => publishOk("retry"));
  const retried = await suite.check(
    "a RETRY answer gets the message delivered again (then SUCCESS)",
    async () => {
      expect(published.retry, "the publish above failed");
      const seen = deliveries("retry");
      await waitUntil(
        () => seen.length >= 2,
        DELIVERY_WAIT_MS,
        () => `${seen.length} delivery(ies) within ${DELIVERY_WAIT_MS} ms, expected at least 2`,
      );
      expectEq("first answer", seen[0].status, S.RETRY);
      seen.forEach((d, i) => expectEq(`data of delivery ${i + 1}`, d.data, expected("retry")));
      console.log(`# retry message delivered ${seen.length} time(s) so far`);
    },
    { timeoutMs: DELIVERY_WAIT_MS + 5_000 },
  );

  await suite.check("a DROP answer is final: the message was delivered exactly once", async () => {
    expect(dropSeen, "the DROP message was never delivered");
    expect(retried, "the retry check failed, so no redelivery time is known to have passed");
    expectEq("DROP deliveries", deliveries("drop").length, 1);
  });
}

// 7. Bulk publish: POST /v1.0-alpha1/publish/bulk/<ps>/<topic> with one entry per message
//    ({entryID, event, contentType, metadata}); the SDK resolves {failedMessages: [...]}.
if (subscribed) {
  const sent = await suite.check("publishBulk of an object and a string resolves {failedMessages: []}", async () => {
    const res = await client.pubsub.publishBulk(PUBSUB, topicOf("bulk"), cases.bulk.data);
    expectEq("publishBulk result", res, { failedMessages: [] });
  });
  await suite.check(
    "each bulk entry reaches the handler as its own message",
    async () => {
      expect(sent, "the bulk publish above failed");
      const seen = deliveries("bulk");
      await waitUntil(
        () => seen.length >= 2,
        DELIVERY_WAIT_MS,
        () => `${seen.length} bulk deliveries within ${DELIVERY_WAIT_MS} ms, expected 2`,
      );
      const byKind = (d) => (typeof d === "string" ? 1 : 0);
      const got = seen.map((d) => d.data).sort((a, b) => byKind(a) - byKind(b));
      expectEq("bulk data", got, cases.bulk.data);
    },
    { timeoutMs: DELIVERY_WAIT_MS + 5_000 },
  );
}
// 8. Bulk subscribe: messages published one by one arrive in batches of at most 3, each entry
//    handed to the SDK handler, each acknowledged by the status the SDK answers for it.
if (subscribed) {
  let sent = true;
  for (const data of cases.batched.data) {
    const res = await client.pubsub.publish(PUBSUB, topicOf("batched"), data);
    sent &&= res && res.error === undefined;
  }
  await suite.check(
    "a subscribeBulk handler receives every message, in fewer calls than messages",
    async () => {
      expect(sent, "publishing the batched messages failed");
      const seen = deliveries("batched");
      await waitUntil(
        () => seen.length >= 5,
        DELIVERY_WAIT_MS,
        () => `${seen.length} of 5 batched messages within ${DELIVERY_WAIT_MS} ms (${bulkPosts} bulk POSTs)`,
      );
      const got = seen.map((d) => d.data).sort((a, b) => a.n - b.n);
      expectEq("batched data", got, cases.batched.data);
      expect(bulkPosts >= 2 && bulkPosts < 5, `5 messages came in ${bulkPosts} bulk POSTs (at most 3 per batch)`);
    },
    { timeoutMs: DELIVERY_WAIT_MS + 5_000 },
  );
}
await suite.check(`publishBulk to ${MISSING} reports every message as failed`, async () => {
  const res = await client.pubsub.publishBulk(MISSING, topicOf("missing"), [{ x: 1 }, "y"]);
  expectEq("failed messages", res?.failedMessages?.length, 2);
  const h = parseSdkHttpError(res.failedMessages[0].error);
  expect(h, `unexpected error shape: ${res.failedMessages[0].error?.message ?? fmt(res.failedMessages[0].error)}`);
  expectEq("status", h.status, 400);
  expectEq("errorCode", h.errorCode, "ERR_PUBSUB_NOT_FOUND");
});

// 8. Unknown pub/sub: api.md §1.4/§16.4 -> 404 ERR_PUBSUB_NOT_FOUND; publish() resolves {error}.
await suite.check(`publish to ${MISSING} resolves {error} with 404 ERR_PUBSUB_NOT_FOUND`, async () => {
  const res = await client.pubsub.publish(MISSING, topicOf("missing"), { x: 1 });
  expect(res && typeof res === "object", `unexpected result ${fmt(res)}`);
  expect(res.error !== undefined, `expected an error, got ${fmt(res)}`);
  const h = parseSdkHttpError(res.error);
  expect(h, `unexpected error shape: ${res.error?.message ?? fmt(res.error)}`);
  expectEq("status", h.status, 404);
  expectEq("errorCode", h.errorCode, "ERR_PUBSUB_NOT_FOUND");
});

await bounded(server.stop(), 5_000);
await bounded(client.stop(), 5_000);
suite.finish();
