"""What the shop's four apps share: a small HTTP server for the calls their sidecar makes to
them, and calls to their sidecar's Dapr HTTP API. Plain HTTP and the standard library only, so
the demo needs nothing installed; an app written with the Dapr SDK would make the same calls.
"""

import json
import os
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

APP_ID = os.environ.get("APP_ID", "?")
DAPR = "http://127.0.0.1:" + os.environ.get("DAPR_HTTP_PORT", "3500")
# Ids each app remembers, for /stats; older ones are forgotten past this many.
REMEMBERED = 100_000


def log(*parts):
    print(*parts, flush=True)


def dapr(method, path, body=None):
    """Calls the sidecar: (status, the answer read as JSON when it is)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        DAPR + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, _parse(r.read())
    except urllib.error.HTTPError as e:
        return e.code, _parse(e.read())
    except OSError as e:
        return 0, str(e)


def _parse(raw):
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def wait_for_sidecar():
    """Waits until the sidecar is ready for outbound calls."""
    while dapr("GET", "/v1.0/healthz/outbound")[0] // 100 != 2:
        time.sleep(0.2)


class Seen:
    """Ids seen per kind, thread-safe and bounded."""

    def __init__(self, *kinds):
        self._lock = threading.Lock()
        self._ids = {k: {} for k in kinds}
        self._counts = {k: 0 for k in kinds}

    def add(self, kind, ident):
        with self._lock:
            self._counts[kind] += 1
            ids = self._ids[kind]
            ids[str(ident)] = True
            if len(ids) > REMEMBERED:
                ids.pop(next(iter(ids)))

    def stats(self):
        with self._lock:
            return {k: {"count": self._counts[k], "ids": list(v)} for k, v in self._ids.items()}


def serve(routes, subscriptions=()):
    """Serves `routes` ({(method, path): handler(body) -> (status, answer)}) on $APP_PORT, and
    answers the sidecar's GET /dapr/subscribe with `subscriptions`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, status, answer=None):
            raw = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _handle(self, method):
            length = int(self.headers.get("content-length") or 0)
            body = _parse(self.rfile.read(length)) if length else None
            path = self.path.split("?", 1)[0]
            if method == "GET" and path == "/dapr/subscribe":
                return self._answer(200, list(subscriptions))
            handler = routes.get((method, path))
            if handler is None:
                return self._answer(404, {"error": f"no route {method} {path}"})
            try:
                self._answer(*handler(body))
            except Exception as e:  # an app's bug is its caller's 500, with the reason
                log(f"{method} {path} failed: {e!r}")
                self._answer(500, {"error": repr(e)})

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

    port = int(os.environ["APP_PORT"])
    log(f"{APP_ID} listening on 127.0.0.1:{port}")
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def orders_subscription(route="/orders"):
    return {"pubsubname": "pubsub", "topic": "orders", "route": route}
