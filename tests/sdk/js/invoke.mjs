// Service invocation + metadata + health, driven through the official Dapr JS SDK over HTTP.
//
// Environment (set by the e2e harness):
//   DAPR_HTTP_PORT   Dapr HTTP API port of the caller's sidecar (the SDK reads it itself)
//   CALLER_APP_ID    app id of that sidecar
//   TARGET_APP_ID    app id of the echo app (see tests/sdk/README.md for the echo contract)
//   MISSING_APP_ID   an app id that does not exist
//   DAPR_API_TOKEN   optional; the SDK sends it as `dapr-api-token` on its own
//
// SDK calls made (HTTPClient, @dapr/dapr 3.18.0):
//   client.start()          polls GET /v1.0/metadata every 500 ms, 62 tries in all (~31 s)
//   client.health.isHealthy GET /v1.0/metadata
//   client.invoker.invoke   <VERB> /v1.0/invoke/<app>/method/<method>; the method name is
//                           pasted into the URL as is, so a query string rides along in it
//   client.metadata.get/set GET /v1.0/metadata; PUT /v1.0/metadata/<key> (text/plain body)
import { CommunicationProtocolEnum, DaprClient, HttpMethod, LogLevel } from "@dapr/dapr";
import {
  Suite,
  expect,
  expectEq,
  expectReject,
  fmt,
  parseSdkHttpError,
  requireEnv,
  startClient,
} from "./lib/harness.mjs";

const env = requireEnv("DAPR_HTTP_PORT", "CALLER_APP_ID", "TARGET_APP_ID", "MISSING_APP_ID");
const TARGET = env.TARGET_APP_ID;
const MISSING = env.MISSING_APP_ID;
const nonce = `${process.pid}-${Date.now()}`;

const suite = new Suite("js/invoke");

// Host and port are left to the SDK: 127.0.0.1 and $DAPR_HTTP_PORT, as an application would.
const client = new DaprClient({
  communicationProtocol: CommunicationProtocolEnum.HTTP,
  logger: { level: process.env.SDK_DEBUG ? LogLevel.Debug : LogLevel.Warn },
});

/** The echo app's JSON, as the SDK returned it (parsed JSON object). */
function echoOf(res) {
  let v = res;
  if (typeof v === "string") {
    try {
      v = JSON.parse(v);
    } catch {
      throw new Error(`response is not JSON: ${fmt(res)}`);
    }
  }
  expect(v && typeof v === "object" && "method" in v && "path" in v, `not an echo: ${fmt(res)}`);
  return v;
}

// 1. Readiness, the way the SDK does it: start() polls GET /v1.0/metadata (bounded by the SDK at
//    62 tries 500 ms apart; the check's own timeout covers a sidecar that accepts and never answers).
await startClient(suite, client);

await suite.check("health.isHealthy() is true", async () => {
  expectEq("isHealthy()", await client.health.isHealthy(), true);
});

// 2. Invocation verbs, paths, bodies.
await suite.check("invoke GET hello/world", async () => {
  const e = echoOf(await client.invoker.invoke(TARGET, "hello/world", HttpMethod.GET));
  expectEq("method", e.method, "GET");
  expectEq("path", e.path, "/hello/world");
  expectEq("query", e.query, "");
  expectEq("body", e.body, "");
});

// The invoker has no query-parameter option; the method name is concatenated into the URL,
// so a query string appended to it reaches the sidecar as the request's query string.
await suite.check("invoke GET with query string (appended to the method name)", async () => {
  const e = echoOf(await client.invoker.invoke(TARGET, "hello/world?a=1&b=2", HttpMethod.GET));
  expectEq("method", e.method, "GET");
  expectEq("path", e.path, "/hello/world");
  expectEq("query", e.query, "a=1&b=2");
});

