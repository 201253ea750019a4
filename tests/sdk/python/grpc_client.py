"""The official Dapr Python SDK's gRPC client (`dapr.clients.DaprClient`) against the sidecar's
`dapr.proto.runtime.v1.Dapr` service, with the script as the app.

The sidecar starts this script as its app (``outrider run --app-id X --app-port P -- python
grpc_client.py``) and sets DAPR_HTTP_PORT, DAPR_GRPC_PORT, APP_PORT and APP_ID. The script serves
a FastAPI app wrapped in ``dapr.ext.fastapi.DaprApp`` on APP_PORT (uvicorn in a thread) to receive
what it publishes, and drives the sidecar with one ``DaprClient`` over gRPC: state, publish,
secrets, service invocation (``InvokeService``), metadata, then raw calls with the SDK's
generated stubs (``dapr.proto.api_service_v1.DaprStub``) and generic unary calls, and last
``shutdown()``. The sidecar then stops and exits with the script's exit code.

Environment beyond the sidecar's:
  TARGET_APP_ID    an echo app behind another sidecar of the mesh (tests/sdk/README.md)
  SECRET_STORE     a secretstores.local.file store, multiValued "true", holding
                   {"db": {"password": SECRET_PASSWORD}, "port": 5432, "denied": "no"}, with
                   Configuration secret scopes `deniedSecrets: [denied]` for it
  SECRET_PASSWORD  the value of db.password
  STATE_STORE      default `statestore` (the default SQLite store: ETags, transactions, TTL, query)
  PUBSUB_NAME      default `pubsub` (the default in-memory pub/sub)
  MISSING_STORE, MISSING_PUBSUB   names no component has (defaults below)
  DAPR_API_TOKEN   optional; the SDK sends it itself, and the token checks run only with it
  SDK_TEST_TIMEOUT_SECS   watchdog, default 120 here

What dapr 1.19.0 does (read from the installed source, dapr/clients/grpc/client.py):
  DaprClient()        waits for GET /v1.0/healthz/outbound (HTTP), then opens a lazy gRPC channel
                      to 127.0.0.1:$DAPR_GRPC_PORT; `dapr-api-token` is added to every unary call
                      when DAPR_API_TOKEN is set. With DAPR_API_METHOD_INVOCATION_PROTOCOL=grpc
                      (read once, in the constructor) invoke_method uses InvokeService and no
                      HTTP invocation client is built.
  errors              state, publish and get_metadata raise DaprGrpcError (code(), details(),
                      error_code() = ErrorInfo.reason, status_details() parsed from
                      grpc-status-details-bin, which must agree with grpc-status/grpc-message);
                      secrets, set_metadata, shutdown and gRPC invoke_method raise the raw
                      grpc.RpcError.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request
import warnings
from typing import Any, Callable, Dict, List, Optional

# Before the SDK reads its settings: invocation over gRPC (InvokeService), a bounded readiness
# wait and a deadline on every unary call that does not set its own.
os.environ["DAPR_API_METHOD_INVOCATION_PROTOCOL"] = "grpc"
os.environ.setdefault("DAPR_HEALTH_TIMEOUT", "30")
os.environ.setdefault("DAPR_API_TIMEOUT_SECONDS", "15")
os.environ.setdefault("SDK_TEST_TIMEOUT_SECS", "120")
# Both would take precedence over the ports the sidecar gives us.
for _endpoint in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT"):
    if os.environ.pop(_endpoint, None) is not None:
        print(f"# ignoring {_endpoint}: the sidecar's ports are used", flush=True)

import grpc  # noqa: E402
import uvicorn  # noqa: E402
from dapr.clients import DaprClient  # noqa: E402
from dapr.clients.exceptions import DaprGrpcError  # noqa: E402
from dapr.clients.grpc._request import (  # noqa: E402
    TransactionalStateOperation,
    TransactionOperationType,
)
from dapr.clients.grpc._state import StateItem  # noqa: E402
from dapr.ext.fastapi import DaprApp  # noqa: E402
from dapr.proto import api_service_v1, api_v1  # noqa: E402
from fastapi import Body, FastAPI  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402

from sdkcheck import (  # noqa: E402
    CheckFailed,
    Suite,
    captured_stdout,
    expect,
    expect_eq,
    json_body,
    require_env,
)

# The SDK warns on deprecated/alpha APIs we call on purpose (gRPC invoke_method, query_state).
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning, message=".*Alpha.*")

env = require_env(
    "DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "APP_PORT", "APP_ID",
    "TARGET_APP_ID", "SECRET_STORE", "SECRET_PASSWORD",
)
APP_ID = env["APP_ID"]
TARGET = env["TARGET_APP_ID"]
SECRET_STORE = env["SECRET_STORE"]
SECRET_PASSWORD = env["SECRET_PASSWORD"]
STORE = os.environ.get("STATE_STORE") or "statestore"
PUBSUB = os.environ.get("PUBSUB_NAME") or "pubsub"
MISSING_STORE = os.environ.get("MISSING_STORE") or "sdkpy-missing-store"
MISSING_PUBSUB = os.environ.get("MISSING_PUBSUB") or "sdkpy-missing-pubsub"
TOKEN = os.environ.get("DAPR_API_TOKEN") or None
HTTP_API = f"http://127.0.0.1:{env['DAPR_HTTP_PORT']}"
GRPC_TARGET = f"127.0.0.1:{env['DAPR_GRPC_PORT']}"
CALL_TIMEOUT = 15.0  # seconds, per raw call and per invoke_method
WAIT_SECS = 15.0  # deliveries, subscriptions, TTL expiry, draining
NONCE = f"sdkpy-grpc-{os.getpid()}-{int(time.time() * 1000)}"
SERVICE = "dapr.proto.runtime.v1.Dapr"

suite = Suite("python/grpc_client")


def key(name: str) -> str:
    return f"{NONCE}-{name}"


def topic(name: str) -> str:
    return f"{NONCE}-{name}"


def wait_for(cond: Callable[[], Any], what: str, secs: float = WAIT_SECS) -> None:
    deadline = time.monotonic() + secs
    while not cond():
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {secs:g} s")
        time.sleep(0.025)  # poll interval, not a fixed wait


# ---------------------------------------------------------------------------------------------
# The app: DaprApp subscriptions recording what they receive.

TOPICS = ("json", "bulk", "raw")
inbox: Dict[str, List[Dict[str, Any]]] = {t: [] for t in TOPICS}
lock = threading.Lock()

app = FastAPI()
dapr_app = DaprApp(app)


def record(name: str, event: Dict[str, Any]) -> Dict[str, str]:
    with lock:
        inbox[name].append(event)
    return {"status": "SUCCESS"}


@dapr_app.subscribe(pubsub=PUBSUB, topic=topic("json"))
def on_json(event: Dict[str, Any] = Body()) -> Dict[str, str]:
    return record("json", event)


@dapr_app.subscribe(pubsub=PUBSUB, topic=topic("bulk"))
def on_bulk(event: Dict[str, Any] = Body()) -> Dict[str, str]:
    return record("bulk", event)


@dapr_app.subscribe(pubsub=PUBSUB, topic=topic("raw"), metadata={"rawPayload": "true"})
def on_raw(event: Dict[str, Any] = Body()) -> Dict[str, str]:
    return record("raw", event)


def received(name: str) -> List[Dict[str, Any]]:
    with lock:
        return list(inbox[name])


server = uvicorn.Server(
    uvicorn.Config(app, host="127.0.0.1", port=int(env["APP_PORT"]), log_level="warning")
)
threading.Thread(target=server.run, daemon=True).start()


# ---------------------------------------------------------------------------------------------
# Helpers.

client: Optional[DaprClient] = None
channel = grpc.insecure_channel(GRPC_TARGET)
stub = api_service_v1.DaprStub(channel)


def sdk() -> DaprClient:
    assert client is not None
    return client


def token_md(token: Optional[str] = TOKEN) -> tuple:
    return (("dapr-api-token", token),) if token else ()


def http_get(path: str, timeout: float = 5) -> int:
    """Status of a plain HTTP GET on the sidecar's API (0 when it cannot be reached)."""
    req = urllib.request.Request(f"{HTTP_API}{path}")
    if TOKEN:
        req.add_header("dapr-api-token", TOKEN)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as rsp:
            rsp.read()
            return rsp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0


