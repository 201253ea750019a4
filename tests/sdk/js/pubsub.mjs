// Pub/sub, driven through the official Dapr JS SDK over HTTP, or over gRPC with
// DAPR_COMMUNICATION_PROTOCOL=grpc: this script IS the app. The sidecar starts it as its child
// and it serves the subscriptions itself with the SDK's DaprServer, then publishes through a
// DaprClient and checks what its own handlers receive:
//
//   outrider run --app-id X --app-port P -- node tests/sdk/js/pubsub.mjs
//   DAPR_COMMUNICATION_PROTOCOL=grpc outrider run --app-id X --app-port P --app-protocol grpc \
//     -- node tests/sdk/js/pubsub.mjs
//
// Environment (set by the sidecar for its child, or by the e2e harness):
//   DAPR_HTTP_PORT   Dapr HTTP API port of the sidecar (the SDK reads it itself)
//   DAPR_GRPC_PORT   instead, in gRPC mode: its gRPC API port (the SDK clients' daprPort)
//   DAPR_COMMUNICATION_PROTOCOL  optional: http (default) or grpc; grpc needs a sidecar started
//                    with --app-protocol grpc (the DaprServer then serves AppCallback)
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
//
// In gRPC mode (GRPCServer / GRPCClient, see tests/sdk/README.md):
//   DaprServer       an h2c server on 127.0.0.1:APP_PORT serving AppCallback (OnTopicEvent,
//       ListTopicSubscriptions, ...) and AppCallbackAlpha (OnBulkTopicEventAlpha1 only: the stable
//       OnBulkTopicEvent is UNIMPLEMENTED); start() = listen, then GetMetadata polling.
//   ListTopicSubscriptions  {pubsub_name, topic, routes: {default: <the same route as above>},
//       bulk_subscribe?}; OnTopicEvent is routed by pubsub_name, topic and path; the handler gets
//       the event's data bytes JSON-parsed when they parse, else as a string; its "RETRY"/"DROP"
//       becomes TopicEventResponse.status (SUCCESS otherwise).
//   publish          PublishEvent{data, data_content_type as above}; resolves {}, THROWS {error:
//       ConnectError} on failure. publishBulk: BulkPublishEventAlpha1 (an RPC error reports every
//       message as failed with that ConnectError).
//   The subscription listing comes from the raw GetMetadata RPC (the SDK's metadata.get() drops
//   `subscriptions` over gRPC).
import { DaprClient, DaprPubSubStatusEnum, DaprServer, LogLevel } from "@dapr/dapr";
import { PubsubSubscriptionType } from "@dapr/dapr/proto/dapr/proto/runtime/v1/dapr_pb.js";
import {
  API_PORT_ENV,
  GRPC,
  Suite,
  bounded,
  byProtocol,
  clientOptions,
  expect,
  expectEq,
  expectGrpcError,
  fmt,
  parseSdkHttpError,
  requireEnv,
  startClient,
  startServer,
  waitUntil,
} from "./lib/harness.mjs";

const env = requireEnv(API_PORT_ENV, "APP_PORT");
const PUBSUB = process.env.PUBSUB_NAME || "pubsub";
const MISSING = process.env.MISSING_PUBSUB || "sdkjs-missing-pubsub";
const DEBUG = Boolean(process.env.SDK_DEBUG);
const DELIVERY_WAIT_MS = 15_000;
const nonce = `sdkjs-${process.pid}-${Date.now()}`;
const topicOf = (name) => `${nonce}-${name}`;

// The whole script normally takes a few seconds; its bounded waits add up to well under this.
process.env.SDK_TEST_TIMEOUT_SECS ||= "90";
const suite = new Suite("js/pubsub");
console.log(`# app ${process.env.APP_ID ?? "?"} on port ${env.APP_PORT}, sidecar ${env[API_PORT_ENV]}, pubsub ${PUBSUB}`);

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
  // HTTP: only used for the SDK's address string (listen() binds every interface); gRPC: the
  // address the h2c server listens on.
  serverHost: "127.0.0.1",
  serverPort: env.APP_PORT,
  communicationProtocol: clientOptions().communicationProtocol,
  // gRPC: the embedded client dials 127.0.0.1:$DAPR_GRPC_PORT; HTTP: left to the SDK, as before.
  ...(GRPC ? { clientOptions: clientOptions({ logger }) } : {}),
  logger,
});

