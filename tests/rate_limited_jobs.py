"""Test-only rate-limited job types, whose results say when (and in which process) they started.

Declared with `JobType(...)`, so they are not in the registry for the whole test session (the
OpenAPI drift test would see their routes): `declared()` registers them for one test, and
worker processes load them as a deployment does, `JOBGATE_CONTRACT_MODULES` naming
`tests.rate_limited_contract` and `JOBGATE_JOB_MODULES` this module.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

from pydantic import Field

from shared.contracts import Contract, JobType, RateLimit
from worker.binding import implements
from worker.context import JobContext


class StampArgs(Contract):
    customer_id: Annotated[str | None, Field(description="Whose job it is (the keyed limit).")] = (
        None
    )


class StampResult(Contract):
    started: Annotated[float, Field(description="When the job function began (epoch seconds).")]
    pid: Annotated[int, Field(description="The worker process that ran it.")]


TEN_PER_SECOND = RateLimit(count=10, per_seconds=1, burst=2)

STAMP_RATE_LIMITED = JobType(
    name="stamp_rate_limited",
    args=StampArgs,
    result=StampResult,
    description="Say when it started; at most 10 start per second (burst 2), over all workers.",
    timeout_seconds=10.0,
    max_tries=1,
    rate_limit=TEN_PER_SECOND,
)
STAMP_PER_CUSTOMER = JobType(
    name="stamp_per_customer",
    args=StampArgs,
    result=StampResult,
    description="Say when it started; one start per 2 seconds for each tenant and customer.",
    timeout_seconds=10.0,
    max_tries=1,
    rate_limit=RateLimit(count=1, per_seconds=2, key="customer_id"),
)
RATE_LIMITED_TYPES = (STAMP_RATE_LIMITED, STAMP_PER_CUSTOMER)


async def _stamp(job: JobContext, args: StampArgs) -> StampResult:
    return StampResult(started=time.time(), pid=os.getpid())


implements(STAMP_RATE_LIMITED)(_stamp)
implements(STAMP_PER_CUSTOMER)(_stamp)
