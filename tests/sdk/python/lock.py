"""Distributed locks, driven through the official Dapr Python SDK's gRPC client
(`DaprClient.try_lock` / `unlock`, `TryLockAlpha1` / `UnlockAlpha1`).

Environment (set by the e2e harness):
  DAPR_HTTP_PORT   the sidecar's HTTP API port (the SDK's readiness wait polls it)
  DAPR_GRPC_PORT   its gRPC API port
  LOCK_STORE       a lock store
  MISSING_STORE    a store name no component has
  RUN_ID           unique per run: resource ids are made from it

What dapr 1.19.0 does (dapr/clients/grpc/client.py): try_lock refuses blank strings and a
non-positive expiry itself (ValueError) before any RPC, and answers a TryLockResponse that is
truthy when taken and, used with `with`, unlocks on leaving the block; unlock answers an
UnlockResponse whose `status` is an UnlockResponseStatus. Errors are the raw grpc.RpcError.
"""

from __future__ import annotations

import os
import threading
import warnings

os.environ.setdefault("DAPR_HEALTH_TIMEOUT", "30")
warnings.filterwarnings("ignore", message="The Distributed Lock API is an Alpha version")

import grpc  # noqa: E402
from dapr.clients import DaprClient  # noqa: E402
from dapr.clients.grpc._response import UnlockResponseStatus  # noqa: E402

from sdkcheck import Suite, expect, expect_eq, require_env, rpc_error, wait_for  # noqa: E402

env = require_env("DAPR_GRPC_PORT", "LOCK_STORE", "MISSING_STORE", "RUN_ID")
STORE = env["LOCK_STORE"]
suite = Suite("python/lock")
client = DaprClient()


def rid(name: str) -> str:
    return f"{env['RUN_ID']}-{name}"


def take_and_refuse() -> None:
    expect(client.try_lock(STORE, rid("a"), "owner-1", 60), "the free lock was not taken")
    expect(not client.try_lock(STORE, rid("a"), "owner-2", 60), "a held lock was taken")
    other = client.unlock(STORE, rid("a"), "owner-2").status
    expect_eq("unlock by another owner", other, UnlockResponseStatus.lock_belongs_to_others)
    expect_eq("unlock by the owner", client.unlock(STORE, rid("a"), "owner-1").status, UnlockResponseStatus.success)
    gone = client.unlock(STORE, rid("a"), "owner-1").status
    expect_eq("unlock of a free lock", gone, UnlockResponseStatus.lock_does_not_exist)


def with_block_unlocks() -> None:
    with client.try_lock(STORE, rid("with"), "owner-1", 60) as held:
        expect(held, "not taken")
        expect(not client.try_lock(STORE, rid("with"), "owner-2", 60), "taken twice")
    expect(client.try_lock(STORE, rid("with"), "owner-2", 60), "not released by the with block")


def expires() -> None:
    expect(client.try_lock(STORE, rid("short"), "owner-1", 1), "not taken")
    wait_for(lambda: client.try_lock(STORE, rid("short"), "owner-2", 60), "the lock expiring", 10)


def counter_under_lock() -> None:
    counter = [0]
    failures: list[str] = []

    def worker(w: int) -> None:
        try:
            for _ in range(10):
                wait_for(lambda: client.try_lock(STORE, rid("counter"), f"w{w}", 30), "the lock", 60)
                seen = counter[0]
                threading.Event().wait(0.002)  # widen the window a lost update would need
                counter[0] = seen + 1
                status = client.unlock(STORE, rid("counter"), f"w{w}").status
                if status != UnlockResponseStatus.success:
                    failures.append(f"w{w}: {status}")
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(f"w{w}: {e}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    expect(not failures, f"workers failed: {failures}")
    expect_eq("counter", counter[0], 80)


def unknown_store() -> None:
    e = rpc_error(lambda: client.try_lock(env["MISSING_STORE"], rid("x"), "o", 5))
    expect_eq("code", e.code(), grpc.StatusCode.INVALID_ARGUMENT)
    expect_eq("details", e.details(), f"lock store {env['MISSING_STORE']} not found")


def illegal_id() -> None:
    e = rpc_error(lambda: client.try_lock(STORE, "a||b", "o", 5))
    expect_eq("code", e.code(), grpc.StatusCode.INTERNAL)
    expect("can't contain" in (e.details() or ""), e.details())


suite.check("try_lock takes a free lock once; unlock answers each status", take_and_refuse)
suite.check("try_lock in a with block unlocks on leaving it", with_block_unlocks)
suite.check("a lock expires after expiry_in_seconds", expires)
suite.check("8 threads incrementing a counter under the lock lose nothing", counter_under_lock)
suite.check("an unknown store is INVALID_ARGUMENT", unknown_store)
suite.check("an id holding || is INTERNAL", illegal_id)
client.close()
suite.finish()
