"""Shared helpers for the Python SDK compatibility scripts (one script per building block).

Output contract: one line per check, ``ok - <name>`` or ``not ok - <name>: <why>``; skipped
checks are ``ok - <name> # SKIP <why>`` (TAP style). Diagnostics start with ``# ``. The process
exits 0 only if every check passed.

Every wait is bounded: SDK calls get explicit timeouts, and a watchdog ends the whole script
after SDK_TEST_TIMEOUT_SECS (default 180) seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import time
import urllib.request
from typing import Any, Awaitable, Callable, Dict, Iterator


def require_env(*names: str) -> Dict[str, str]:
    """Reads required environment variables; exits with a failure line when one is missing."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        print(f"not ok - environment: missing {', '.join(missing)}", flush=True)
        sys.exit(2)
    return {n: os.environ[n] for n in names}


def _one_line(s: Any) -> str:
    return " | ".join(part.strip() for part in str(s).splitlines() if part.strip())[:800]


class CheckFailed(Exception):
    pass


def expect(cond: Any, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def expect_eq(what: str, actual: Any, expected: Any) -> None:
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


@contextlib.contextmanager
def captured_stdout() -> Iterator[io.StringIO]:
    """Captures what the SDK prints (e.g. its health-probe retries) and re-emits it as `# `
    diagnostics, so stdout keeps one line per check."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield buf
    finally:
        for line in buf.getvalue().splitlines():
            if line.strip():
                print(f"# sdk: {line}", flush=True)


class Suite:
    def __init__(self, name: str) -> None:
        self.name = name
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        secs = float(os.environ.get("SDK_TEST_TIMEOUT_SECS") or 180)

        def _watchdog() -> None:
            print(f"not ok - watchdog: {name} did not finish within {secs:g} s", flush=True)
            os._exit(3)

        self._watchdog = threading.Timer(secs, _watchdog)
        self._watchdog.daemon = True
        self._watchdog.start()

    def check(self, name: str, fn: Callable[[], Any]) -> bool:
        """Runs one check; returns True if it passed. Time bounds come from the SDK call
        timeouts inside `fn` and from the watchdog."""
        started = time.monotonic()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - any failure is a failed check
            return self._failed(name, e)
        return self._passed(name, started)

    async def acheck(self, name: str, fn: Callable[[], Awaitable[Any]]) -> bool:
        """`check` for a coroutine function, awaited on the running event loop."""
        started = time.monotonic()
        try:
            await fn()
        except Exception as e:  # noqa: BLE001 - any failure is a failed check
            return self._failed(name, e)
        return self._passed(name, started)

    def _failed(self, name: str, e: Exception) -> bool:
        self.failed += 1
        why = str(e) if isinstance(e, CheckFailed) else f"{type(e).__name__}: {e}"
        print(f"not ok - {name}: {_one_line(why)}", flush=True)
        return False

    def _passed(self, name: str, started: float) -> bool:
        self.passed += 1
        took = time.monotonic() - started
        print(f"ok - {name}", flush=True)
        if took >= 1:
            print(f"# took {took:.1f} s", flush=True)
        return True

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"ok - {name} # SKIP {_one_line(why)}", flush=True)

    def finish(self) -> None:
        """Prints the summary and exits (0 only if nothing failed)."""
        self._watchdog.cancel()
        total = self.passed + self.failed
        print(
            f"# {self.name}: checks={total} passed={self.passed} "
            f"failed={self.failed} skipped={self.skipped}",
            flush=True,
        )
        sys.stdout.flush()
        os._exit(0 if self.failed == 0 and total > 0 else 1)


def json_body(raw: Any, what: str = "body") -> Any:
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("utf-8", "replace")
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} is not JSON: {raw!r}") from None


def wait_for(cond: Callable[[], Any], what: str, secs: float = 20.0) -> None:
    """Polls `cond` until it holds; CheckFailed naming `what` after `secs`."""
    deadline = time.monotonic() + secs
    while not cond():
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {secs:g} s")
        time.sleep(0.025)  # poll interval, not a fixed wait


def rpc_error(fn: Callable[[], Any]) -> Any:
    """The grpc.RpcError `fn` raises; CheckFailed when it raises none."""
    import grpc  # only the gRPC suites call this

    try:
        fn()
    except grpc.RpcError as e:
        return e
    raise CheckFailed("no error")


def sidecar_metadata(http_port: str, timeout: float = 20.0) -> Dict[str, Any]:
    """The sidecar's `GET /v1.0/metadata`, read over plain HTTP."""
    url = f"http://127.0.0.1:{http_port}/v1.0/metadata"
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())
