"""The implementation of `bench_stamp` (see `bench.contracts`), for the bench's workers."""

from __future__ import annotations

import asyncio
import time

from bench.contracts import FLOW_TYPES, STAMP, FlowArgs, StampArgs, StampResult
from worker.binding import implements
from worker.context import JobContext


@implements(STAMP)
async def stamp(job: JobContext, args: StampArgs) -> StampResult:
    """Note the wall-clock time first thing, optionally sleep, and return both times."""
    started = time.time()
    if args.sleep_ms:
        await asyncio.sleep(args.sleep_ms / 1000)
    return StampResult(started_unix=started, finished_unix=time.time())


async def _flow(job: JobContext, args: FlowArgs) -> StampResult:
    """The flow-control bench's job: the same no-op for every type (`bench.flow_controls`)."""
    started = time.time()
    return StampResult(started_unix=started, finished_unix=time.time())


for _flow_type in FLOW_TYPES:
    implements(_flow_type)(_flow)
