"""Actors hosted by a gRPC app written with the official Dapr Python SDK's ``ActorGrpcHost``: the
app opens the actor event stream (``SubscribeActorEventsAlpha1``), names its actor type there,
and serves every callback (methods, timers, reminders, deactivation) over that stream; its actors
reach their state, timers and reminders through the SDK's gRPC actor client. Behind a sidecar
started with ``--app-protocol grpc`` and an actor state store.

The sidecar starts this script as its app and sets DAPR_HTTP_PORT, DAPR_GRPC_PORT and APP_PORT
(the host serves an empty gRPC server there, for the sidecar's app channel). Callers use the
SDK's ``ActorProxy`` (over the sidecar's HTTP API).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from typing import Any, Dict, List, Optional

os.environ.setdefault("DAPR_HEALTH_TIMEOUT", "30")
os.environ.setdefault("SDK_TEST_TIMEOUT_SECS", "150")
for _endpoint in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT"):
    os.environ.pop(_endpoint, None)

from dapr.actor import (  # noqa: E402
    Actor,
    ActorGrpcHost,
    ActorId,
    ActorInterface,
    ActorProxy,
    ActorRuntime,
    Remindable,
    actormethod,
)
from dapr.actor.runtime.config import ActorRuntimeConfig  # noqa: E402

from sdkcheck import CheckFailed, Suite, expect, expect_eq, require_env  # noqa: E402

env = require_env("DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "APP_PORT")
RUN = f"{os.getpid()}-{int(time.time() * 1000)}"
TYPE = "GrpcCounter"
suite = Suite("python/grpc_actor_host")
# What the actors saw, for the checks.
fired: Dict[str, List[Any]] = {"timer": [], "reminder": [], "deactivated": []}


class CounterInterface(ActorInterface):
    @actormethod(name="Increment")
    async def increment(self) -> int: ...

    @actormethod(name="StartTimer")
    async def start_timer(self, data: dict) -> None: ...

    @actormethod(name="StopTimer")
    async def stop_timer(self) -> None: ...

    @actormethod(name="StartReminder")
    async def start_reminder(self, data: str) -> None: ...

    @actormethod(name="StopReminder")
    async def stop_reminder(self) -> None: ...


class GrpcCounter(Actor, CounterInterface, Remindable):
    async def increment(self) -> int:
        has, n = await self._state_manager.try_get_state("count")
        n = (n if has else 0) + 1
        await self._state_manager.set_state("count", n)
        await self._state_manager.save_state()
        return n

    async def start_timer(self, data: dict) -> None:
        await self.register_timer("beat", self.tick, data, timedelta(0), timedelta(milliseconds=300))

    async def tick(self, data: Any) -> None:
        fired["timer"].append((self.id.id, data))

    async def stop_timer(self) -> None:
        await self.unregister_timer("beat")

    async def start_reminder(self, data: str) -> None:
        await self.register_reminder(
            "nudge", data.encode(), timedelta(0), timedelta(milliseconds=500)
        )

    async def receive_reminder(
        self,
        name: str,
        state: bytes,
        due_time: timedelta,
        period: timedelta,
        ttl: Optional[timedelta] = None,
    ) -> None:
        fired["reminder"].append((self.id.id, name, state))

    async def stop_reminder(self) -> None:
        await self.unregister_reminder("nudge")

    async def _on_deactivate(self) -> None:
        fired["deactivated"].append(self.id.id)


def proxy(name: str) -> CounterInterface:
    return ActorProxy.create(TYPE, ActorId(f"{name}-{RUN}"), CounterInterface)


async def eventually(what: str, cond, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def calls_and_state() -> None:
    a = proxy("a")
    for want in (1, 2, 3):
        expect_eq("count", await a.Increment(), want)
    # Turns: ten calls at once lose no update.
    counts = await asyncio.gather(*(a.Increment() for _ in range(10)))
    expect_eq("counts of concurrent calls", sorted(counts), list(range(4, 14)))


async def unknown_method() -> None:
    try:
        await ActorProxy.create(TYPE, ActorId(f"a-{RUN}"), CounterInterface).invoke_method(
            "NoSuchMethod", b""
        )
    except Exception as e:  # noqa: BLE001 - the SDK's error type varies by path
        expect("NoSuchMethod" in str(e) or "not found" in str(e).lower(), str(e))
        return
    raise CheckFailed("a method the actor does not have answered")


async def timer_fires() -> None:
    t = proxy("t")
    await t.StartTimer({"from": "grpc-host"})
    await eventually("two timer firings", lambda: len(fired["timer"]) >= 2)
    await t.StopTimer()
    expect_eq("timer data", fired["timer"][0], (f"t-{RUN}", {"from": "grpc-host"}))
    # Stopped: at most a firing under way, then none.
    await asyncio.sleep(0.5)
    seen = len(fired["timer"])
    await asyncio.sleep(1.0)
    expect_eq("timer firings after it stopped", len(fired["timer"]), seen)


async def reminder_fires() -> None:
    r = proxy("r")
    await r.StartReminder("nudge-data")
    await eventually("two reminder firings", lambda: len(fired["reminder"]) >= 2)
    await r.StopReminder()
    expect_eq("reminder", fired["reminder"][0], (f"r-{RUN}", "nudge", b"nudge-data"))


async def idle_actor_deactivates() -> None:
    await proxy("idle").Increment()
    await eventually(
        "the idle actor's deactivation", lambda: f"idle-{RUN}" in fired["deactivated"], 30.0
    )


async def reconnect(host: ActorGrpcHost) -> None:
    await host.stop()
    await host.start()
    expect_eq("count after the app reconnected", await proxy("a").Increment(), 14)


async def main() -> None:
    ActorRuntime.set_actor_config(
        ActorRuntimeConfig(
            actor_idle_timeout=timedelta(seconds=2), actor_scan_interval=timedelta(seconds=1)
        )
    )
    host = ActorGrpcHost(app_port=int(env["APP_PORT"]))
    await host.register_actor(GrpcCounter)
    await host.start()
    checks = [
        ("a proxy calls the actor over the stream; its state persists; turns lose nothing", calls_and_state),
        ("a method the actor lacks fails for the caller", unknown_method),
        ("an actor timer fires with its data until unregistered", timer_fires),
        ("an actor reminder fires with its data until unregistered", reminder_fires),
        ("an idle actor is deactivated over the stream", idle_actor_deactivates),
        ("the app reconnects its stream and its actors are served again", lambda: reconnect(host)),
    ]
    for name, check in checks:
        await suite.acheck(name, check)
    await host.close()


asyncio.run(main())
suite.finish()