// What the sidecar asks of the app: GET /dapr/subscribe (gRPC: ListTopicSubscriptions) calls, bulk
// deliveries (gRPC: OnBulkTopicEventAlpha1 calls), and over gRPC every OnTopicEvent request as
// received (its CloudEvent attributes, which the SDK handler never sees).
let subscribeCalls = 0;
let bulkPosts = 0;
/** gRPC only: topic -> the OnTopicEvent requests for it, in order (attributes, no data). */
const rawEvents = new Map();
if (GRPC) {
  // GRPCServer's connect routes call `impl.<method>(req, ctx)` at request time, so wrapping the
  // instance's methods observes every call before the SDK handles it.
  const impl = server.daprServer.getServerImpl();
  const observe = (method, before) => {
    const original = impl[method].bind(impl);
    impl[method] = async (req, ctx) => {
      before(req);
      if (DEBUG) console.log(`# app <- ${method} ${fmt({ ...req, data: undefined, entries: req.entries?.length })}`);
      const res = await original(req, ctx);
      if (DEBUG) console.log(`# app -> ${method} ${fmt(res)}`);
      return res;
    };
  };
  observe("listTopicSubscriptions", () => subscribeCalls++);
  observe("onBulkTopicEventAlpha1", () => bulkPosts++);
  observe("onTopicEvent", (req) => {
    const seen = rawEvents.get(req.topic) ?? [];
    const { id, source, type, specVersion, dataContentType, topic, pubsubName, path } = req;
    seen.push({ id, source, type, specVersion, dataContentType, topic, pubsubName, path });
    rawEvents.set(req.topic, seen);
  });
} else {
  // Registered on the SDK's own Express app, after its body parsers and before any SDK route,
  // so it sees parsed bodies and never answers itself.
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
}

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

const deliveries = (name) => inbox.get(topicOf(name));
const expected = (name) => ("expect" in cases[name] ? cases[name].expect : cases[name].data);

// 1. The app side: listen on $APP_PORT and (the SDK's own step) wait for the sidecar.
await startServer(suite, server, "DaprServer.start() listens on $APP_PORT and waits for the sidecar");

// 2. The publishing client, readied the SDK's way.
const client = new DaprClient(clientOptions({ logger }));
await startClient(suite, client);

/**
 * The sidecar's subscription listing as [{pubsubname, topic, rules: [{match, path}], type}]:
 * GET /v1.0/metadata through the SDK over HTTP; over gRPC the raw GetMetadata RPC on the SDK's
 * own connect client (its metadata.get() wrapper leaves `subscriptions` out), mapped to the
 * same shape (type as the enum's name).
 */
async function listedSubscriptions() {
  if (!GRPC) {
    const md = await client.metadata.get();
    return Array.isArray(md?.subscriptions) ? md.subscriptions : [];
  }
  const md = await (await client.daprClient.getClient()).getMetadata({});
  return md.subscriptions.map((s) => ({
    pubsubname: s.pubsubName,
    topic: s.topic,
    rules: (s.rules?.rules ?? []).map((r) => ({ match: r.match, path: r.path })),
    type: PubsubSubscriptionType[s.type] ?? s.type,
  }));
}

