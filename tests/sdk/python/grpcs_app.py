"""A gRPC app served over TLS, behind a sidecar started with ``--app-protocol grpcs
--enable-app-health-check``: the ``AppCallback`` and ``AppCallbackHealthCheck`` services of the
official Dapr Python SDK's generated code, on a grpcio server with a certificate of its own
making (the sidecar does not verify it, as daprd does not).

The sidecar starts this script as its app. The script checks, through the sidecar:

- the sidecar reports the app healthy (its TLS health probe passed) and its protocol ``grpcs``;
- invoking the app's own method over the SDK's ``invoke_method`` (gRPC ``InvokeService``) reaches
  ``OnInvoke`` over TLS, with the method, verb and data the caller gave.

Environment beyond the sidecar's: TLS_CERT_FILE, TLS_KEY_FILE (PEM), SDK_TEST_TIMEOUT_SECS
(watchdog, default 120).
"""

from __future__ import annotations

import os
import warnings
from concurrent import futures
from typing import Any, Dict

os.environ.setdefault("DAPR_HEALTH_TIMEOUT", "30")
os.environ.setdefault("SDK_TEST_TIMEOUT_SECS", "120")
os.environ["DAPR_API_METHOD_INVOCATION_PROTOCOL"] = "grpc"
for _endpoint in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT"):
    os.environ.pop(_endpoint, None)

import grpc  # noqa: E402
from dapr.clients import DaprClient  # noqa: E402
from dapr.proto.common.v1 import common_pb2  # noqa: E402
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc  # noqa: E402
from google.protobuf import any_pb2  # noqa: E402

from sdkcheck import Suite, expect_eq, require_env, sidecar_metadata, wait_for  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

env = require_env("DAPR_HTTP_PORT", "APP_PORT", "APP_ID", "TLS_CERT_FILE", "TLS_KEY_FILE")
APP_ID = env["APP_ID"]
WAIT_SECS = 20.0

suite = Suite("python/grpcs_app")


class Callback(appcallback_pb2_grpc.AppCallbackServicer):
    def OnInvoke(self, request: Any, context: Any) -> Any:
        verb = common_pb2.HTTPExtension.Verb.Name(request.http_extension.verb)
        answer = f"{request.method} {verb} {request.data.value.decode()} over TLS".encode()
        return common_pb2.InvokeResponse(data=any_pb2.Any(value=answer), content_type="text/plain")


class Health(appcallback_pb2_grpc.AppCallbackHealthCheckServicer):
    def HealthCheck(self, request: Any, context: Any) -> Any:
        return appcallback_pb2.HealthCheckResponse()


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
appcallback_pb2_grpc.add_AppCallbackServicer_to_server(Callback(), server)
appcallback_pb2_grpc.add_AppCallbackHealthCheckServicer_to_server(Health(), server)
credentials = grpc.ssl_server_credentials([(read(env["TLS_KEY_FILE"]), read(env["TLS_CERT_FILE"]))])
server.add_secure_port(f"127.0.0.1:{env['APP_PORT']}", credentials)
server.start()


def metadata() -> Dict[str, Any]:
    return sidecar_metadata(env["DAPR_HTTP_PORT"], WAIT_SECS)


def healthy() -> None:
    wait_for(
        lambda: metadata().get("extended", {}).get("outrider.appHealth") == "healthy",
        "the sidecar reports the app healthy",
    )
    expect_eq("the protocol", metadata()["appConnectionProperties"]["protocol"], "grpcs")


def invoked() -> None:
    with DaprClient() as client:
        rsp = client.invoke_method(APP_ID, "work", data=b"payload", content_type="text/plain", http_verb="PUT")
        expect_eq("the answer", rsp.text(), "work PUT payload over TLS")


if suite.check("the health probe over TLS passes", healthy):
    suite.check("InvokeService reaches OnInvoke over TLS", invoked)

server.stop(None)
suite.finish()
