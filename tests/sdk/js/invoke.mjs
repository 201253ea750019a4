// Service invocation + metadata + health, driven through the official Dapr JS SDK over HTTP, or
// over gRPC with DAPR_COMMUNICATION_PROTOCOL=grpc.
//
// Environment (set by the e2e harness):
//   DAPR_HTTP_PORT   Dapr HTTP API port of the caller's sidecar (the SDK reads it itself)
//   DAPR_GRPC_PORT   instead, in gRPC mode: its gRPC API port (passed to the SDK as daprPort)
//   DAPR_COMMUNICATION_PROTOCOL  optional: http (default) or grpc
//   CALLER_APP_ID    app id of that sidecar
//   TARGET_APP_ID    app id of the echo app (see tests/sdk/README.md for the echo contract)
//   MISSING_APP_ID   an app id that does not exist
//   DAPR_API_TOKEN   optional; the SDK sends it as `dapr-api-token` on its own
//   ENDPOINT_NAME    optional: an HTTPEndpoint of the caller's sidecar whose base URL is the echo
//                    app's at the path ENDPOINT_PATH, with the header `x-endpoint: declared`
//
// SDK calls made (HTTPClient, @dapr/dapr 3.18.0):
//   client.start()          polls GET /v1.0/metadata every 500 ms, 62 tries in all (~31 s)
//   client.health.isHealthy GET /v1.0/metadata
//   client.invoker.invoke   <VERB> /v1.0/invoke/<app>/method/<method>; the method name is
//                           pasted into the URL as is, so a query string rides along in it
//   client.metadata.get/set GET /v1.0/metadata; PUT /v1.0/metadata/<key> (text/plain body)
//
// SDK calls made (GRPCClient, connect-es over h2c, in gRPC mode):
//   client.start()          polls the GetMetadata RPC every 500 ms (~30 s)
//   client.health.isHealthy GetMetadata
//   client.invoker.invoke   InvokeService{id, message: {method, http_extension: {verb}, data: Any{
//                           type_url "", value}, content_type}}; no querystring, options.headers
//                           dropped; `data` defaults to {} so a GET carries "{}" (application/json);
//                           the answer's bytes must be JSON
//   client.metadata.get/set GetMetadata; SetMetadata{key, value}
import { DaprClient, HttpMethod, LogLevel } from "@dapr/dapr";
import {
  API_PORT_ENV,
  GRPC,
  Suite,
  byProtocol,
  clientOptions,
  expect,
  expectEq,
  expectGrpcError,
  expectReject,
  fmt,
  parseSdkGrpcError,
  parseSdkHttpError,
  requireEnv,
  startClient,
} from "./lib/harness.mjs";

const env = requireEnv(API_PORT_ENV, "CALLER_APP_ID", "TARGET_APP_ID", "MISSING_APP_ID");
const TARGET = env.TARGET_APP_ID;
const MISSING = env.MISSING_APP_ID;
const nonce = `${process.pid}-${Date.now()}`;

const suite = new Suite("js/invoke");

// HTTP: host and port are left to the SDK (127.0.0.1 and $DAPR_HTTP_PORT), as an application
// would. gRPC: 127.0.0.1:$DAPR_GRPC_PORT, given explicitly.
const client = new DaprClient(
  clientOptions({ logger: { level: process.env.SDK_DEBUG ? LogLevel.Debug : LogLevel.Warn } }),
);

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
// Over gRPC the SDK's `data` parameter defaults to {}, so even a GET carries the body "{}" with
// content_type application/json, which the sidecar hands to the app as is.
await suite.check("invoke GET hello/world", async () => {
  const e = echoOf(await client.invoker.invoke(TARGET, "hello/world", HttpMethod.GET));
  expectEq("method", e.method, "GET");
  expectEq("path", e.path, "/hello/world");
  expectEq("query", e.query, "");
  expectEq("body", e.body, byProtocol("", "{}"));
  if (GRPC) expectEq("content-type at the app", e.headers?.["content-type"], "application/json");
});

if (process.env.ENDPOINT_NAME) {
  // An HTTPEndpoint is invoked by its name, as an app id is: the sidecar calls its base URL.
  const name = process.env.ENDPOINT_NAME;
  await suite.check(`invoke the HTTPEndpoint ${name} by name`, async () => {
    const e = echoOf(await client.invoker.invoke(name, "hello/world", HttpMethod.GET));
    expectEq("method", e.method, "GET");
    expectEq("path", e.path, `${process.env.ENDPOINT_PATH ?? ""}/hello/world`);
    expectEq("the endpoint's header", e.headers?.["x-endpoint"], "declared");
  });
}

if (!GRPC) {
  // The invoker has no query-parameter option; the method name is concatenated into the URL,
  // so a query string appended to it reaches the sidecar as the request's query string.
  await suite.check("invoke GET with query string (appended to the method name)", async () => {
    const e = echoOf(await client.invoker.invoke(TARGET, "hello/world?a=1&b=2", HttpMethod.GET));
    expectEq("method", e.method, "GET");
    expectEq("path", e.path, "/hello/world");
    expectEq("query", e.query, "a=1&b=2");
  });
} else {
  // Over gRPC the method name is not a URL: the SDK sets no http_extension.querystring, and
  // daprd refuses a method containing '?' (pkg/messaging/method NormalizeMethod: "method contains
  // forbidden character"), wrapped as ErrDirectInvoke: Internal "failed to invoke, id: <app>,
  // err: rpc error: code = InvalidArgument desc = invalid method: ...", no details. It must not
  // reach the app with the text after '?' turned into a query string.
  await suite.check("invoke with '?' in the method name is refused: Internal, invalid method (no query string over gRPC)", async () => {
    const err = await expectReject("invoke hello/world?a=1&b=2", () =>
      client.invoker.invoke(TARGET, "hello/world?a=1&b=2", HttpMethod.GET),
    );
    expectGrpcError("invoke with '?'", err, {
      code: "Internal",
      message: new RegExp(`^failed to invoke, id: ${TARGET}, err: .*invalid method`),
    });
  });
}

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

