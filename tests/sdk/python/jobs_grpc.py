"""The jobs API over gRPC, driven through the official Dapr Python SDK's client
(`DaprClient.schedule_job` / `get_job` / `delete_job`: ScheduleJob, GetJob, DeleteJob), against a
sidecar whose app (the e2e test's) records each job delivered at POST /job/<name>.

Environment (set by the e2e harness):
  DAPR_HTTP_PORT   the sidecar's HTTP API port (the SDK's readiness wait polls it)
  DAPR_GRPC_PORT   its gRPC API port
  RUN_ID           unique per run: job names are made from it

What dapr 1.19.0 does (dapr/clients/grpc/client.py, _jobs.py): schedule_job sends the Job with
`data` an Any (an empty Any when none is given) and falls back to the Alpha1 RPC only on
UNIMPLEMENTED; get_job answers a Job whose data is the Any as stored (None when empty) and whose
ConstantFailurePolicy carries whole seconds; errors are DaprGrpcError (a grpc.RpcError).
"""

from __future__ import annotations

import json
import os
import urllib.request

os.environ.setdefault("DAPR_HEALTH_TIMEOUT", "30")

import grpc  # noqa: E402
from dapr.clients import DaprClient  # noqa: E402
from dapr.clients.grpc._jobs import ConstantFailurePolicy, DropFailurePolicy, Job  # noqa: E402
from google.protobuf.any_pb2 import Any as GrpcAny  # noqa: E402
from google.protobuf.struct_pb2 import Value  # noqa: E402
from google.protobuf.wrappers_pb2 import StringValue  # noqa: E402

from sdkcheck import Suite, expect, expect_eq, require_env, rpc_error  # noqa: E402

env = require_env("DAPR_GRPC_PORT", "RUN_ID")
suite = Suite("python/jobs_grpc")
client = DaprClient()


def name(n: str) -> str:
    return f"{n}-{env['RUN_ID']}"


def packed(message) -> GrpcAny:
    any_ = GrpcAny()
    any_.Pack(message)
    return any_


def json_data_job() -> None:
    data = Value()
    data.struct_value.update({"greeting": "hi", "n": 1})
    job = Job(name=name("json"), due_time="1s", data=packed(data))
    client.schedule_job(job)


def text_data_job() -> None:
    job = Job(name=name("text"), due_time="1s", data=packed(StringValue(value="hi")))
    client.schedule_job(job)


def read_back() -> None:
    job = Job(
        name=name("later"),
        schedule="@every 1h",
        repeats=3,
        ttl="2h",
        data=packed(StringValue(value="kept")),
        failure_policy=ConstantFailurePolicy(max_retries=2, interval_seconds=5),
    )
    client.schedule_job(job)
    got = client.get_job(name("later"))
    expect_eq("name", got.name, name("later"))
    expect_eq("schedule", got.schedule, "@every 1h")
    expect_eq("repeats", got.repeats, 3)
    expect_eq("ttl", got.ttl, "2h")
    expect(got.data is not None, "no data")
    expect_eq("data type", got.data.type_url, "type.googleapis.com/google.protobuf.StringValue")
    text = StringValue()
    got.data.Unpack(text)
    expect_eq("data", text.value, "kept")
    expect(isinstance(got.failure_policy, ConstantFailurePolicy), f"policy {got.failure_policy}")
    expect_eq("max retries", got.failure_policy.max_retries, 2)
    expect_eq("interval", got.failure_policy.interval_seconds, 5)
    # The same job over HTTP: the jobs API is one, whichever protocol wrote it.
    url = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0-alpha1/jobs/{name('later')}"
    with urllib.request.urlopen(url, timeout=10) as rsp:
        shown = json.loads(rsp.read())
    expect_eq("HTTP schedule", shown.get("schedule"), "@every 1h")
    expect_eq("HTTP data type", shown["data"]["@type"], "type.googleapis.com/google.protobuf.StringValue")
    expect_eq("HTTP policy", shown["failurePolicy"], {"constant": {"interval": "5s", "maxRetries": 2}})


def overwrite() -> None:
    e = rpc_error(lambda: client.schedule_job(Job(name=name("later"), due_time="1h")))
    expect_eq("code", e.code(), grpc.StatusCode.ALREADY_EXISTS)
    client.schedule_job(Job(name=name("later"), due_time="1h", failure_policy=DropFailurePolicy()), overwrite=True)
    got = client.get_job(name("later"))
    expect_eq("schedule after overwrite", got.schedule, None)
    expect(isinstance(got.failure_policy, DropFailurePolicy), f"policy {got.failure_policy}")


def delete() -> None:
    client.delete_job(name("later"))
    e = rpc_error(lambda: client.get_job(name("later")))
    expect_eq("code", e.code(), grpc.StatusCode.INTERNAL)
    expect("job not found" in (e.details() or ""), e.details())


def no_schedule() -> None:
    # The SDK refuses this itself; the raw stub reaches the sidecar.
    from dapr.proto import api_v1

    request = api_v1.ScheduleJobRequest(job=api_v1.Job(name=name("never")))
    e = rpc_error(lambda: client._stub.ScheduleJob(request))
    expect_eq("code", e.code(), grpc.StatusCode.INVALID_ARGUMENT)
    expect_eq("details", e.details(), "Schedule is empty")


suite.check("a job with JSON data (google.protobuf.Value) is scheduled", json_data_job)
suite.check("a job with StringValue data is scheduled", text_data_job)
suite.check("get_job answers the job as scheduled, data as given", read_back)
suite.check("scheduling a job again needs overwrite", overwrite)
suite.check("delete_job removes it: get_job is INTERNAL, job not found", delete)
suite.check("a job with neither schedule nor due time is INVALID_ARGUMENT", no_schedule)
client.close()
suite.finish()
