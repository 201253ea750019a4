"""The configuration API, driven through the official Dapr Python SDK's gRPC client
(`get_configuration`, `subscribe_configuration`, `unsubscribe_configuration`).

Environment (set by the e2e harness):
  DAPR_HTTP_PORT   the sidecar's HTTP API port (the SDK's readiness wait polls it)
  DAPR_GRPC_PORT   its gRPC API port
  CONFIG_STORE     a configuration.redis store on the Redis at REDIS_PORT
  REDIS_PORT       that Redis (written with redis-cli, as a user would)
  RUN_ID           unique per run: keys are made from it

What dapr 1.19.0 does (dapr/clients/grpc/client.py, _response.py): get_configuration calls
GetConfiguration and answers items as ConfigurationItem(value, version, metadata);
subscribe_configuration starts a thread reading SubscribeConfigurationAlpha1, waits (5 s) for the
first message's id and returns it, then calls handler(id, ConfigurationResponse) for each later
message with items; unsubscribe_configuration calls UnsubscribeConfiguration and answers `ok`.
"""

from __future__ import annotations

import os
import subprocess
import threading

os.environ.setdefault("DAPR_HEALTH_TIMEOUT", "30")

from dapr.clients import DaprClient  # noqa: E402

from sdkcheck import Suite, expect, expect_eq, require_env, wait_for  # noqa: E402

env = require_env("DAPR_GRPC_PORT", "CONFIG_STORE", "REDIS_PORT", "RUN_ID")
STORE = env["CONFIG_STORE"]
suite = Suite("python/configuration")
client = DaprClient()


def key(name: str) -> str:
    return f"{env['RUN_ID']}-{name}"


def redis(*args: str) -> None:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", env["REDIS_PORT"], *args], check=True,
                   capture_output=True, timeout=10)


def get_items() -> None:
    redis("SET", key("a"), "on||1")
    got = client.get_configuration(STORE, [key("a"), key("none")]).items
    expect_eq("keys", sorted(got), [key("a")])
    expect_eq("value", got[key("a")].value, "on")
    expect_eq("version", got[key("a")].version, "1")


def subscribe_and_unsubscribe() -> None:
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def handler(sub_id: str, resp) -> None:
        with lock:
            for k, item in resp.items.items():
                seen.append((sub_id, f"{k}={item.value}"))

    sub_id = client.subscribe_configuration(STORE, [key("a")], handler)
    expect(sub_id, "no subscription id")
    redis("SET", key("other"), "x||1")
    redis("SET", key("a"), "changed||2")
    wait_for(lambda: len(seen) >= 1, "the update", 10)
    expect_eq("update", seen, [(sub_id, f"{key('a')}=changed")])
    expect(client.unsubscribe_configuration(STORE, sub_id), "unsubscribe answered not ok")
    expect(not client.unsubscribe_configuration(STORE, sub_id), "a second unsubscribe answered ok")


suite.check("get_configuration reads items in daprd's value||version form", get_items)
suite.check("subscribe_configuration hears a change once; unsubscribe ends it", subscribe_and_unsubscribe)
client.close()
suite.finish()