if (!GRPC) {
  await suite.check("custom header sent through the SDK reaches the app", async () => {
    const value = `js-${nonce}`;
    const e = echoOf(
      await client.invoker.invoke(TARGET, "hello/world", HttpMethod.GET, undefined, {
        headers: { "x-outrider-sdk-test": value },
      }),
    );
    expectEq("x-outrider-sdk-test at the app", e.headers?.["x-outrider-sdk-test"], value);
  });
} else {
  // The gRPC invoker drops options.headers; the call metadata it does send is connect-es's
  // `user-agent`, plus `dapr-api-token` when DAPR_API_TOKEN is set. daprd attaches every incoming
  // metadata entry to the request and the HTTP channel turns it into headers (user-agent as is);
  // the API token is deleted once checked (pkg/api/grpc/auth.go), so the app never sees it.
  await suite.check("the SDK's gRPC call metadata reaches the app as headers (user-agent; never dapr-api-token)", async () => {
    const e = echoOf(
      await client.invoker.invoke(TARGET, "hello/world", HttpMethod.GET, undefined, {
        headers: { "x-outrider-sdk-test": "dropped-by-the-sdk" },
      }),
    );
    const ua = e.headers?.["user-agent"] ?? "";
    expect(/^connect-es\//.test(ua), `user-agent at the app: ${fmt(ua)} (the SDK sends connect-es/<version>)`);
    expectEq("dapr-api-token at the app", e.headers?.["dapr-api-token"], undefined);
    // If a later SDK sends options.headers as call metadata, the HTTP check applies instead.
    expectEq("x-outrider-sdk-test at the app (options.headers, dropped by the SDK)", e.headers?.["x-outrider-sdk-test"], undefined);
  });
}

// 3. Failures.
if (!GRPC) {
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
} else {
  // daprd (grpc.go InvokeService, messaging/v1 ErrorFromHTTPResponseCode): a non-2xx answer of
  // an HTTP app becomes the gRPC status for that HTTP code (500 -> Unknown) with message
  // http.StatusText, and one ErrorInfo{reason: StatusText, domain: dapr.io, metadata:
  // {http.code: "500", http.error_message: <the app's body, cut to its first 63 bytes>}}.
  await suite.check("app status 500 surfaces as gRPC Unknown \"Internal Server Error\" with http.code 500 and the app's body", async () => {
    const err = await expectReject("invoke status/500", () =>
      client.invoker.invoke(TARGET, "status/500", HttpMethod.GET),
    );
    const g = expectGrpcError("invoke status/500", err, {
      code: "Unknown",
      message: "Internal Server Error",
      reason: "Internal Server Error",
    });
    expectEq("ErrorInfo.metadata keys", Object.keys(g.errorInfo.metadata).sort(), ["http.code", "http.error_message"]);
    expectEq("http.code", g.errorInfo.metadata["http.code"], "500");
    const body = g.errorInfo.metadata["http.error_message"];
    // The echo's JSON (keys sorted, so it opens with the body the SDK sent: "{}") is longer than
    // 63 bytes, so exactly its first 63 bytes are kept.
    expectEq("http.error_message length (bytes)", Buffer.byteLength(body), 63);
    expect(body.startsWith('{"body":"{}",'), `http.error_message is not the app's body: ${fmt(body)}`);
  });
}

let missingErr;
await suite.check("invoking a missing app id fails", async () => {
  missingErr = await expectReject(`invoke ${MISSING}`, () =>
    client.invoker.invoke(MISSING, "hello/world", HttpMethod.GET),
  );
  const h = parseSdkHttpError(missingErr);
  const g = parseSdkGrpcError(missingErr);
  console.log(
    `# missing app: ${h ? `status=${h.status} body=${h.body}` : g ? `${g.code} ${g.message} details=${fmt(g.detailTypes)}` : missingErr}`,
  );
});

if (!GRPC) {
  // api.md §2.1: failures before an app answers are 500 {"errorCode":"ERR_DIRECT_INVOKE",...}.
  await suite.check("missing app id error is 500 ERR_DIRECT_INVOKE", async () => {
    expect(missingErr, "no error captured by the previous check");
    const h = parseSdkHttpError(missingErr);
    expect(h, `unexpected error shape: ${missingErr?.message ?? missingErr}`);
    expectEq("status", h.status, 500);
    expectEq("errorCode", h.errorCode, "ERR_DIRECT_INVOKE");
  });
} else {
  // daprd: every error of directMessaging.Invoke is messages.ErrDirectInvoke: Internal
  // "failed to invoke, id: <app>, err: <cause>", no details.
  await suite.check("missing app id error is Internal \"failed to invoke, id: <app>, err: ...\" (ErrDirectInvoke)", async () => {
    expect(missingErr, "no error captured by the previous check");
    expectGrpcError(`invoke ${MISSING}`, missingErr, {
      code: "Internal",
      message: new RegExp(`^failed to invoke, id: ${MISSING}, err: .+`),
    });
  });
}

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