// 3. The sidecar asks GET /dapr/subscribe (gRPC: ListTopicSubscriptions) once the port answers,
//    then subscribes; the SDK has no signal for "subscribed", so wait until the metadata API
//    lists every topic (bounded).
//    The delivery checks below need every topic subscribed, not this check's route/type assertions:
//    they run when every topic got listed, so a wrong listing does not hide how deliveries behave.
const ASKS = byProtocol("GET /dapr/subscribe", "ListTopicSubscriptions");
let allListed = false;
await suite.check(
  byProtocol(
    "the sidecar reads GET /dapr/subscribe and lists every SDK subscription (route, PROGRAMMATIC) in metadata",
    "the sidecar calls ListTopicSubscriptions and lists every SDK subscription (route, PROGRAMMATIC) in GetMetadata",
  ),
  async () => {
    const sdkSubs = server.pubsub.getSubscriptions()[PUBSUB];
    const want = Object.keys(cases).map((n) => ({ topic: topicOf(n), path: sdkSubs[topicOf(n)].dapr.route }));
    let listed = [];
    const missing = () => want.filter((w) => !listed.some((s) => s?.pubsubname === PUBSUB && s?.topic === w.topic));
    const until = Date.now() + DELIVERY_WAIT_MS;
    for (;;) {
      listed = await listedSubscriptions();
      if (missing().length === 0) break;
      if (Date.now() >= until) {
        throw new Error(
          `after ${DELIVERY_WAIT_MS} ms, ${ASKS} called ${subscribeCalls} time(s); ` +
            `not listed: ${missing().map((w) => w.topic).join(", ")}; metadata subscriptions: ${fmt(listed)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100)); // poll interval, not a fixed wait
    }
    allListed = true;
    expect(subscribeCalls >= 1, `listed, but this app never saw ${ASKS}`);
    const entry = (w) => listed.find((x) => x.pubsubname === PUBSUB && x.topic === w.topic);
    for (const w of want) expectEq(`${w.topic} type`, entry(w).type, "PROGRAMMATIC");
    for (const w of want) expectEq(`${w.topic} rules`, entry(w).rules, [{ match: "", path: w.path }]);
  },
  { timeoutMs: DELIVERY_WAIT_MS + 5_000 },
);
const subscribed = allListed;

/**
 * gRPC mode: publish() resolves {} or throws {error: ConnectError} (it never resolves {error} over
 * gRPC). Returns that error, or undefined once it resolved exactly {}.
 */
async function publishGrpc(pubsub, topic, data, options) {
  let res;
  try {
    res = await client.pubsub.publish(pubsub, topic, data, options);
  } catch (thrown) {
    if (thrown && typeof thrown === "object" && "error" in thrown) return thrown.error;
    throw thrown;
  }
  expectEq("publish result", res, {});
  return undefined;
}

/** publish(), which resolves {} or {error} (gRPC: throws {error}); fails the check on an error. */
async function publishOk(name) {
  const c = cases[name];
  if (GRPC) {
    const err = await publishGrpc(PUBSUB, topicOf(name), c.data, c.contentType ? { contentType: c.contentType } : {});
    if (err !== undefined) throw new Error(`publish failed: ${err?.message ?? fmt(err)}`);
    return;
  }
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
  if (!GRPC) {
    await suite.check(
      "deliveries are POSTed with Content-Type application/cloudevents+json",
      async () => {
        const first = deliveries("json")[0];
        expect(first, "the JSON message was not delivered");
        const ct = first.headers?.["content-type"] ?? "";
        expect(/^application\/cloudevents\+json\b/i.test(ct), `content-type at the app: ${fmt(ct)}`);
      },
    );
  } else {
    // The gRPC counterpart of the envelope's Content-Type: OnTopicEvent carries the CloudEvent's
    // attributes as fields (daprd pkg/runtime/pubsub: id, source = the publisher's app id, type
    // com.dapr.event.sent, spec_version 1.0, data_content_type, topic, pubsub_name) and `path` =
    // the matched route, here the subscription's routes.default.
    const contentTypes = {
      json: "application/json",
      text: "text/plain",
      custom: "application/xml",
      binary: "application/octet-stream",
      cloudevent: "application/json", // the envelope's own datacontenttype
    };
    await suite.check(
      "deliveries are OnTopicEvent calls with the CloudEvent attributes, each data_content_type and path = the route",
      async () => {
        const sdkSubs = server.pubsub.getSubscriptions()[PUBSUB];
        for (const [name, ct] of Object.entries(contentTypes)) {
          const ev = rawEvents.get(topicOf(name))?.[0];
          expect(ev, `no OnTopicEvent for ${name}`);
          expectEq(`${name} data_content_type`, ev.dataContentType, ct);
          expectEq(`${name} topic`, ev.topic, topicOf(name));
          expectEq(`${name} pubsub_name`, ev.pubsubName, PUBSUB);
          expect(typeof ev.id === "string" && ev.id !== "", `${name}: no id in ${fmt(ev)}`);
        }
        const json = rawEvents.get(topicOf("json"))[0];
        expectEq("json source (the publisher's app id)", json.source, process.env.APP_ID);
        expectEq("json type", json.type, "com.dapr.event.sent");
        expectEq("json spec_version", json.specVersion, "1.0");
        const ce = rawEvents.get(topicOf("cloudevent"))[0];
        const sent = cases.cloudevent.data;
        expectEq("cloudevent attributes passed through", { id: ce.id, source: ce.source, type: ce.type }, {
          id: sent.id,
          source: sent.source,
          type: sent.type,
        });
        // daprd: TopicEventRequest.path = the matched rule's path, i.e. routes.default verbatim.
        for (const name of Object.keys(contentTypes)) {
          const ev = rawEvents.get(topicOf(name))[0];
          expectEq(`${name} path`, ev.path, sdkSubs[topicOf(name)].dapr.route);
        }
      },
    );
  }

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
//    gRPC: the batches are OnBulkTopicEventAlpha1 calls (daprd's postman/grpc DeliverBulk tries the
//    stable OnBulkTopicEvent first and falls back on UNIMPLEMENTED, which is what the JS server
//    answers for it).
const BULK_CALLS = byProtocol("bulk POSTs", "OnBulkTopicEventAlpha1 calls");
if (subscribed) {
  let sent = true;
  for (const data of cases.batched.data) {
    if (GRPC) {
      try {
        sent &&= (await publishGrpc(PUBSUB, topicOf("batched"), data)) === undefined;
      } catch (e) {
        console.log(`# publishing a batched message: ${e?.message ?? fmt(e)}`);
        sent = false;
      }
      continue;
    }
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
        () => `${seen.length} of 5 batched messages within ${DELIVERY_WAIT_MS} ms (${bulkPosts} ${BULK_CALLS})`,
      );
      const got = seen.map((d) => d.data).sort((a, b) => a.n - b.n);
      expectEq("batched data", got, cases.batched.data);
      expect(bulkPosts >= 2 && bulkPosts < 5, `5 messages came in ${bulkPosts} ${BULK_CALLS} (at most 3 per batch)`);
    },
    { timeoutMs: DELIVERY_WAIT_MS + 5_000 },
  );
}
// gRPC (daprd grpc.go validateAndGetPubsubAndTopic, errors/pubsub.go NotFound): InvalidArgument
// "pubsub <name> is not found", exactly one ErrorInfo DAPR_PUBSUB_NOT_FOUND (no ResourceInfo).
const pubsubNotFound = {
  code: "InvalidArgument",
  message: `pubsub ${MISSING} is not found`,
  reason: "DAPR_PUBSUB_NOT_FOUND",
};
await suite.check(`publishBulk to ${MISSING} reports every message as failed`, async () => {
  const res = await client.pubsub.publishBulk(MISSING, topicOf("missing"), [{ x: 1 }, "y"]);
  expectEq("failed messages", res?.failedMessages?.length, 2);
  if (GRPC) {
    for (const [i, f] of res.failedMessages.entries()) expectGrpcError(`failed message ${i + 1}`, f.error, pubsubNotFound);
    return;
  }
  const h = parseSdkHttpError(res.failedMessages[0].error);
  expect(h, `unexpected error shape: ${res.failedMessages[0].error?.message ?? fmt(res.failedMessages[0].error)}`);
  expectEq("status", h.status, 400);
  expectEq("errorCode", h.errorCode, "ERR_PUBSUB_NOT_FOUND");
});

