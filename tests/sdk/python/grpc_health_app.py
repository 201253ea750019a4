"""A gRPC app written with the official Dapr Python SDK (``dapr.ext.grpc.App``) that registers
a health check, behind a sidecar started with ``--app-protocol grpc --enable-app-health-check``.

The sidecar starts this script as its app and probes it with ``AppCallbackHealthCheck``. The
script checks, through the sidecar's metadata and its own invocations over gRPC:

- the App's health check passes: the sidecar reports the app healthy, and invoking its own
  ``@app.method`` over ``InvokeService`` works;
- once the health check raises, the sidecar reports the app unhealthy and an invocation fails
  at once with "app is not in a healthy state";
- once it passes again, invocations work again.

Environment beyond the sidecar's: SDK_TEST_TIMEOUT_SECS (watchdog, default 120).
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any, Dict

os.environ.setdefault("DAPR_HEALTH_TIMEOUT", "30")
os.environ.setdefault("SDK_TEST_TIMEOUT_SECS", "120")
os.environ["DAPR_API_METHOD_INVOCATION_PROTOCOL"] = "grpc"
for _endpoint in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT"):
    os.environ.pop(_endpoint, None)

from dapr.clients import DaprClient  # noqa: E402
from dapr.ext.grpc import App, InvokeMethodRequest, InvokeMethodResponse  # noqa: E402

from sdkcheck import CheckFailed, Suite, expect, expect_eq, require_env, sidecar_metadata, wait_for  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

env = require_env("DAPR_HTTP_PORT", "APP_PORT", "APP_ID")
APP_ID = env["APP_ID"]
WAIT_SECS = 20.0

suite = Suite("python/grpc_health_app")
app = App()
sick = threading.Event()


def health() -> None:
    if sick.is_set():
        raise RuntimeError("the app says it is unwell")


app.register_health_check(health)


@app.method(name="work")
def work(request: InvokeMethodRequest) -> InvokeMethodResponse:
    return InvokeMethodResponse(b"worked", "text/plain")


threading.Thread(target=app.run, args=(int(env["APP_PORT"]),), daemon=True).start()


def metadata() -> Dict[str, Any]:
    return sidecar_metadata(env["DAPR_HTTP_PORT"], WAIT_SECS)


def reported() -> str:
    return metadata().get("extended", {}).get("outrider.appHealth", "")


client = DaprClient()


def invoke() -> Any:
    return client.invoke_method(APP_ID, "work", data=b"", content_type="text/plain", http_verb="POST")


def healthy_at_first() -> None:
    wait_for(lambda: reported() == "healthy", "the sidecar reports the app healthy")
    expect_eq("the health settings", metadata()["appConnectionProperties"]["health"]["healthThreshold"], 1)
    expect_eq("an invocation", invoke().text(), "worked")


def unhealthy_fails_fast() -> None:
    sick.set()
    wait_for(lambda: reported() == "unhealthy", "the sidecar reports the app unhealthy")
    try:
        invoke()
    except Exception as e:  # the SDK raises a DaprGrpcError
        expect("app is not in a healthy state" in str(e), f"the refusal names the state: {e}")
    else:
        raise CheckFailed("an invocation of the unhealthy app went through")


def healthy_again() -> None:
    sick.clear()
    wait_for(lambda: reported() == "healthy", "the sidecar reports the app healthy again")
    expect_eq("an invocation", invoke().text(), "worked")


ok = suite.check("AppCallbackHealthCheck passes: the app is healthy and invoked", healthy_at_first)
if ok:
    ok = suite.check("a failing health check makes invocations fail at once", unhealthy_fails_fast)
if ok:
    suite.check("a passing health check brings invocations back", healthy_again)

app.stop()
suite.finish()
