// Secrets, driven through the official Dapr JS SDK over HTTP (`client.secret.*`).
//
// Environment (set by the e2e harness):
//   DAPR_HTTP_PORT   Dapr HTTP API port of the sidecar (the SDK reads it itself)
//   SECRET_STORE     a secretstores.local.file store holding {"db": {"password": "…"}, "port": 5432}
//                    (nestedSeparator ":"), with Configuration scopes denying "denied"
//   SECRET_PASSWORD  the value of db:password
//   MISSING_STORE    a store name that does not exist
//
// SDK calls made (HTTPClientSecret, @dapr/dapr 3.18.0):
//   secret.get(s, key)   GET /v1.0/secrets/<s>/<key>; the JSON answer as is; throws on >= 400
//   secret.getBulk(s)    GET /v1.0/secrets/<s>/bulk; the JSON answer as is; throws on >= 400
import { CommunicationProtocolEnum, DaprClient, LogLevel } from "@dapr/dapr";
import { Suite, expectEq, expectReject, parseSdkHttpError, requireEnv, startClient } from "./lib/harness.mjs";

const env = requireEnv("DAPR_HTTP_PORT", "SECRET_STORE", "SECRET_PASSWORD", "MISSING_STORE");
const suite = new Suite("js/secrets");
const diag = (lvl) => (msg, ...rest) =>
  console.log(`# sdk ${lvl}: ${[msg, ...rest].map(String).join(" ").replace(/\s*\n\s*/g, " | ")}`);
const client = new DaprClient({
  communicationProtocol: CommunicationProtocolEnum.HTTP,
  logger: {
    level: LogLevel.Warn,
    service: { error: diag("error"), warn: diag("warn"), info: diag("info"), verbose: diag("verbose"), debug: diag("debug") },
  },
});
await startClient(suite, client);

await suite.check("secret.get of a nested key resolves {key: value}", async () => {
  expectEq("secret", await client.secret.get(env.SECRET_STORE, "db:password"), { "db:password": env.SECRET_PASSWORD });
});
await suite.check("secret.get of a number resolves its JSON text", async () => {
  expectEq("secret", await client.secret.get(env.SECRET_STORE, "port"), { port: "5432" });
});
await suite.check("secret.getBulk resolves every allowed secret, the denied one left out", async () => {
  const all = await client.secret.getBulk(env.SECRET_STORE);
  expectEq("db:password", all["db:password"], { "db:password": env.SECRET_PASSWORD });
  expectEq("denied", all.denied, undefined);
});
const failures = [
  ["a missing secret", env.SECRET_STORE, "nope", 500, "ERR_SECRET_GET"],
  ["a denied secret", env.SECRET_STORE, "denied", 403, "ERR_PERMISSION_DENIED"],
  ["an unknown store", env.MISSING_STORE, "x", 401, "ERR_SECRET_STORE_NOT_FOUND"],
];
for (const [what, store, key, status, code] of failures) {
  await suite.check(`secret.get of ${what} throws ${status} ${code}`, async () => {
    const e = await expectReject(what, () => client.secret.get(store, key));
    const h = parseSdkHttpError(e);
    expectEq("status", h?.status, status);
    expectEq("errorCode", h?.errorCode, code);
  });
}
suite.finish();