def http_json(path: str) -> Any:
    req = urllib.request.Request(f"{HTTP_API}{path}")
    if TOKEN:
        req.add_header("dapr-api-token", TOKEN)
    with urllib.request.urlopen(req, timeout=5) as rsp:
        return json.loads(rsp.read())


def sdk_error(what: str, fn: Callable[[], Any]) -> DaprGrpcError:
    """The DaprGrpcError `fn` raises (the SDK's wrapper, with the parsed status details)."""
    try:
        got = fn()
    except DaprGrpcError as e:
        print(f"# {what}: {e.code().name} {e.details()!r} error_code={e.error_code()}", flush=True)
        return e
    except grpc.RpcError as e:
        raise CheckFailed(f"{what}: expected DaprGrpcError, got a raw {e.code()}: {e.details()!r}") from None
    raise CheckFailed(f"{what}: expected an error, got {got!r}")


def raw_error(what: str, fn: Callable[[], Any]) -> grpc.RpcError:
    """The raw grpc.RpcError `fn` raises (raw stubs, and the SDK methods that do not wrap)."""
    try:
        got = fn()
    except grpc.RpcError as e:
        print(f"# {what}: {e.code().name} {e.details()!r}", flush=True)
        return e
    raise CheckFailed(f"{what}: expected an RpcError, got {got!r}")


def status_of(err: grpc.RpcError):
    """The google.rpc.Status of grpc-status-details-bin (None without it); grpc_status checks
    that its code and message agree with grpc-status and grpc-message."""
    return rpc_status.from_call(err)


