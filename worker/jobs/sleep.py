"""`sleep`: wait, reporting progress each step."""

import asyncio
import time

from shared.contracts import SLEEP, SleepArgs, SleepResult
from worker.binding import implements
from worker.context import JobContext


@implements(SLEEP)
async def sleep(job: JobContext, args: SleepArgs) -> SleepResult:
    """Sleep `seconds` in `steps` equal parts; cancellation interrupts the current part."""
    started = time.monotonic()
    step_seconds = args.seconds / args.steps
    for step in range(1, args.steps + 1):
        await asyncio.sleep(step_seconds)
        await job.progress(step, args.steps, f"slept {step} of {args.steps} steps")
    return SleepResult(slept=round(time.monotonic() - started, 3))
