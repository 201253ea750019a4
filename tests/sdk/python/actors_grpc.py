"""Actors over gRPC, driven through the official Dapr Python SDK's actor client
(`dapr.clients.grpc.dapr_actor_grpc_client.DaprActorGrpcClient`: InvokeActor, GetActorState,
ExecuteActorStateTransaction, RegisterActorTimer/Reminder and their Unregister twins), against a
sidecar whose app hosts ACTOR_TYPE (the e2e test's actor app: `increment` counts in actor state).

Environment (set by the e2e harness):
  DAPR_HTTP_PORT   the sidecar's HTTP API port (the SDK's readiness wait polls it)
  DAPR_GRPC_PORT   its gRPC API port
  ACTOR_TYPE       the hosted type
  RUN_ID           unique per run: actor ids are made from it

What dapr 1.19.0 does: invoke_method sends the bytes as InvokeActorRequest.data and answers the
response's data; get_state answers the stored bytes (b'' when absent); save_state_transactionally
takes the HTTP form's JSON ([{"operation", "request": {"key", "value"}}]) and sends each value as
an Any holding its JSON; register_timer/register_reminder take the HTTP form's JSON body.
"""

from __future__ import annotations

import asyncio
import json
import os

os.environ.setdefault("DAPR_HEALTH_TIMEOUT", "30")

from dapr.clients.grpc.dapr_actor_grpc_client import DaprActorGrpcClient  # noqa: E402
from grpc.aio import AioRpcError  # noqa: E402

from sdkcheck import CheckFailed, Suite, expect, expect_eq, require_env  # noqa: E402

env = require_env("DAPR_GRPC_PORT", "ACTOR_TYPE", "RUN_ID")
T = env["ACTOR_TYPE"]
suite = Suite("python/actors_grpc")
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)


def aid(name: str) -> str:
    return f"{name}-{env['RUN_ID']}"


def run(coro):
    return loop.run_until_complete(coro)


async def connect() -> DaprActorGrpcClient:
    # The client's aio channel belongs to the loop it is made in.
    return DaprActorGrpcClient(address=f"127.0.0.1:{env['DAPR_GRPC_PORT']}")


client = run(connect())


def invoke_and_state() -> None:
    for want in (1, 2):
        got = json.loads(run(client.invoke_method(T, aid("a"), "increment", b"")))
        expect_eq("count", got["count"], want)
    expect_eq("state", run(client.get_state(T, aid("a"), "count")), b"2")
    expect_eq("absent state", run(client.get_state(T, aid("a"), "nothing")), b"")


def transaction() -> None:
    ops = [
        {"operation": "upsert", "request": {"key": "k", "value": {"x": [1, 2]}}},
        {"operation": "delete", "request": {"key": "count"}},
    ]
    run(client.save_state_transactionally(T, aid("a"), json.dumps(ops).encode()))
    expect_eq("upserted", json.loads(run(client.get_state(T, aid("a"), "k"))), {"x": [1, 2]})
    expect_eq("deleted", run(client.get_state(T, aid("a"), "count")), b"")


def inactive_actor_state_is_refused() -> None:
    ops = [{"operation": "upsert", "request": {"key": "k", "value": 1}}]
    try:
        run(client.save_state_transactionally(T, aid("idle"), json.dumps(ops).encode()))
    except AioRpcError as e:
        expect("actor instance is missing" in (e.details() or ""), e.details())
        return
    raise CheckFailed("a transaction for an actor active nowhere was accepted")


def timer_and_reminder() -> None:
    timer = {"dueTime": "0s", "period": "200ms", "callback": "tick", "data": {"from": "python"}}
    run(client.register_timer(T, aid("a"), "py-timer", json.dumps(timer).encode()))
    reminder = {"dueTime": "0s", "period": "R2/PT1S"}
    run(client.register_reminder(T, aid("a"), "py-reminder", json.dumps(reminder).encode()))
    print(f"# registered on {T}/{aid('a')}", flush=True)


def unregister() -> None:
    # Called after the harness saw them fire: gone, and unregistering twice is fine.
    run(client.unregister_timer(T, aid("a"), "py-timer"))
    run(client.unregister_reminder(T, aid("a"), "py-reminder"))
    run(client.unregister_reminder(T, aid("a"), "py-reminder"))


if os.environ.get("PHASE") == "unregister":
    suite.check("unregister_timer and unregister_reminder stop them", unregister)
else:
    suite.check("invoke_method calls the actor; get_state reads its state", invoke_and_state)
    suite.check("save_state_transactionally applies upserts and deletes", transaction)
    suite.check("a transaction for an inactive actor is refused", inactive_actor_state_is_refused)
    suite.check("register_timer and register_reminder are accepted", timer_and_reminder)
run(client.close())
suite.finish()