await suite.check("invoke POST with JSON body", async () => {
  const payload = { greeting: "hello", n: 42, nested: { ok: true }, list: [1, "two"] };
  const e = echoOf(await client.invoker.invoke(TARGET, "hello/world", HttpMethod.POST, payload));
  expectEq("method", e.method, "POST");
  expectEq("path", e.path, "/hello/world");
  expectEq("content-type at the app", e.headers?.["content-type"], "application/json");
  let got;
  try {
    got = JSON.parse(e.body);
  } catch {
    throw new Error(`body at the app is not JSON: ${fmt(e.body)}`);
  }
  expectEq("body", got, payload);
});

await suite.check("invoke POST with text body (text/plain)", async () => {
  const text = `plain text ${nonce} ünïcødé`;
  const e = echoOf(await client.invoker.invoke(TARGET, "hello/text", HttpMethod.POST, text));
  expectEq("path", e.path, "/hello/text");
  expectEq("content-type at the app", e.headers?.["content-type"], "text/plain");
  expectEq("body", e.body, text);
});

await suite.check("invoke PUT on a nested path", async () => {
  const payload = { id: 7, status: "shipped" };
  const e = echoOf(
    await client.invoker.invoke(TARGET, "orders/2024/items/7", HttpMethod.PUT, payload),
  );
  expectEq("method", e.method, "PUT");
  expectEq("path", e.path, "/orders/2024/items/7");
  expectEq("body", JSON.parse(e.body), payload);
});

await suite.check("invoke DELETE", async () => {
  const e = echoOf(await client.invoker.invoke(TARGET, "orders/7", HttpMethod.DELETE));
  expectEq("method", e.method, "DELETE");
  expectEq("path", e.path, "/orders/7");
});

await suite.check("custom header sent through the SDK reaches the app", async () => {
  const value = `js-${nonce}`;
  const e = echoOf(
    await client.invoker.invoke(TARGET, "hello/world", HttpMethod.GET, undefined, {
      headers: { "x-outrider-sdk-test": value },
    }),
  );
  expectEq("x-outrider-sdk-test at the app", e.headers?.["x-outrider-sdk-test"], value);
});

// 3. Failures.
await suite.check("app status 500 surfaces as an SDK error with status 500", async () => {
  const err = await expectReject("invoke status/500", () =>
    client.invoker.invoke(TARGET, "status/500", HttpMethod.GET),
  );
  const h = parseSdkHttpError(err);
  expect(h, `unexpected error shape: ${err?.message ?? err}`);
  expectEq("status", h.status, 500);
  // The app's own body is passed through verbatim.
  const e = echoOf(h.body);
  expectEq("echoed path", e.path, "/status/500");
});

let missingErr;
await suite.check("invoking a missing app id fails", async () => {
  missingErr = await expectReject(`invoke ${MISSING}`, () =>
    client.invoker.invoke(MISSING, "hello/world", HttpMethod.GET),
  );
  const h = parseSdkHttpError(missingErr);
  console.log(`# missing app: ${h ? `status=${h.status} body=${h.body}` : missingErr}`);
});

// api.md §2.1: failures before an app answers are 500 {"errorCode":"ERR_DIRECT_INVOKE",...}.
await suite.check("missing app id error is 500 ERR_DIRECT_INVOKE", async () => {
  expect(missingErr, "no error captured by the previous check");
  const h = parseSdkHttpError(missingErr);
  expect(h, `unexpected error shape: ${missingErr?.message ?? missingErr}`);
  expectEq("status", h.status, 500);
  expectEq("errorCode", h.errorCode, "ERR_DIRECT_INVOKE");
});

// 4. Metadata.
await suite.check("metadata.get() id is the caller's app id", async () => {
  const md = await client.metadata.get();
  expect(md && typeof md === "object", `metadata is not an object: ${fmt(md)}`);
  expectEq("id", md.id, env.CALLER_APP_ID);
});

await suite.check("metadata.set() then get() shows the value in extended", async () => {
  const key = "sdk-compat-js";
  const value = `js-value-${nonce}`;
  expectEq("set() result", await client.metadata.set(key, value), true);
  const md = await client.metadata.get();
  expectEq(`extended[${key}]`, md?.extended?.[key], value);
});

await client.stop();
suite.finish();
