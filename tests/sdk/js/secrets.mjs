// Secrets, driven through the official Dapr JS SDK (`client.secret.*`) over HTTP, or over gRPC with
// DAPR_COMMUNICATION_PROTOCOL=grpc.
//
// Environment (set by the e2e harness):
//   DAPR_HTTP_PORT   Dapr HTTP API port of the sidecar (the SDK reads it itself)
//   DAPR_GRPC_PORT   instead, in gRPC mode: its gRPC API port (passed to the SDK as daprPort)
//   DAPR_COMMUNICATION_PROTOCOL  optional: http (default) or grpc
//   SECRET_STORE     a secretstores.local.file store holding {"db": {"password": "…"}, "port": 5432}
//                    (nestedSeparator ":"), with Configuration scopes denying "denied"
//   SECRET_PASSWORD  the value of db:password
//   MISSING_STORE    a store name that does not exist
//
// SDK calls made (HTTPClientSecret, @dapr/dapr 3.18.0):
//   secret.get(s, key)   GET /v1.0/secrets/<s>/<key>; the JSON answer as is; throws on >= 400
//   secret.getBulk(s)    GET /v1.0/secrets/<s>/bulk; the JSON answer as is; throws on >= 400
// In gRPC mode (GRPCClientSecret):
//   secret.get(s, key)   GetSecret{store_name, key}; resolves {<first key of data>: value}; throws
//                        the ConnectError
//   secret.getBulk(s)    GetBulkSecret{store_name}; resolves {name: data[name].secrets}
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

const env = requireEnv(API_PORT_ENV, "SECRET_STORE", "SECRET_PASSWORD", "MISSING_STORE");
const suite = new Suite("js/secrets");
const client = newClient();
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
// gRPC: daprd's secret errors (pkg/api/universal/secrets.go, messages/predefined.go) carry no
// details; the code and message are the contract.
const failures = [
  ["a missing secret", env.SECRET_STORE, "nope", 500, "ERR_SECRET_GET", "Internal",
    new RegExp(`^failed getting secret with key nope from secret store ${env.SECRET_STORE}: .+`)],
  ["a denied secret", env.SECRET_STORE, "denied", 403, "ERR_PERMISSION_DENIED", "PermissionDenied",
    `access denied by policy to get "denied" from "${env.SECRET_STORE}"`],
  ["an unknown store", env.MISSING_STORE, "x", 401, "ERR_SECRET_STORE_NOT_FOUND", "InvalidArgument",
    `failed finding secret store with key ${env.MISSING_STORE}`],
];
for (const [what, store, key, status, code, grpcCode, grpcMessage] of failures) {
  await suite.check(`secret.get of ${what} throws ${GRPC ? grpcCode : `${status} ${code}`}`, async () => {
    const e = await expectReject(what, () => client.secret.get(store, key));
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