// 8. Unknown pub/sub: api.md §1.4/§16.4 -> 404 ERR_PUBSUB_NOT_FOUND; publish() resolves {error}
//    (over gRPC it throws {error}, checked as above).
await suite.check(
  byProtocol(
    `publish to ${MISSING} resolves {error} with 404 ERR_PUBSUB_NOT_FOUND`,
    `publish to ${MISSING} throws {error} with InvalidArgument DAPR_PUBSUB_NOT_FOUND`,
  ),
  async () => {
    if (GRPC) {
      const err = await publishGrpc(MISSING, topicOf("missing"), { x: 1 });
      expect(err !== undefined, "expected an error, publish() resolved {}");
      expectGrpcError(`publish to ${MISSING}`, err, pubsubNotFound);
      return;
    }
    const res = await client.pubsub.publish(MISSING, topicOf("missing"), { x: 1 });
    expect(res && typeof res === "object", `unexpected result ${fmt(res)}`);
    expect(res.error !== undefined, `expected an error, got ${fmt(res)}`);
    const h = parseSdkHttpError(res.error);
    expect(h, `unexpected error shape: ${res.error?.message ?? fmt(res.error)}`);
    expectEq("status", h.status, 404);
    expectEq("errorCode", h.errorCode, "ERR_PUBSUB_NOT_FOUND");
  },
);

await bounded(server.stop(), 5_000);
await bounded(client.stop(), 5_000);
suite.finish();
