"""The implementation of `record_run` (see `tests.e2e.run_log_contract`), for test workers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.e2e.run_log_contract import RECORD_RUN, RecordRunArgs, RecordRunResult
from worker.binding import implements
from worker.context import JobContext


def append_line(path: Path, line: str) -> None:
    # One short O_APPEND write per run: lines from concurrent jobs never interleave.
    with path.open("a") as log:
        log.write(line + "\n")


@implements(RECORD_RUN)
async def record_run(job: JobContext, args: RecordRunArgs) -> RecordRunResult:
    """Note the job id in this worker's own file, then sleep `sleep_ms`."""
    append_line(Path(args.log_dir) / f"{os.getpid()}.log", str(job.job_id))
    await asyncio.sleep(args.sleep_ms / 1000)
    return RecordRunResult(pid=os.getpid())
