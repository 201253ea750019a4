// Output bindings, driven through the official Dapr JS SDK (`client.binding.send`) over HTTP, or
// over gRPC with DAPR_COMMUNICATION_PROTOCOL=grpc.
//
// Environment (set by the e2e harness):
//   DAPR_HTTP_PORT / DAPR_GRPC_PORT   the sidecar's API port for the protocol
//   STORAGE_BINDING  a bindings.localstorage binding whose root is STORAGE_ROOT
//   STORAGE_ROOT     that root (read here to check what was written)
//   REDIS_BINDING    a bindings.redis binding
//   MISSING_BINDING  a binding name that does not exist
//   RUN_ID           unique per run: names are made from it
//
// SDK calls made (@dapr/dapr 3.18.0):
//   HTTP: binding.send(name, op, data, metadata)  POST /v1.0/bindings/<name> {operation, data,
//         metadata}; resolves the answer's body parsed as JSON (or its text); throws on >= 400
//   gRPC: binding.send(...)  InvokeBinding{name, operation, data (JSON text, absent when falsy),
//         metadata}; resolves {data: bytes, metadata, operation}; throws the ConnectError
import { readFileSync } from "node:fs";
import { join } from "node:path";
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

const env = requireEnv(API_PORT_ENV, "STORAGE_BINDING", "STORAGE_ROOT", "REDIS_BINDING", "MISSING_BINDING", "RUN_ID");
const suite = new Suite("js/bindings");
const client = newClient();
await startClient(suite, client);
const name = (n) => `${env.RUN_ID}-${n}`;
/** What a `get` answered, as text, whichever transport. */
const text = (answer) => (GRPC ? new TextDecoder().decode(answer.data) : JSON.stringify(answer));

await suite.check("binding.send create to local storage writes the file and answers its name", async () => {
  const file = `${name("orders")}/42.json`;
  const answer = await client.binding.send(env.STORAGE_BINDING, "create", { order: 42 }, { fileName: file });
  if (GRPC) expectEq("answer", JSON.parse(new TextDecoder().decode(answer.data)), { fileName: file });
  else expectEq("answer", answer, { fileName: file });
  expectEq("on disk", JSON.parse(readFileSync(join(env.STORAGE_ROOT, file), "utf8")), { order: 42 });
  const got = await client.binding.send(env.STORAGE_BINDING, "get", undefined, { fileName: file });
  expectEq("get", JSON.parse(text(got)), { order: 42 });
});
await suite.check("binding.send to Redis: create, increment, get, delete", async () => {
  const key = name("counter");
  await client.binding.send(env.REDIS_BINDING, "create", 41, { key });
  await client.binding.send(env.REDIS_BINDING, "increment", undefined, { key });
  expectEq("get", text(await client.binding.send(env.REDIS_BINDING, "get", undefined, { key })), "42");
  await client.binding.send(env.REDIS_BINDING, "delete", undefined, { key });
  const gone = await client.binding.send(env.REDIS_BINDING, "get", undefined, { key });
  expectEq("after delete", GRPC ? gone.data.length : gone, GRPC ? 0 : "");
});
const failures = [
  ["an unknown binding", env.MISSING_BINDING, "create", {}, `error invoking output binding ${env.MISSING_BINDING}: couldn't find output binding`],
  ["an operation the binding lacks", env.REDIS_BINDING, "list", { key: "k" }, `binding ${env.REDIS_BINDING} does not support operation list`],
  ["a path out of the root", env.STORAGE_BINDING, "get", { fileName: "../../etc/passwd" }, "leads outside rootPath"],
];
for (const [what, binding, op, metadata, says] of failures) {
  await suite.check(`${what} throws ${GRPC ? "Internal" : "500 ERR_INVOKE_OUTPUT_BINDING"}`, async () => {
    const e = await expectReject(what, () => client.binding.send(binding, op, undefined, metadata));
    if (GRPC) {
      expectGrpcError(what, e, { code: "Internal", message: new RegExp(says.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")) });
      return;
    }
    const h = parseSdkHttpError(e);
    expectEq("status", h?.status, 500);
    expectEq("errorCode", h?.errorCode, "ERR_INVOKE_OUTPUT_BINDING");
    if (!String(h?.body).includes(says)) throw new Error(`${JSON.stringify(h)} does not say ${says}`);
  });
}
suite.finish();
