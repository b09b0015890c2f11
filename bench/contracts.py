"""`bench_stamp`: a no-op job type that reports when its function ran (for latency figures).

Loaded by the bench's gateway and workers through `JOBGATE_CONTRACT_MODULES=bench.contracts`
and `JOBGATE_JOB_MODULES=bench.jobs`, the way any deployment adds its own job types.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from shared.contracts import ConcurrencyLimit, Contract, JobType, RateLimit, job_type


class StampArgs(Contract):
    sleep_ms: Annotated[
        int, Field(ge=0, le=10_000, description="How long to sleep before returning.")
    ] = 0


class StampResult(Contract):
    started_unix: Annotated[float, Field(description="`time.time()` as the function started.")]
    finished_unix: Annotated[float, Field(description="`time.time()` as it returned.")]


STAMP = job_type(
    "bench_stamp",
    args=StampArgs,
    result=StampResult,
    description="Record when the job function started and returned; for the bench.",
    timeout_seconds=30.0,
    max_tries=1,
)


class FlowArgs(Contract):
    key: Annotated[str, Field(max_length=20, description="The concurrency key.")] = "k"


def _flow_type(name: str, description: str, **controls: Any) -> JobType[FlowArgs, StampResult]:
    return job_type(
        name,
        args=FlowArgs,
        result=StampResult,
        description=description,
        timeout_seconds=30.0,
        max_tries=1,
        **controls,
    )


FLOW_TYPES = (
    _flow_type("bench_flow_plain", "none (baseline)"),
    _flow_type("bench_flow_deadline", "start_within_seconds=3600", start_within_seconds=3600),
    _flow_type(
        "bench_flow_keyed",
        "ConcurrencyLimit(key='key', limit=1000)",
        concurrency=ConcurrencyLimit(key="key", limit=1000),
    ),
    _flow_type(
        "bench_flow_rated",
        "RateLimit(count=1000000, per_seconds=1)",
        rate_limit=RateLimit(count=1_000_000, per_seconds=1),
    ),
)
"""The same no-op job, without and with each flow control (`bench.flow_controls`)."""
