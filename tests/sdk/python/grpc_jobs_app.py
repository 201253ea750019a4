"""Jobs delivered to a gRPC app written with the official Dapr Python SDK (``dapr.ext.grpc.App``
and its ``@app.job_event`` handlers, served as ``OnJobEvent``), behind a sidecar started with
``--app-protocol grpc`` and an actor state store (where jobs are kept).

The sidecar starts this script as its app and sets DAPR_HTTP_PORT, DAPR_GRPC_PORT and APP_PORT.
The script serves the App, waits until the sidecar reports it ready, schedules two jobs through
the SDK's gRPC client and checks that each handler gets its job with the data as it was given
(the SDK hands a handler the Any's bytes): a google.protobuf.Value, and a StringValue.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
import warnings
from typing import Dict

os.environ.setdefault("DAPR_HEALTH_TIMEOUT", "30")
os.environ.setdefault("SDK_TEST_TIMEOUT_SECS", "120")
for _endpoint in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT"):
    os.environ.pop(_endpoint, None)

from dapr.clients import DaprClient  # noqa: E402
from dapr.clients.grpc._jobs import Job  # noqa: E402
from dapr.ext.grpc import App  # noqa: E402
from google.protobuf.any_pb2 import Any as GrpcAny  # noqa: E402
from google.protobuf.json_format import MessageToDict  # noqa: E402
from google.protobuf.struct_pb2 import Value  # noqa: E402
from google.protobuf.wrappers_pb2 import StringValue  # noqa: E402

from sdkcheck import Suite, expect_eq, require_env, wait_for  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

env = require_env("DAPR_HTTP_PORT", "APP_PORT")
RUN = f"{os.getpid()}-{int(time.time() * 1000)}"
suite = Suite("python/grpc_jobs_app")
app = App()
got: Dict[str, bytes] = {}
lock = threading.Lock()


def handler(name: str):
    def handle(event) -> None:
        with lock:
            got[name] = event.data

    handle.__name__ = f"handle_{name}"
    return handle


for job in ("value", "text"):
    app.job_event(f"{job}-{RUN}")(handler(job))

threading.Thread(target=app.run, args=(int(env["APP_PORT"]),), daemon=True).start()


def app_ready() -> None:
    def healthy() -> bool:
        try:
            url = f"http://127.0.0.1:{env['DAPR_HTTP_PORT']}/v1.0/healthz"
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status == 204
        except Exception:  # noqa: BLE001 - not up yet
            return False

    wait_for(healthy, "the sidecar reports the app ready", 30)


def packed(message) -> GrpcAny:
    any_ = GrpcAny()
    any_.Pack(message)
    return any_


def jobs_arrive() -> None:
    data = Value()
    data.struct_value.update({"n": 1, "greeting": "hi"})
    with DaprClient() as client:
        client.schedule_job(Job(name=f"value-{RUN}", due_time="1s", data=packed(data)))
        client.schedule_job(Job(name=f"text-{RUN}", due_time="1s", data=packed(StringValue(value="hi"))))
    wait_for(lambda: len(got) == 2, "both jobs at their handlers (OnJobEvent)", 30)
    value = Value.FromString(got["value"])
    expect_eq("the Value job's data", MessageToDict(value), {"n": 1, "greeting": "hi"})
    expect_eq("the StringValue job's data", StringValue.FromString(got["text"]).value, "hi")


if suite.check("the sidecar reaches the App on APP_PORT", app_ready):
    suite.check("jobs reach @app.job_event handlers with their data as given", jobs_arrive)
suite.finish()
