"""`jobgate worker --processes N`: N worker processes under one supervisor (Celery's prefork).

One Python process runs on one core; job code that burns CPU, and the per-job bookkeeping,
scale past that only with more processes. The supervisor starts N `jobgate worker` children
(each a complete worker: own event loop, connections, leases), and:

- SIGTERM / SIGINT are passed on; each child drains (finishes or hands back its jobs within
  the grace period) and the supervisor exits once all have, 0 if all exited cleanly.
- A child that exits 0 by itself was recycled (job count or RSS limit): it is replaced at once.
  A child that crashed is replaced after a back-off (doubling up to 30 s, reset by a child that
  lived a minute), so a worker that cannot start does not spin.
- Child `i` serves metrics on `JOBGATE_WORKER_METRICS_PORT + i` (unless metrics are off), so
  every child can be scraped.
- With `JOBGATE_WORKER_HEARTBEAT_FILE`, child `i` beats `<file>.<i>` and the supervisor touches
  `<file>` only while every child's beat is fresh: the container's liveness probe (which reads
  `<file>`) fails when any child is stuck, not only when all are.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import structlog

from shared.settings import Settings
from worker.heartbeat import beat_forever, check

log = structlog.get_logger("jobgate.worker")

FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
STABLE_SECONDS = 60.0
"""A child that lived this long resets its slot's back-off."""


def child_argv(queues: list[str] | None) -> list[str]:
    """The command of one child: `jobgate worker` with the same queues, in this interpreter."""
    argv = [sys.executable, "-m", "cli", "worker"]
    for queue in queues or []:
        argv += ["--queue", queue]
    return argv


CHILD_STALE_INTERVALS = 5
"""A child whose beat is this many health intervals old counts as stuck."""


def child_env(settings: Settings, index: int) -> dict[str, str]:
    """The child's environment: ours, with its own metrics port and heartbeat file."""
    env = dict(os.environ)
    if settings.worker_metrics_port:  # None or 0: no metrics server, nothing to spread
        env["JOBGATE_WORKER_METRICS_PORT"] = str(settings.worker_metrics_port + index)
    heartbeat = child_heartbeat(settings, index)
    if heartbeat is not None:
        env["JOBGATE_WORKER_HEARTBEAT_FILE"] = str(heartbeat)
    return env


def child_heartbeat(settings: Settings, index: int) -> Path | None:
    """Child `index`'s heartbeat file, next to the supervisor's."""
    path = settings.worker_heartbeat_file
    return None if path is None else path.with_name(f"{path.name}.{index}")


async def _beat_while_children_beat(settings: Settings, processes: int, path: Path) -> None:
    """Touch `path` (via `beat_forever`'s file handling) only while every child beats."""
    interval = settings.worker_health_interval_seconds
    children = [child_heartbeat(settings, index) for index in range(processes)]
    stale_after = CHILD_STALE_INTERVALS * interval

    def all_alive() -> bool:
        return all(
            child is not None and check(child, stale_after_seconds=stale_after) is None
            for child in children
        )

    await beat_forever(path, interval_seconds=interval, when=all_alive)


class Slot:
    """One child position: its current process and its crash back-off."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.backoff = FIRST_BACKOFF_SECONDS


async def _run_slot(
    slot: Slot, settings: Settings, queues: list[str] | None, stop: asyncio.Event
) -> bool:
    """Keep one child running until `stop`; True if its last exit was clean."""
    while not stop.is_set():
        slot.process = await asyncio.create_subprocess_exec(
            *child_argv(queues), env=child_env(settings, slot.index)
        )
        slot.started_at = time.monotonic()
        log.info("worker.child_started", slot=slot.index, pid=slot.process.pid)
        code = await slot.process.wait()
        if stop.is_set():
            # Killed by the forwarded signal itself: it was still starting (its handlers not
            # yet installed), so it held no jobs. A started worker drains and exits 0.
            return code in (0, -signal.SIGTERM, -signal.SIGINT)
        if code == 0:
            log.info("worker.child_recycled", slot=slot.index)
            continue
        if time.monotonic() - slot.started_at >= STABLE_SECONDS:
            slot.backoff = FIRST_BACKOFF_SECONDS
        log.error("worker.child_crashed", slot=slot.index, exit_code=code, restart_in=slot.backoff)
        try:
            await asyncio.wait_for(stop.wait(), timeout=slot.backoff)
            return False  # stopped while backing off: this slot ends unclean
        except TimeoutError:
            slot.backoff = min(slot.backoff * 2, MAX_BACKOFF_SECONDS)
    return True  # stopped before (re)starting a child


async def supervise(settings: Settings, queues: list[str] | None, processes: int) -> bool:
    """Run `processes` worker children until SIGTERM/SIGINT; True if all stopped cleanly."""
    stop = asyncio.Event()
    slots = [Slot(index) for index in range(processes)]

    def forward(signum: int) -> None:
        stop.set()
        for slot in slots:
            if slot.process is not None and slot.process.returncode is None:
                slot.process.send_signal(signum)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, forward, signum)
    log.info("worker.supervisor_started", processes=processes)
    heartbeat = (
        None
        if settings.worker_heartbeat_file is None
        else asyncio.create_task(
            _beat_while_children_beat(settings, processes, settings.worker_heartbeat_file)
        )
    )
    results = await asyncio.gather(*(_run_slot(slot, settings, queues, stop) for slot in slots))
    if heartbeat is not None:
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
    log.info("worker.supervisor_stopped", clean=all(results))
    return all(results)
