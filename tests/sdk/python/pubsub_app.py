"""Pub/sub with the official Dapr Python extension for FastAPI as the app.

The sidecar starts this script as its app (``outrider run ... -- python pubsub_app.py``). The
script serves a FastAPI app wrapped in ``dapr.ext.fastapi.DaprApp``, whose ``@subscribe``
decorators answer ``GET /dapr/subscribe`` and register the event routes, exactly as a Dapr user
writes them. It then publishes over the sidecar's HTTP API (the SDK publishes over gRPC only; that
path is grpc_client.py's) and checks what the handlers received.

Environment (set by the sidecar): DAPR_HTTP_PORT, APP_PORT; PUBSUB_NAME (default ``pubsub``).

What dapr-ext-fastapi 1.18.3 does (read from its source, dapr/ext/fastapi/app.py):
  DaprApp(app)            adds GET /dapr/subscribe answering the list of subscriptions made
  @subscribe(pubsub, topic, metadata, route, dead_letter_topic)
                          adds POST <route> (default /events/<pubsub>/<topic>) for the handler and
                          lists {pubsubname, topic, route, metadata[, deadLetterTopic]}
  the handler             is a FastAPI route: its return value is the JSON answer, so returning
                          {"status": "RETRY"} asks for redelivery; raising HTTPException(500)
                          fails the delivery
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List

import uvicorn
from dapr.ext.fastapi import DaprApp
from fastapi import Body, FastAPI, HTTPException

from sdkcheck import Suite, expect, expect_eq, require_env

env = require_env("DAPR_HTTP_PORT", "APP_PORT")
PUBSUB = os.environ.get("PUBSUB_NAME", "pubsub")
WAIT_SECS = 15.0
NONCE = f"sdkpy-{os.getpid()}-{int(time.time() * 1000)}"
API = f"http://127.0.0.1:{env['DAPR_HTTP_PORT']}"

suite = Suite("python/pubsub")


def topic(name: str) -> str:
    return f"{NONCE}-{name}"


# topic -> the events its handler received (the CloudEvent bodies, as FastAPI parsed them)
inbox: Dict[str, List[Dict[str, Any]]] = {t: [] for t in ("orders", "retry", "failing", "letters")}
lock = threading.Lock()

app = FastAPI()
dapr_app = DaprApp(app)


def record(name: str, event: Dict[str, Any]) -> int:
    with lock:
        inbox[name].append(event)
        return len(inbox[name])


@dapr_app.subscribe(pubsub=PUBSUB, topic=topic("orders"))
def orders(event: Dict[str, Any] = Body()) -> Dict[str, str]:
    record("orders", event)
    return {"status": "SUCCESS"}


@dapr_app.subscribe(pubsub=PUBSUB, topic=topic("retry"), route="/retry-once")
def retry_once(event: Dict[str, Any] = Body()) -> Dict[str, str]:
    n = record("retry", event)
    return {"status": "RETRY" if n == 1 else "SUCCESS"}


@dapr_app.subscribe(pubsub=PUBSUB, topic=topic("failing"), dead_letter_topic=topic("letters"))
def failing(event: Dict[str, Any] = Body()) -> Dict[str, str]:
    record("failing", event)
    raise HTTPException(status_code=500, detail="this handler always fails")


@dapr_app.subscribe(pubsub=PUBSUB, topic=topic("letters"))
def letters(event: Dict[str, Any] = Body()) -> Dict[str, str]:
    record("letters", event)
    return {"status": "SUCCESS"}


def http(method: str, path: str, body: Any = None, content_type: str = "application/json") -> tuple:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f"{API}{path}", data=data, method=method)
    if data is not None:
        req.add_header("content-type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as rsp:
            return rsp.status, rsp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(cond, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECS
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {WAIT_SECS:g} s")
        time.sleep(0.025)  # poll interval, not a fixed wait


def count(name: str) -> int:
    with lock:
        return len(inbox[name])


server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(env["APP_PORT"]), log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()


def serving() -> None:
    wait_for(lambda: server.started, "uvicorn serving on APP_PORT")


def subscribed() -> None:
    wanted = {topic(t) for t in inbox}

    def listed() -> bool:
        status, body = http("GET", "/v1.0/metadata")
        subs = json.loads(body).get("subscriptions", []) if status == 200 else []
        active = {s.get("topic") for s in subs if s.get("pubsubname") == PUBSUB and s.get("status") == "ACTIVE"}
        return wanted <= active

    wait_for(listed, "every DaprApp subscription listed as active in /v1.0/metadata")
    status, body = http("GET", "/v1.0/metadata")
    subs = {s["topic"]: s for s in json.loads(body)["subscriptions"]}
    expect_eq("default route of orders", subs[topic("orders")]["rules"], [{"match": "", "path": f"/events/{PUBSUB}/{topic('orders')}"}])
    expect_eq("dead-letter topic of failing", subs[topic("failing")]["deadLetterTopic"], topic("letters"))


def delivers_cloudevents() -> None:
    status, _ = http("POST", f"/v1.0/publish/{PUBSUB}/{topic('orders')}", {"order": 7, "nonce": NONCE})
    expect_eq("publish status", status, 204)
    wait_for(lambda: count("orders") >= 1, "the orders handler")
    event = inbox["orders"][0]
    expect_eq("data", event.get("data"), {"order": 7, "nonce": NONCE})
    expect_eq("topic", event.get("topic"), topic("orders"))
    expect_eq("pubsubname", event.get("pubsubname"), PUBSUB)
    expect_eq("specversion", event.get("specversion"), "1.0")
    expect(event.get("id"), f"no id in {event}")


def retry_redelivers() -> None:
    status, _ = http("POST", f"/v1.0/publish/{PUBSUB}/{topic('retry')}", "again", "text/plain")
    expect_eq("publish status", status, 204)
    wait_for(lambda: count("retry") >= 2, "a second delivery after RETRY")
    expect_eq("the same event both times", inbox["retry"][0]["id"], inbox["retry"][1]["id"])


def dead_letters() -> None:
    status, _ = http("POST", f"/v1.0/publish/{PUBSUB}/{topic('failing')}", {"poison": True})
    expect_eq("publish status", status, 204)
    wait_for(lambda: count("letters") >= 1, "the dead letter")
    expect_eq("tries before the dead letter", count("failing"), 3)
    expect_eq("the dead letter is the original event", inbox["letters"][0]["topic"], topic("failing"))


if suite.check("uvicorn serves the DaprApp on APP_PORT", serving):
    if suite.check("the sidecar reads DaprApp's /dapr/subscribe and subscribes to every topic", subscribed):
        suite.check("a published JSON object reaches the @subscribe handler as a CloudEvent", delivers_cloudevents)
        suite.check('a handler answering {"status": "RETRY"} gets the event again', retry_redelivers)
        suite.check("a handler that keeps failing sends the event to its dead_letter_topic", dead_letters)
server.should_exit = True
suite.finish()