def error_info_of(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo among the status details, unpacked by hand."""
    st = err.get_grpc_status() if isinstance(err, DaprGrpcError) else status_of(err)
    expect(st is not None, "no grpc-status-details-bin in the trailers")
    infos = []
    for d in st.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            infos.append(info)
    expect_eq("ErrorInfo details", len(infos), 1)
    return infos[0]


def expect_code(err: grpc.RpcError, code: grpc.StatusCode) -> None:
    expect_eq("gRPC code", err.code(), code)


def parsed_detail(err: DaprGrpcError, field: str, proto: str) -> Optional[Dict[str, Any]]:
    """One of the SDK's parsed status details (MessageToDict of the Any, so with its `@type`),
    without `@type` once that is checked; None when the status has no such detail."""
    d = getattr(err.status_details(), field)
    if d is None:
        return None
    d = dict(d)
    expect_eq(f"status_details().{field}['@type']", d.pop("@type", None), f"type.googleapis.com/google.rpc.{proto}")
    return d


def expect_error_info(err: DaprGrpcError, reason: str, metadata: Optional[Dict[str, str]] = None) -> None:
    """error_info as the SDK parsed it: reason, domain dapr.io, and the metadata map (an empty
    map is left out by MessageToDict)."""
    expected: Dict[str, Any] = {"reason": reason, "domain": "dapr.io"}
    if metadata:
        expected["metadata"] = metadata
    expect_eq("status_details().error_info", parsed_detail(err, "error_info", "ErrorInfo"), expected)
    expect_eq("error_code()", err.error_code(), reason)


# ---------------------------------------------------------------------------------------------
# 0. Readiness.

def serving() -> None:
    wait_for(lambda: server.started, "uvicorn serving on APP_PORT")


def construct() -> None:
    global client
    with captured_stdout():
        client = DaprClient()
    expect(client.invocation_client is None, "invoke_method is not on gRPC (an HTTP invocation client was built)")
    md = client.get_metadata()
    expect_eq("application_id", md.application_id, APP_ID)


ready = suite.check("uvicorn serves the DaprApp on APP_PORT", serving)
ready = ready and suite.check(
    "DaprClient() (gRPC invocation) waits for the sidecar, then get_metadata() answers", construct
)
if not ready:
    print("# the sidecar or the app is not reachable; remaining checks not run", flush=True)
    suite.finish()


# ---------------------------------------------------------------------------------------------
# 1. State.

def state_save_get() -> None:
    k = key("a")
    sdk().save_state(STORE, k, "value-1")
    r = sdk().get_state(STORE, k)
    expect_eq("data", r.data, b"value-1")
    expect(isinstance(r.etag, str) and r.etag != "", f"no etag: {r.etag!r}")


suite.check("save_state then get_state returns the value and an etag", state_save_get)


def state_etags() -> None:
    k = key("etag")
    sdk().save_state(STORE, k, "v1")
    first = sdk().get_state(STORE, k).etag
    sdk().save_state(STORE, k, "v2", etag=first)
    second = sdk().get_state(STORE, k)
    expect_eq("value after a save with the right etag", second.data, b"v2")
    expect(second.etag and second.etag != first, f"etag did not change: {first!r} -> {second.etag!r}")
    err = sdk_error("save with a stale etag", lambda: sdk().save_state(STORE, k, "v3", etag=first))
    expect_code(err, grpc.StatusCode.ABORTED)
    expect_eq("error_code()", err.error_code(), "ERR_STATE_SAVE")
    expect(
        err.details().startswith(f"failed saving state in state store {STORE}: "),
        f"message: {err.details()!r}",
    )
    expect_eq("value after the refused save", sdk().get_state(STORE, k).data, b"v2")


suite.check(
    "save_state with a stale etag raises DaprGrpcError ABORTED ERR_STATE_SAVE; with the right etag it saves",
    state_etags,
)


def state_missing() -> None:
    r = sdk().get_state(STORE, key("never-saved"))
    expect_eq("data", r.data, b"")
    expect_eq("etag", r.etag, "")


suite.check("get_state of a missing key returns b'' and etag ''", state_missing)


def state_bulk_get() -> None:
    ka, kb, kn = key("bulk-a"), key("bulk-b"), key("bulk-none")
    sdk().save_state(STORE, ka, "A")
    sdk().save_state(STORE, kb, b"\x00B\xff")
    items = {i.key: i for i in sdk().get_bulk_state(STORE, [ka, kb, kn]).items}
    expect_eq("keys", sorted(items), sorted([ka, kb, kn]))
    expect_eq("data of a", items[ka].data, b"A")
    expect_eq("data of b", items[kb].data, b"\x00B\xff")
    expect(items[ka].etag and items[kb].etag, f"etags: {items[ka].etag!r}, {items[kb].etag!r}")
    expect_eq("etag of a", items[ka].etag, sdk().get_state(STORE, ka).etag)
    expect_eq("data of the missing key", items[kn].data, b"")
    expect_eq("etag of the missing key", items[kn].etag, "")
    expect_eq("error of the missing key", items[kn].error, "")


suite.check("get_bulk_state returns present keys with data and etag, a missing key empty", state_bulk_get)


def state_bulk_save() -> None:
    k1, k2 = key("bs-1"), key("bs-2")
    sdk().save_bulk_state(STORE, [StateItem(key=k1, value="one"), StateItem(key=k2, value="two")])
    expect_eq("k1", sdk().get_state(STORE, k1).data, b"one")
    expect_eq("k2", sdk().get_state(STORE, k2).data, b"two")
    etag1 = sdk().get_state(STORE, k1).etag
    # A bulk save with one stale etag is refused for that item (daprd: ABORTED).
    sdk().save_state(STORE, k1, "one-b", etag=etag1)
    err = sdk_error(
        "bulk save with a stale etag",
        lambda: sdk().save_bulk_state(STORE, [StateItem(key=k1, value="one-c", etag=etag1)]),
    )
    expect_code(err, grpc.StatusCode.ABORTED)
    expect_eq("error_code()", err.error_code(), "ERR_STATE_SAVE")
    expect_eq("k1 after the refused bulk save", sdk().get_state(STORE, k1).data, b"one-b")


suite.check("save_bulk_state saves every item (a stale etag: ABORTED)", state_bulk_save)


def state_delete() -> None:
    k = key("del")
    sdk().save_state(STORE, k, "doomed")
    etag = sdk().get_state(STORE, k).etag
    sdk().save_state(STORE, k, "doomed-2", etag=etag)  # `etag` is stale from here on
    err = sdk_error("delete with a wrong etag", lambda: sdk().delete_state(STORE, k, etag=etag))
    expect_code(err, grpc.StatusCode.ABORTED)
    expect_eq("error_code()", err.error_code(), "ERR_STATE_DELETE")
    expect_eq("value after the refused delete", sdk().get_state(STORE, k).data, b"doomed-2")
    current = sdk().get_state(STORE, k).etag
    sdk().delete_state(STORE, k, etag=current)
    expect_eq("data after delete with the right etag", sdk().get_state(STORE, k).data, b"")
    k2 = key("del-plain")
    sdk().save_state(STORE, k2, "x")
    sdk().delete_state(STORE, k2)
    r = sdk().get_state(STORE, k2)
    expect_eq("data after a plain delete", (r.data, r.etag), (b"", ""))
    sdk().delete_state(STORE, key("del-never-saved"))  # deleting a missing key succeeds


suite.check(
    "delete_state deletes; with a wrong etag DaprGrpcError ABORTED ERR_STATE_DELETE and the value stays",
    state_delete,
)


def state_transaction() -> None:
    kup, kdel = key("tx-up"), key("tx-del")
    sdk().save_state(STORE, kdel, "to delete")
    sdk().execute_state_transaction(
        STORE,
        [
            TransactionalStateOperation(key=kup, data="upserted"),
            TransactionalStateOperation(key=kdel, operation_type=TransactionOperationType.delete),
        ],
    )
    expect_eq("upserted key", sdk().get_state(STORE, kup).data, b"upserted")
    expect_eq("deleted key", sdk().get_state(STORE, kdel).data, b"")


suite.check("execute_state_transaction applies an upsert and a delete", state_transaction)


def state_query() -> None:
    docs = {key(f"q-{i}"): {"run": NONCE, "n": i, "city": c} for i, c in enumerate(["oslo", "rome", "oslo"])}
    for k, v in docs.items():
        sdk().save_state(STORE, k, json.dumps(v), state_metadata={"contentType": "application/json"})
    query = {"filter": {"AND": [{"EQ": {"run": NONCE}}, {"EQ": {"city": "oslo"}}]}, "sort": [{"key": "n", "order": "DESC"}]}
    r = sdk().query_state(STORE, json.dumps(query))
    got = [(i.key, json_body(i.value, f"data of {i.key}")) for i in r.results]
    want = [(k, v) for k, v in docs.items() if v["city"] == "oslo"]
    want.reverse()
    expect_eq("results (key, data), sorted by n descending", got, want)
    expect(all(i.etag for i in r.results), f"etags: {[i.etag for i in r.results]}")


suite.check("query_state (QueryStateAlpha1) filters and sorts JSON values", state_query)


def state_ttl() -> None:
    k, neighbour = key("ttl"), key("ttl-neighbour")
    sdk().save_state(STORE, neighbour, "stays")
    sdk().save_state(STORE, k, "short-lived", state_metadata={"ttlInSeconds": "1"})
    expect_eq("value right after the save", sdk().get_state(STORE, k).data, b"short-lived")
    wait_for(lambda: sdk().get_state(STORE, k).data == b"", "the value expires (ttlInSeconds 1)", 10)
    expect_eq("etag after expiry", sdk().get_state(STORE, k).etag, "")
    expect_eq("neighbour without TTL", sdk().get_state(STORE, neighbour).data, b"stays")


suite.check("save_state with metadata ttlInSeconds=1: readable at once, gone after expiry", state_ttl)


def state_unknown_store() -> None:
    err = sdk_error("get from a missing store", lambda: sdk().get_state(MISSING_STORE, key("x")))
    expect_code(err, grpc.StatusCode.INVALID_ARGUMENT)
    expect_eq("message", err.details(), f"state store {MISSING_STORE} is not found")
    expect_error_info(err, "DAPR_STATE_NOT_FOUND")
    d = err.status_details()
    for field in ("retry_info", "debug_info", "quota_failure", "precondition_failure",
                  "bad_request", "request_info", "resource_info", "help", "localized_message"):
        expect_eq(f"status_details().{field}", getattr(d, field), None)
    st = err.get_grpc_status()
    expect_eq("details count", len(st.details), 1)
    expect_eq("google.rpc.Status code", st.code, grpc.StatusCode.INVALID_ARGUMENT.value[0])
    expect_eq("google.rpc.Status message", st.message, f"state store {MISSING_STORE} is not found")
    info = error_info_of(err)
    expect_eq("ErrorInfo.metadata", dict(info.metadata), {})
    save = sdk_error("save to a missing store", lambda: sdk().save_state(MISSING_STORE, key("x"), "v"))
    expect_code(save, grpc.StatusCode.INVALID_ARGUMENT)
    expect_eq("error_code() of save", save.error_code(), "DAPR_STATE_NOT_FOUND")


suite.check(
    "an unknown state store: INVALID_ARGUMENT DAPR_STATE_NOT_FOUND, details parsed field by field",
    state_unknown_store,
)


ILLEGAL_KEY = f"{NONCE}||bad"
ILLEGAL_KEY_MSG = f"input key/keyPrefix '{ILLEGAL_KEY}' can't contain '||'"
illegal_key_err: List[DaprGrpcError] = []


def state_illegal_key() -> None:
    err = sdk_error("get of a key with ||", lambda: sdk().get_state(STORE, ILLEGAL_KEY))
    illegal_key_err.append(err)
    expect_code(err, grpc.StatusCode.INVALID_ARGUMENT)
    expect_eq("message", err.details(), ILLEGAL_KEY_MSG)
    expect_error_info(err, "DAPR_STATE_ILLEGAL_KEY")
    save = sdk_error("save of a key with ||", lambda: sdk().save_state(STORE, ILLEGAL_KEY, "v"))
    expect_code(save, grpc.StatusCode.INVALID_ARGUMENT)
    expect_eq("message of save", save.details(), ILLEGAL_KEY_MSG)
    expect_eq("error_code() of save", save.error_code(), "DAPR_STATE_ILLEGAL_KEY")


suite.check("a key containing '||': INVALID_ARGUMENT DAPR_STATE_ILLEGAL_KEY", state_illegal_key)


# daprd (pkg/api/errors/state.go InvalidKeyName): WithFieldViolation(key, msg) + ResourceInfo.
def state_illegal_key_details() -> None:
    expect(illegal_key_err, "no error captured by the previous check")
    err = illegal_key_err[0]
    expect_eq(
        "status_details().resource_info",
        parsed_detail(err, "resource_info", "ResourceInfo"),
        {"resource_type": "state", "resource_name": STORE},
    )
    expect_eq(
        "status_details().bad_request",
        parsed_detail(err, "bad_request", "BadRequest"),
        {"field_violations": [{"field": ILLEGAL_KEY, "description": ILLEGAL_KEY_MSG}]},
    )


suite.check(
    "the '||' key error also carries ResourceInfo and a BadRequest field violation naming the key",
    state_illegal_key_details,
)


# ---------------------------------------------------------------------------------------------
# 2. Publish, received by the DaprApp subscriptions.

def subscribed() -> None:
    wanted = {topic(t) for t in TOPICS}

    def listed() -> bool:
        md = stub.GetMetadata(api_v1.GetMetadataRequest(), metadata=token_md(), timeout=CALL_TIMEOUT)
        return wanted <= {s.topic for s in md.subscriptions if s.pubsub_name == PUBSUB}

    wait_for(listed, "GetMetadata lists every DaprApp subscription")
    md = stub.GetMetadata(api_v1.GetMetadataRequest(), metadata=token_md(), timeout=CALL_TIMEOUT)
    subs = {s.topic: s for s in md.subscriptions if s.pubsub_name == PUBSUB}
    s = subs[topic("json")]
    expect_eq("rules of json", [(r.match, r.path) for r in s.rules.rules], [("", f"/events/{PUBSUB}/{topic('json')}")])
    expect_eq("type of json", s.type, api_v1.PubsubSubscriptionType.PROGRAMMATIC)
    expect_eq("metadata of raw", dict(subs[topic("raw")].metadata), {"rawPayload": "true"})

    # The gRPC listing has no state: wait until the HTTP one says each is active.
    def active() -> bool:
        subs = http_json("/v1.0/metadata").get("subscriptions", [])
        return wanted <= {s.get("topic") for s in subs if s.get("pubsubname") == PUBSUB and s.get("status") == "ACTIVE"}

    wait_for(active, "every subscription ACTIVE in /v1.0/metadata")


subscribed_ok = suite.check("GetMetadata lists the DaprApp subscriptions (programmatic, default route)", subscribed)


def publish_json() -> None:
    payload = {"order": 7, "nonce": NONCE, "items": ["a", "b"]}
    sdk().publish_event(PUBSUB, topic("json"), json.dumps(payload), data_content_type="application/json")
    wait_for(lambda: received("json"), "the json handler")
    e = received("json")[0]
    expect_eq("data", e.get("data"), payload)
    expect_eq("topic", e.get("topic"), topic("json"))
    expect_eq("pubsubname", e.get("pubsubname"), PUBSUB)
    expect_eq("source", e.get("source"), APP_ID)
    expect_eq("datacontenttype", e.get("datacontenttype"), "application/json")
    expect_eq("specversion", e.get("specversion"), "1.0")
    expect_eq("type", e.get("type"), "com.dapr.event.sent")
    expect(e.get("id"), f"no id in {e}")


def publish_bulk() -> None:
    payloads = [{"n": i, "nonce": NONCE} for i in range(3)]
    r = sdk().publish_events(PUBSUB, topic("bulk"), [json.dumps(p) for p in payloads], data_content_type="application/json")
    expect_eq("failed_entries", r.failed_entries, [])
    wait_for(lambda: len(received("bulk")) >= 3, "three bulk-published events")
    events = received("bulk")
    expect_eq("delivered data", sorted((e.get("data") for e in events), key=lambda d: d["n"]), payloads)
    for e in events:
        expect_eq("topic", e.get("topic"), topic("bulk"))
        expect_eq("source", e.get("source"), APP_ID)
        expect_eq("datacontenttype", e.get("datacontenttype"), "application/json")
    expect_eq("distinct ids", len({e.get("id") for e in events}), 3)


def publish_raw() -> None:
    raw = f'not a cloudevent {NONCE} \x01'.encode() + b"\xff\xfe"
    sdk().publish_event(PUBSUB, topic("raw"), raw, publish_metadata={"rawPayload": "true"})
    wait_for(lambda: received("raw"), "the raw handler")
    e = received("raw")[0]
    expect("data_base64" in e, f"no data_base64 in {e}")
    expect_eq("data_base64 decoded", base64.b64decode(e["data_base64"]), raw)
    expect_eq("datacontenttype", e.get("datacontenttype"), "application/octet-stream")
    expect_eq("topic", e.get("topic"), topic("raw"))
    expect_eq("pubsubname", e.get("pubsubname"), PUBSUB)


unknown_pubsub_err: List[DaprGrpcError] = []


def publish_unknown() -> None:
    err = sdk_error("publish to a missing pubsub", lambda: sdk().publish_event(MISSING_PUBSUB, topic("x"), "x"))
    unknown_pubsub_err.append(err)
    expect_code(err, grpc.StatusCode.INVALID_ARGUMENT)
    expect_error_info(err, "DAPR_PUBSUB_NOT_FOUND")
    bulk = sdk_error("bulk publish to a missing pubsub", lambda: sdk().publish_events(MISSING_PUBSUB, topic("x"), ["x"]))
    expect_code(bulk, grpc.StatusCode.INVALID_ARGUMENT)
    expect_eq("error_code() of publish_events", bulk.error_code(), "DAPR_PUBSUB_NOT_FOUND")


# daprd (pkg/api/errors/pubsub.go NotFound): fmt.Sprintf("%s %s is not found", "pubsub", name).
def publish_unknown_message() -> None:
    expect(unknown_pubsub_err, "no error captured by the previous check")
    expect_eq("message", unknown_pubsub_err[0].details(), f"pubsub {MISSING_PUBSUB} is not found")


PUBLISH = [
    ("publish_event (application/json) reaches the DaprApp handler as a CloudEvent from this app", publish_json),
    ("publish_events (bulk, 3 entries) delivers every entry", publish_bulk),
    ("publish_event with metadata rawPayload=true reaches a rawPayload subscription as the raw bytes", publish_raw),
]


def after_subscribing(fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        if not subscribed_ok:
            raise CheckFailed("not run: the subscriptions never became active")
        fn()

    return run


for name, fn in PUBLISH:
    suite.check(name, after_subscribing(fn))
suite.check("publish to an unknown pubsub: INVALID_ARGUMENT DAPR_PUBSUB_NOT_FOUND", publish_unknown)
suite.check('the unknown pubsub message is daprd\'s "pubsub <name> is not found"', publish_unknown_message)


# ---------------------------------------------------------------------------------------------
# 3. Secrets (the SDK does not wrap these errors: raw grpc.RpcError).

def secret_get() -> None:
    expect_eq("db", dict(sdk().get_secret(SECRET_STORE, "db").secret), {"password": SECRET_PASSWORD})
    expect_eq("port", dict(sdk().get_secret(SECRET_STORE, "port").secret), {"port": "5432"})


suite.check('get_secret("db") == {"password": SECRET_PASSWORD} (multiValued file store)', secret_get)


def secret_bulk() -> None:
    got = sdk().get_bulk_secret(SECRET_STORE).secrets
    expect_eq("secrets", got, {"db": {"password": SECRET_PASSWORD}, "port": {"port": "5432"}})


suite.check("get_bulk_secret returns every allowed secret and leaves the denied one out", secret_bulk)


def secret_denied() -> None:
    err = raw_error("get of a denied secret", lambda: sdk().get_secret(SECRET_STORE, "denied"))
    expect(not isinstance(err, DaprGrpcError), "the SDK wrapped a secrets error (it did not in 1.19.0)")
    expect_code(err, grpc.StatusCode.PERMISSION_DENIED)
    expect_eq("message", err.details(), f'access denied by policy to get "denied" from "{SECRET_STORE}"')


suite.check('get_secret("denied") raises PERMISSION_DENIED (Configuration secret scopes)', secret_denied)


def secret_unknown_store() -> None:
    err = raw_error("get from a missing secret store", lambda: sdk().get_secret(MISSING_STORE, "db"))
    expect_code(err, grpc.StatusCode.INVALID_ARGUMENT)
    expect_eq("message", err.details(), f"failed finding secret store with key {MISSING_STORE}")
    bulk = raw_error("bulk get from a missing secret store", lambda: sdk().get_bulk_secret(MISSING_STORE))
    expect_code(bulk, grpc.StatusCode.INVALID_ARGUMENT)


suite.check("an unknown secret store raises a raw RpcError INVALID_ARGUMENT", secret_unknown_store)


# ---------------------------------------------------------------------------------------------
# 4. Service invocation over gRPC (InvokeService) to the echo app behind another sidecar.

invoke_headers: List[Dict[str, List[str]]] = []


def invoke_post() -> None:
    payload = {"greeting": "hello", "n": 42, "nonce": NONCE}
    r = sdk().invoke_method(
        TARGET,
        "echo/grpc",
        data=json.dumps(payload),
        content_type="application/json",
        http_verb="POST",
        http_querystring=(("a", "1"), ("b", "x y")),
        timeout=CALL_TIMEOUT,
    )
    invoke_headers.append(r.headers)  # the call's initial metadata, as {key: [values]}
    expect_eq("content_type", r.content_type, "application/json")
    e = r.json()
    expect(isinstance(e, dict) and "method" in e, f"not an echo: {e!r}")
    expect_eq("method", e["method"], "POST")
    expect_eq("path", e["path"], "/echo/grpc")
    expect_eq("query", e["query"], "a=1&b=x+y")
    expect_eq("body", json_body(e["body"], "body at the app"), payload)
    expect_eq("content-type at the app", e["headers"].get("content-type"), "application/json")


suite.check("invoke_method over gRPC (InvokeService): POST, JSON body, query string reach the echo app", invoke_post)


def invoke_status_header() -> None:
    expect(invoke_headers, "no response metadata captured by the previous check")
    expect_eq("dapr-http-status", invoke_headers[0].get("dapr-http-status"), ["200"])


suite.check("InvokeService response metadata carries dapr-http-status: 200", invoke_status_header)


def invoke_no_verb() -> None:
    err = raw_error(
        "invoke without http_verb",
        lambda: sdk().invoke_method(TARGET, "echo/grpc", data="x", timeout=CALL_TIMEOUT),
    )
    expect_code(err, grpc.StatusCode.INTERNAL)
    expect("missing HTTP extension field" in (err.details() or ""), f"message: {err.details()!r}")


suite.check('invoke_method without http_verb: INTERNAL "missing HTTP extension field"', invoke_no_verb)


# ---------------------------------------------------------------------------------------------
# 5. Metadata.

def metadata_get() -> None:
    md = sdk().get_metadata()
    expect_eq("application_id", md.application_id, APP_ID)
    comps = {c.name: c for c in md.registered_components}
    for name, prefix in ((STORE, "state."), (PUBSUB, "pubsub."), (SECRET_STORE, "secretstores.")):
        expect(name in comps, f"{name} not in registered_components {sorted(comps)}")
        expect(comps[name].type.startswith(prefix), f"type of {name}: {comps[name].type!r}")
    expect("ETAG" in comps[STORE].capabilities, f"capabilities of {STORE}: {list(comps[STORE].capabilities)}")
    expect("daprRuntimeVersion" in md.extended_metadata, f"extended_metadata: {md.extended_metadata}")


suite.check("get_metadata: application_id and the state, pubsub and secret stores registered", metadata_get)


def metadata_set() -> None:
    k, v = f"sdkpy-{os.getpid()}", f"value {NONCE}"
    sdk().set_metadata(k, v)
    expect_eq(f"extended_metadata[{k}]", sdk().get_metadata().extended_metadata.get(k), v)
    sdk().set_metadata(k, "changed")
    expect_eq(f"extended_metadata[{k}] after a second set", sdk().get_metadata().extended_metadata.get(k), "changed")


suite.check("set_metadata then get_metadata().extended_metadata shows the value", metadata_set)


# ---------------------------------------------------------------------------------------------
# 5b. Streaming subscriptions (SubscribeTopicEventsAlpha1): no app port, no /dapr/subscribe.

def streaming_types() -> List[str]:
    """The types of this run's subscriptions, as the HTTP metadata API lists them."""
    req = urllib.request.Request(f"{HTTP_API}/v1.0/metadata", headers=dict(token_md()))
    subs = json.loads(urllib.request.urlopen(req, timeout=CALL_TIMEOUT).read()).get("subscriptions", [])
    return [sub.get("type", "") for sub in subs if sub.get("topic", "").startswith(NONCE)]


def publish_json(t: str, n: int) -> None:
    sdk().publish_event(PUBSUB, t, json.dumps({"n": n, "nonce": NONCE}), data_content_type="application/json")


def next_event(sub: Any, what: str) -> Any:
    # next_message() blocks until an event arrives; the script's watchdog bounds the wait.
    m = sub.next_message()
    if m is None:
        raise CheckFailed(f"{what}: the stream gave no event")
    return m


def streaming_retry_and_drop() -> None:
    t = topic("stream")
    sub = sdk().subscribe(PUBSUB, t)
    try:
        wait_for(lambda: "STREAMING" in streaming_types(), "the stream listed as a STREAMING subscription")
        publish_json(t, 1)
        first = next_event(sub, "the first event")
        expect_eq("topic", first.topic(), t)
        expect_eq("pubsub", first.pubsub_name(), PUBSUB)
        expect_eq("data_content_type", first.data_content_type(), "application/json")
        expect_eq("data", first.data(), {"n": 1, "nonce": NONCE})
        expect_eq("source", first.source(), APP_ID)
        sub.respond_retry(first)
        again = next_event(sub, "the event answered RETRY, delivered again")
        expect_eq("the redelivered event's id", again.id(), first.id())
        sub.respond_success(again)
        publish_json(t, 2)
        dropped = next_event(sub, "the second event")
        expect_eq("second data", dropped.data()["n"], 2)
        sub.respond_drop(dropped)
        publish_json(t, 3)
        third = next_event(sub, "the event after a DROP")
        expect_eq("after a DROP, the next event (the dropped one is not delivered again)", third.data()["n"], 3)
        sub.respond_success(third)
    finally:
        sub.close()
    wait_for(lambda: "STREAMING" not in streaming_types(), "the closed stream leaves the metadata")


suite.check("subscribe() streams events: SUCCESS acks, RETRY redelivers, DROP does not; listed while open", streaming_retry_and_drop)


def streaming_dead_letter() -> None:
    t, dead = topic("stream-main"), topic("stream-dead")
    letters = sdk().subscribe(PUBSUB, dead)
    sub = sdk().subscribe(PUBSUB, t, dead_letter_topic=dead)
    try:
        publish_json(t, 7)
        m = next_event(sub, "the event")
        sub.respond_drop(m)
        letter = next_event(letters, "the dropped event on the dead-letter topic")
        expect_eq("the dead letter's data", letter.data(), {"n": 7, "nonce": NONCE})
        letters.respond_success(letter)
    finally:
        sub.close()
        letters.close()


suite.check("subscribe(dead_letter_topic=...): a dropped event goes to the dead-letter topic", streaming_dead_letter)


def streaming_handler() -> None:
    t = topic("stream-handler")
    seen: List[Any] = []

    def handle(message: Any) -> Any:
        from dapr.clients.grpc._response import TopicEventResponse

        seen.append(message.data())
        return TopicEventResponse("success")

    close = sdk().subscribe_with_handler(PUBSUB, t, handle)
    try:
        wait_for(lambda: "STREAMING" in streaming_types(), "the handler's stream listed")
        for n in (1, 2, 3):
            publish_json(t, n)
        wait_for(lambda: len(seen) >= 3, "three events through subscribe_with_handler")
        expect_eq("events in order", [d["n"] for d in seen], [1, 2, 3])
    finally:
        close()


suite.check("subscribe_with_handler() receives every event in order", streaming_handler)


def streaming_unknown_pubsub() -> None:
    try:
        sub = sdk().subscribe(MISSING_PUBSUB, topic("nowhere"))
        sub.close()
    except Exception as e:  # the SDK raises a plain Exception naming the stream's status
        expect("INVALID_ARGUMENT" in str(e) or "is not found" in str(e), f"the error: {e}")
        return
    raise CheckFailed("subscribing to an unknown pubsub succeeded")


suite.check("subscribe() to an unknown pubsub fails with daprd's not-found error", streaming_unknown_pubsub)


# ---------------------------------------------------------------------------------------------
# 6. Raw gRPC: the generated stubs and a generic unary call.

def unimplemented() -> None:
    for rpc, call, req in (
        ("ListJobsAlpha1", stub.ListJobsAlpha1, api_v1.ListJobsRequestAlpha1()),
        ("GetWorkflowBeta1", stub.GetWorkflowBeta1, api_v1.GetWorkflowRequest(instance_id="w")),
    ):
        err = raw_error(rpc, lambda: call(req, metadata=token_md(), timeout=CALL_TIMEOUT))
        expect_code(err, grpc.StatusCode.UNIMPLEMENTED)
        expect(rpc in (err.details() or ""), f"{rpc}: message does not name the RPC: {err.details()!r}")


suite.check("an RPC this sidecar does not serve (ListJobsAlpha1, GetWorkflowBeta1): UNIMPLEMENTED naming it", unimplemented)


def unknown_service() -> None:
    call = channel.unary_unary("/outrider.sdktest.v1.Nowhere/Hello")  # bytes in, bytes out
    err = raw_error("unknown service", lambda: call(b"", metadata=token_md(), timeout=CALL_TIMEOUT))
    expect_code(err, grpc.StatusCode.UNKNOWN)
    expect_eq(
        "message",
        err.details(),
        "failed to proxy request: required metadata dapr-callee-app-id or dapr-app-id not found",
    )


suite.check("a method of an unknown service without dapr-app-id: UNKNOWN failed to proxy request", unknown_service)


def unauthenticated(token: Optional[str], detail: str) -> None:
    err = raw_error(
        f"GetMetadata with token {token!r}",
        lambda: stub.GetMetadata(api_v1.GetMetadataRequest(), metadata=token_md(token), timeout=CALL_TIMEOUT),
    )
    expect_code(err, grpc.StatusCode.UNAUTHENTICATED)
    expect_eq("message", err.details(), "Unauthorized")
    info = error_info_of(err)
    expect_eq("ErrorInfo.reason", info.reason, "Unauthorized")
    expect_eq("ErrorInfo.domain", info.domain, "dapr.io")
    expect_eq("ErrorInfo.metadata", dict(info.metadata), {"http.code": "401", "http.error_message": detail})
    # The SDK's wrapper reads the same.
    try:
        stub.SaveState(
            api_v1.SaveStateRequest(store_name=STORE, states=[]), metadata=token_md(token), timeout=CALL_TIMEOUT
        )
    except grpc.RpcError as e:
        wrapped = DaprGrpcError(e)
        expect_eq("DaprGrpcError.error_code()", wrapped.error_code(), "Unauthorized")
    else:
        raise CheckFailed("SaveState was served without the right token")


if TOKEN:
    suite.check(
        "without dapr-api-token: UNAUTHENTICATED Unauthorized (missing api token in request metadata)",
        lambda: unauthenticated(None, "missing api token in request metadata"),
    )
    suite.check(
        "with a wrong dapr-api-token: UNAUTHENTICATED Unauthorized (api token mismatch)",
        lambda: unauthenticated(TOKEN + "-wrong", "authentication error: api token mismatch"),
    )
else:
    suite.skip("without dapr-api-token: UNAUTHENTICATED", "DAPR_API_TOKEN is not set")
    suite.skip("with a wrong dapr-api-token: UNAUTHENTICATED", "DAPR_API_TOKEN is not set")


# ---------------------------------------------------------------------------------------------
# 7. Last: shutdown over gRPC; the sidecar reports not ready while it drains.

def shutdown() -> None:
    expect_eq("GET /v1.0/healthz before shutdown", http_get("/v1.0/healthz"), 204)
    sdk().shutdown()
    last: List[int] = []

    def not_ready() -> bool:
        last[:] = [http_get("/v1.0/healthz", timeout=2)]
        return last[0] != 204

    wait_for(not_ready, "GET /v1.0/healthz stops answering 204", 10)
    print(f"# healthz after shutdown: {last[0] or 'unreachable'}", flush=True)


suite.check("shutdown() over gRPC: the sidecar stops reporting healthy", shutdown)
server.should_exit = True
suite.finish()
