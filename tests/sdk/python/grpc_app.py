"""A gRPC app written with the official Dapr Python SDK (``dapr.ext.grpc.App``) behind a sidecar
started with ``--app-protocol grpc``.

The sidecar starts this script as its app (``outrider run --app-protocol grpc --app-port P --
python grpc_app.py``) and sets DAPR_HTTP_PORT, DAPR_GRPC_PORT, APP_PORT and APP_ID. The script
serves the App on APP_PORT (the sidecar calls its ``AppCallback`` service: ``OnInvoke``,
``ListTopicSubscriptions``, ``OnTopicEvent``), waits until the sidecar reports the app ready,
then checks, through the sidecar:

- invocations reach ``@app.method`` handlers: over gRPC (``InvokeService`` to its own app id),
  and over the mesh from another sidecar (CALLER_HTTP_PORT, its HTTP API), with the data, the
  content type and the caller's identity as metadata;
- a method with no handler answers the HTTP status of UNIMPLEMENTED;
- events published to the topics ``@app.subscribe`` lists arrive as ``SubscriptionMessage``s;
  a handler's RETRY has the event delivered again, DROP does not, SUCCESS acknowledges.

Environment beyond the sidecar's: CALLER_HTTP_PORT (the HTTP API of another sidecar of the
mesh), PUBSUB_NAME (default ``pubsub``), SDK_TEST_TIMEOUT_SECS (watchdog, default 120).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
import warnings
from typing import Any, Dict, List

os.environ.setdefault("DAPR_HEALTH_TIMEOUT", "30")
os.environ.setdefault("SDK_TEST_TIMEOUT_SECS", "120")
os.environ["DAPR_API_METHOD_INVOCATION_PROTOCOL"] = "grpc"
for _endpoint in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT"):
    os.environ.pop(_endpoint, None)

from dapr.clients import DaprClient  # noqa: E402
from dapr.clients.grpc._response import TopicEventResponse  # noqa: E402
from dapr.ext.grpc import App, InvokeMethodRequest, InvokeMethodResponse, SubscriptionMessage  # noqa: E402

from sdkcheck import CheckFailed, Suite, expect, expect_eq, require_env  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

env = require_env("DAPR_HTTP_PORT", "APP_PORT", "APP_ID", "CALLER_HTTP_PORT")
APP_ID = env["APP_ID"]
PUBSUB = os.environ.get("PUBSUB_NAME") or "pubsub"
TOKEN = os.environ.get("DAPR_API_TOKEN") or None
WAIT_SECS = 15.0
NONCE = f"sdkpy-app-{os.getpid()}-{int(time.time() * 1000)}"

suite = Suite("python/grpc_app")
app = App()

# topic -> the data of each event its handler received, in order
inbox: Dict[str, List[Any]] = {"plain": [], "retry": [], "drop": []}
lock = threading.Lock()


def topic(name: str) -> str:
    return f"{NONCE}-{name}"


def wait_for(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECS
    while not cond():
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {WAIT_SECS:g} s")
        time.sleep(0.025)  # poll interval, not a fixed wait


@app.method(name="echo")
def echo(request: InvokeMethodRequest) -> InvokeMethodResponse:
    # The SDK hands a handler the data, the content type and the call's metadata (a dict of
    # lists); the verb and query of the HTTP extension are not passed on to it.
    caller = request.metadata.get("dapr-caller-app-id") or [""]
    body = {"data": request.text(), "content_type": request.content_type, "caller": caller[0]}
    return InvokeMethodResponse(json.dumps(body).encode(), "application/json")


def handler(name: str, answers: List[str]) -> Any:
    def handle(event: SubscriptionMessage) -> TopicEventResponse:
        with lock:
            inbox[name].append(event.data())
            n = len(inbox[name])
        return TopicEventResponse(answers[min(n, len(answers)) - 1])

    handle.__name__ = f"handle_{name}"
    return handle


app.subscribe(PUBSUB, topic("plain"))(handler("plain", ["success"]))
# RETRY the first time, then SUCCESS.
app.subscribe(PUBSUB, topic("retry"))(handler("retry", ["retry", "success"]))
app.subscribe(PUBSUB, topic("drop"))(handler("drop", ["drop"]))

threading.Thread(target=app.run, args=(int(env["APP_PORT"]),), daemon=True).start()


def http(port: str, method: str, path: str, body: bytes = b"", headers: Dict[str, str] | None = None) -> Any:
    h = {"content-type": "application/json", **(headers or {})}
    if TOKEN:
        h["dapr-api-token"] = TOKEN
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body or None, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=WAIT_SECS) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def app_ready() -> None:
    wait_for(lambda: http(env["DAPR_HTTP_PORT"], "GET", "/v1.0/healthz")[0] == 204, "the sidecar reports the app ready")


ready = suite.check("the sidecar reaches the App on APP_PORT", app_ready)

client = DaprClient() if ready else None


def subscribed() -> None:
    assert client is not None

    def topics_via_http() -> List[str]:
        status, body = http(env["DAPR_HTTP_PORT"], "GET", "/v1.0/metadata")
        return [s["topic"] for s in json.loads(body).get("subscriptions", []) if s.get("status") == "ACTIVE"]

    wait_for(lambda: {topic("plain"), topic("retry"), topic("drop")} <= set(topics_via_http()), "the App's three subscriptions active (ListTopicSubscriptions)")


subs_ok = ready and suite.check("ListTopicSubscriptions: the App's subscriptions are active", subscribed)


def invoke_over_grpc() -> None:
    assert client is not None
    rsp = client.invoke_method(APP_ID, "echo", data=json.dumps({"x": 1}), content_type="application/json", http_verb="POST", http_querystring={"q": "1"})
    got = rsp.json()
    expect_eq("data", json.loads(got["data"]), {"x": 1})
    expect_eq("content type", got["content_type"], "application/json")
    expect_eq("caller", got["caller"], APP_ID)
    expect_eq("the answer's content type", rsp.content_type, "application/json")


if ready:
    suite.check("InvokeService to its own app id reaches @app.method (OnInvoke)", invoke_over_grpc)


def invoke_over_the_mesh() -> None:
    status, body = http(env["CALLER_HTTP_PORT"], "PUT", f"/v1.0/invoke/{APP_ID}/method/echo?a=b", json.dumps({"y": 2}).encode())
    expect_eq("status", status, 200)
    got = json.loads(body)
    expect_eq("data", json.loads(got["data"]), {"y": 2})
    expect(got["caller"] and got["caller"] != APP_ID, f"the caller's identity: {got['caller']!r}")


if ready:
    suite.check("HTTP invocation from another sidecar crosses the mesh to @app.method", invoke_over_the_mesh)


def invoke_unknown_method() -> None:
    status, body = http(env["CALLER_HTTP_PORT"], "POST", f"/v1.0/invoke/{APP_ID}/method/nope", b"{}")
    expect_eq("status (UNIMPLEMENTED)", status, 501)


if ready:
    suite.check("a method with no handler answers 501 (UNIMPLEMENTED)", invoke_unknown_method)


def publish(t: str, n: int) -> None:
    assert client is not None
    client.publish_event(PUBSUB, t, json.dumps({"n": n}), data_content_type="application/json")


def events_arrive() -> None:
    for n in (1, 2, 3):
        publish(topic("plain"), n)
    wait_for(lambda: len(inbox["plain"]) >= 3, "three events on the plain topic")
    expect_eq("the data received", sorted(d["n"] for d in inbox["plain"]), [1, 2, 3])


def retry_and_drop() -> None:
    publish(topic("drop"), 10)
    publish(topic("retry"), 20)
    wait_for(lambda: len(inbox["retry"]) >= 2, "the event answered RETRY, delivered again")
    expect_eq("the redelivered data", inbox["retry"][1], {"n": 20})
    # The dropped event would have come back by now had DROP been taken as RETRY.
    expect_eq("deliveries of the dropped event", len(inbox["drop"]), 1)


if subs_ok:
    suite.check("@app.subscribe handlers receive every event (OnTopicEvent)", events_arrive)
    suite.check("a handler's RETRY redelivers; DROP does not", retry_and_drop)

app.stop()
suite.finish()
