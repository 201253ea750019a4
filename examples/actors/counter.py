#!/usr/bin/env python3
"""A Counter actor type, hosted behind an Outrider (or daprd) sidecar, with only the standard
library: the sidecar asks GET /dapr/config which types the app hosts, then calls each actor's
methods one at a time at PUT /actors/Counter/<id>/method/<name>. The count lives in actor state,
read and written through the sidecar's actor state API.

    outrider run --app-id counter --app-port 7010 --resources-path . -- python3 counter.py

Methods: `increment` (adds one, answers {"count": n}), `get`; a reminder's firing
(`remind/<name>`) adds one too and prints it. The app's jobs arrive at POST /job/<name>.
"""
import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIDECAR = f"http://127.0.0.1:{os.environ.get('DAPR_HTTP_PORT', '3500')}/v1.0/actors/Counter"


def sidecar(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(SIDECAR + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as rsp:
        return rsp.status, rsp.read()


def add_one(actor_id):
    status, body = sidecar("GET", f"/{actor_id}/state/count")
    count = (json.loads(body) if status == 200 else 0) + 1
    sidecar("POST", f"/{actor_id}/state",
            [{"operation": "upsert", "request": {"key": "count", "value": count}}])
    return count


class App(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/dapr/config":
            return self.answer(200, {"entities": ["Counter"], "actorIdleTimeout": "1m"})
        self.answer(404, {})

    def do_PUT(self):
        parts = self.path.strip("/").split("/")
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if parts[:2] != ["actors", "Counter"] or len(parts) < 5:
            return self.answer(404, {})
        actor_id, method = parts[2], "/".join(parts[4:])
        if method == "increment":
            return self.answer(200, {"count": add_one(actor_id)})
        if method == "get":
            status, body = sidecar("GET", f"/{actor_id}/state/count")
            return self.answer(200, {"count": json.loads(body) if status == 200 else 0})
        if method.startswith("remind/"):
            print(f"reminder {method[7:]} for {actor_id}: count {add_one(actor_id)}", flush=True)
            return self.answer(200, {})
        self.answer(404, {})

    def do_POST(self):
        # A job of this app fired: its data is the body.
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.startswith("/job/"):
            print(f"job {self.path[5:]}: {body.decode() or '(no data)'}", flush=True)
            return self.answer(200, {})
        self.answer(404, {})

    def do_DELETE(self):
        # The sidecar deactivates an idle actor: nothing is kept in memory here.
        self.answer(200, {})

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("APP_PORT", "7010"))), App).serve_forever()
