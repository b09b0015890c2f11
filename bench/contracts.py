"""`bench_stamp`: a no-op job type that reports when its function ran (for latency figures).

Loaded by the bench's gateway and workers through `JOBGATE_CONTRACT_MODULES=bench.contracts`
and `JOBGATE_JOB_MODULES=bench.jobs`, the way any deployment adds its own job types.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.contracts import Contract, job_type


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
