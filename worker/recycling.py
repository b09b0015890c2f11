"""Worker recycling: after N jobs or above an RSS limit, take no more jobs, drain and exit 0.

Like Celery's `max_tasks_per_child` and `max_memory_per_child`: a slow leak in job code is cured
by a fresh process, which the supervisor (Docker, systemd, Kubernetes) starts. The job budget
is counted as the worker starts jobs (`worker.loop.JobgateWorker.start_due_jobs`), so a
process never starts more than N: the rest stay on their queues for the next process.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from pathlib import Path

import structlog

log = structlog.get_logger("jobgate.worker")

_STATM = Path("/proc/self/statm")


class JobBudget:
    """How many jobs this process may still start, shared by its ARQ workers (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.started = 0
        self.lock = asyncio.Lock()
        """Held while a worker starts jobs, so two queues cannot both take the last one."""

    @property
    def remaining(self) -> int | None:
        """Jobs left to start; None when there is no limit."""
        return None if self.limit is None else max(self.limit - self.started, 0)

    @property
    def is_spent(self) -> bool:
        """Whether the process has started all the jobs it may."""
        return self.remaining == 0


def rss_mb() -> float:
    """This process's resident memory in MiB (Linux: current; elsewhere: the peak)."""
    try:
        resident_pages = int(_STATM.read_text().split()[1])
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def recycle_when_due(
    budget: JobBudget,
    *,
    max_rss_mb: float | None,
    interval_seconds: float,
    stop: asyncio.Event,
) -> None:
    """Set `stop` once the job budget is spent or memory is above `max_rss_mb`."""
    while True:
        memory = rss_mb()
        if budget.is_spent:
            log.info("worker.recycling", reason="job budget spent", jobs=budget.started)
            break
        if max_rss_mb is not None and memory > max_rss_mb:
            log.info("worker.recycling", reason="memory limit", rss_mb=round(memory, 1))
            break
        await asyncio.sleep(interval_seconds)
    stop.set()
