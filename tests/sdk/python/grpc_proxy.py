"""gRPC service invocation through two sidecars, with grpcio on both ends (no Dapr SDK: a plain
gRPC service and a plain gRPC client, as an app that knows nothing of Dapr but one metadata key).

``grpc_proxy.py server`` is the app behind the callee's sidecar (``--app-protocol grpc``): an echo
service ``outrider.test.Echo`` on APP_PORT, bytes in and out (generic handlers, no .proto).
``grpc_proxy.py client`` calls that service on its own sidecar's gRPC port (CALLER_GRPC_PORT) with
``dapr-app-id: TARGET_APP_ID`` and checks: unary; server-, client- and bidi-streaming; a 16 MiB
message each way; a deadline that expires (DEADLINE_EXCEEDED within it); an app nobody serves;
a proxied call for the sidecar's own ``AppCallback`` service, refused; a method the callee's
access policy denies by its gRPC name (``/outrider.test.Echo/Denied``), PERMISSION_DENIED;
metadata both ways (request metadata reaches the server, the server's initial and trailing
metadata and a non-OK status come back).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent import futures
from typing import Any, Iterator

import grpc

from sdkcheck import CheckFailed, Suite, expect, expect_eq, require_env

SERVICE = "outrider.test.Echo"
BIG = 16 * 1024 * 1024
MAX = 32 * 1024 * 1024
OPTIONS = [("grpc.max_send_message_length", MAX), ("grpc.max_receive_message_length", MAX)]


def identity(b: bytes) -> bytes:
    return b


def md(context: Any) -> dict:
    return {k: v for k, v in context.invocation_metadata()}


class Echo:
    def unary(self, request: bytes, context: Any) -> bytes:
        m = md(context)
        context.send_initial_metadata((("x-initial", "hello"),))
        context.set_trailing_metadata((("x-trailing", m.get("x-request", "")),))
        if request == b"fail":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to fail")
        return request

    def server_stream(self, request: bytes, context: Any) -> Iterator[bytes]:
        for i in range(int(request)):
            yield f"item-{i}".encode()

    def client_stream(self, requests: Iterator[bytes], context: Any) -> bytes:
        return b"|".join(requests)

    def bidi(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for r in requests:
            yield r.upper()

    def slow(self, request: bytes, context: Any) -> bytes:
        deadline = time.monotonic() + 30
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)  # poll interval: waiting for the caller's deadline to cancel us
        return b"late"


def serve() -> None:
    env = require_env("APP_PORT")
    e = Echo()
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(e.unary, identity, identity),
        "ServerStream": grpc.unary_stream_rpc_method_handler(e.server_stream, identity, identity),
        "ClientStream": grpc.stream_unary_rpc_method_handler(e.client_stream, identity, identity),
        "Bidi": grpc.stream_stream_rpc_method_handler(e.bidi, identity, identity),
        "Slow": grpc.unary_unary_rpc_method_handler(e.slow, identity, identity),
        # The callee's access policy denies it to the caller: never reached.
        "Denied": grpc.unary_unary_rpc_method_handler(e.unary, identity, identity),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{env['APP_PORT']}")
    server.start()
    print(f"# echo service on {env['APP_PORT']}", flush=True)
    server.wait_for_termination()


def client() -> None:
    env = require_env("CALLER_GRPC_PORT", "TARGET_APP_ID")
    suite = Suite("python/grpc_proxy")
    channel = grpc.insecure_channel(f"127.0.0.1:{env['CALLER_GRPC_PORT']}", options=OPTIONS)
    target = (("dapr-app-id", env["TARGET_APP_ID"]),)

    def call(kind: str, method: str) -> Any:
        return getattr(channel, kind)(f"/{SERVICE}/{method}", request_serializer=identity, response_deserializer=identity)

    def ready() -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                call("unary_unary", "Unary")(b"ping", metadata=target, timeout=5)
                return
            except grpc.RpcError as e:
                if time.monotonic() > deadline:
                    raise CheckFailed(f"the service never answered: {e.code()} {e.details()}")
                time.sleep(0.1)  # poll interval while the target registers

    if not suite.check("the target's echo service answers through both sidecars", ready):
        suite.finish()

    def unary_and_metadata() -> None:
        rsp, c = call("unary_unary", "Unary").with_call(b"hello", metadata=target + (("x-request", "abc"),), timeout=10)
        expect_eq("answer", rsp, b"hello")
        expect_eq("initial metadata", dict(c.initial_metadata()).get("x-initial"), "hello")
        expect_eq("trailing metadata (the request's metadata, echoed)", dict(c.trailing_metadata()).get("x-trailing"), "abc")

    suite.check("unary: answer, initial and trailing metadata both ways", unary_and_metadata)

    def app_status() -> None:
        try:
            call("unary_unary", "Unary")(b"fail", metadata=target, timeout=10)
        except grpc.RpcError as e:
            expect_eq("code", e.code(), grpc.StatusCode.FAILED_PRECONDITION)
            expect_eq("message", e.details(), "asked to fail")
            return
        raise CheckFailed("the call succeeded")

    suite.check("the app's own status comes back as it is", app_status)

    def server_streaming() -> None:
        got = list(call("unary_stream", "ServerStream")(b"5", metadata=target, timeout=10))
        expect_eq("items", got, [f"item-{i}".encode() for i in range(5)])

    suite.check("server streaming", server_streaming)

    def client_streaming() -> None:
        got = call("stream_unary", "ClientStream")(iter([b"a", b"b", b"c"]), metadata=target, timeout=10)
        expect_eq("joined", got, b"a|b|c")

    suite.check("client streaming", client_streaming)

    def bidi_streaming() -> None:
        got = list(call("stream_stream", "Bidi")(iter([b"x", b"y", b"z"]), metadata=target, timeout=10))
        expect_eq("echoed", got, [b"X", b"Y", b"Z"])

    suite.check("bidi streaming", bidi_streaming)

    def big_message() -> None:
        payload = bytes(range(256)) * (BIG // 256)
        got = call("unary_unary", "Unary")(payload, metadata=target, timeout=60)
        expect_eq("16 MiB back", len(got), BIG)
        expect(got == payload, "the bytes differ")

    suite.check("a 16 MiB message each way", big_message)

    def deadline() -> None:
        started = time.monotonic()
        try:
            call("unary_unary", "Slow")(b"", metadata=target, timeout=0.5)
        except grpc.RpcError as e:
            expect_eq("code", e.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            expect(time.monotonic() - started < 5, "the deadline was not kept")
            return
        raise CheckFailed("the slow call succeeded")

    suite.check("a deadline that expires: DEADLINE_EXCEEDED within it", deadline)

    def no_target() -> None:
        try:
            call("unary_unary", "Unary")(b"x", metadata=(("dapr-app-id", "sdkpy-nobody"),), timeout=10)
        except grpc.RpcError as e:
            expect(e.code() != grpc.StatusCode.OK, "an error")
            expect("sdkpy-nobody" in (e.details() or ""), f"names the target: {e.details()!r}")
            return
        raise CheckFailed("a call to an app nobody serves succeeded")

    suite.check("an app nobody serves: a gRPC error naming it", no_target)

    def app_callback_refused() -> None:
        # The sidecar's own calls to its app are not a caller's: a forged topic event is refused.
        try:
            channel.unary_unary(
                "/dapr.proto.runtime.v1.AppCallback/OnTopicEvent",
                request_serializer=identity,
                response_deserializer=identity,
            )(b"", metadata=target, timeout=10)
        except grpc.RpcError as e:
            expect_eq("code", e.code(), grpc.StatusCode.PERMISSION_DENIED)
            return
        raise CheckFailed("a proxied AppCallback call reached the app")

    suite.check("a proxied call for the AppCallback service is refused", app_callback_refused)

    def denied_by_policy() -> None:
        try:
            call("unary_unary", "Denied")(b"x", metadata=target, timeout=10)
        except grpc.RpcError as e:
            expect_eq("code", e.code(), grpc.StatusCode.PERMISSION_DENIED)
            return
        raise CheckFailed("a method the callee's policy denies was served")

    suite.check("the callee's access policy matches the gRPC method name", denied_by_policy)
    suite.finish()


if __name__ == "__main__":
    {"server": serve, "client": client}[sys.argv[1]]()
