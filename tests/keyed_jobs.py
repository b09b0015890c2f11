"""Test-only job types with a concurrency key, one per strategy, and their one implementation.

Declared with `JobType(...)`, so they are not in the registry for the whole test session (the
OpenAPI drift test would see their routes): `declared(*KEYED_TYPES)` registers them for one
test, and worker processes load them with `JOBGATE_CONTRACT_MODULES=tests.keyed_contract`
and `JOBGATE_JOB_MODULES=tests.keyed_jobs`. Each run sleeps, then returns when it started and
ended by the worker's clock, so a test can show that two runs of one key never overlapped.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from pydantic import Field

from shared.contracts import ConcurrencyLimit, ConcurrencyStrategy, Contract, JobType
from worker.binding import implements
from worker.context import JobContext


class Customer(Contract):
    id: Annotated[str, Field(max_length=300, description="Whose job it is: the key.")]


class KeyedArgs(Contract):
    customer: Annotated[Customer, Field(description="The customer the job works for.")]
    seconds: Annotated[float, Field(ge=0, le=60, description="How long the run takes.")] = 0.0


class KeyedResult(Contract):
    started: Annotated[float, Field(description="When the run began (Unix time, worker).")]
    ended: Annotated[float, Field(description="When it ended (Unix time, worker).")]


def _keyed(name: str, strategy: ConcurrencyStrategy) -> JobType[KeyedArgs, KeyedResult]:
    return JobType(
        name=name,
        args=KeyedArgs,
        result=KeyedResult,
        description=f"Sleep; at most one per customer at once ({strategy}).",
        max_tries=1,
        timeout_seconds=60.0,
        concurrency=ConcurrencyLimit(key="customer.id", limit=1, strategy=strategy),
    )


KEYED_QUEUE = _keyed("keyed_queue", "queue")
KEYED_LATEST = _keyed("keyed_latest", "cancel_in_progress")
KEYED_ONCE = _keyed("keyed_once", "cancel_newest")
KEYED_TYPES = (KEYED_QUEUE, KEYED_LATEST, KEYED_ONCE)


@implements(KEYED_QUEUE)
@implements(KEYED_LATEST)
@implements(KEYED_ONCE)
async def run_keyed(job: JobContext, args: KeyedArgs) -> KeyedResult:
    started = time.time()
    await asyncio.sleep(args.seconds)
    return KeyedResult(started=started, ended=time.time())
