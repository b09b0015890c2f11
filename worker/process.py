"""`jobgate worker`: one process serving several queues, one ARQ worker per queue.

Besides the workers, the process runs two monitors: one pauses taking jobs while PostgreSQL
does not answer (`worker.health`), one drains and exits after N jobs or above an RSS limit
(`worker.recycling`); with `JOBGATE_WORKER_HEARTBEAT_FILE` set, it also touches that file for
liveness probes (`worker.heartbeat`). SIGTERM, SIGINT and recycling all stop the same way: no
new jobs, running ones get the grace period, exit 0.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.contracts import load_contracts
from shared.db import create_engine, libpq_url
from shared.heap import freeze_startup_heap
from shared.redis import create_redis
from shared.settings import Settings
from worker.announce import announce_while_running
from worker.health import DatabaseProbe, pause_while_database_down
from worker.heartbeat import beat_forever
from worker.loop import JobgateWorker, stop_worker
from worker.metrics import serve_metrics
from worker.recycling import JobBudget, recycle_when_due
from worker.settings import worker_options

log = structlog.get_logger("jobgate.worker")


def build_workers(
    settings: Settings,
    queues: list[str] | None = None,
    *,
    engine: AsyncEngine,
    budget: JobBudget | None = None,
) -> list[JobgateWorker]:
    """ARQ workers for `queues` (default: the configured ones, else every registered queue),
    all on `engine`'s pool: one PostgreSQL connection budget per process, whatever it serves.

    Call it inside the running event loop: an ARQ worker binds to the loop it is built in.
    """
    registry = load_contracts(settings.contract_modules)
    chosen = queues or settings.worker_queues or registry.queues()
    shared_budget = budget or JobBudget(settings.worker_max_jobs_per_process)
    return [
        JobgateWorker(
            **worker_options(settings, queue=queue, registry=registry, engine=engine),
            # Our client, not ARQ's: it bounds every read (ARQ's has no socket timeout).
            redis_pool=create_redis(settings),
            handle_signals=False,
            budget=shared_budget,
        )
        for queue in chosen
    ]


def _start_monitors(
    settings: Settings, workers: list[JobgateWorker], budget: JobBudget, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    probe = DatabaseProbe(
        libpq_url(settings.require_database_url()),
        timeout_seconds=settings.worker_health_interval_seconds,
    )
    return [
        asyncio.create_task(
            pause_while_database_down(
                workers, probe, interval_seconds=settings.worker_health_interval_seconds
            ),
            name="jobgate-database-health",
        ),
        asyncio.create_task(
            recycle_when_due(
                budget,
                max_rss_mb=settings.worker_max_rss_mb,
                interval_seconds=settings.worker_poll_delay_seconds,
                stop=stop,
            ),
            name="jobgate-recycling",
        ),
    ]


def _start_heartbeat(settings: Settings) -> asyncio.Task[None] | None:
    if settings.worker_heartbeat_file is None:
        return None
    return asyncio.create_task(
        beat_forever(
            settings.worker_heartbeat_file, interval_seconds=settings.worker_health_interval_seconds
        ),
        name="jobgate-heartbeat",
    )


async def _until_stop_or_crash(stop: asyncio.Event, mains: list[asyncio.Task[None]]) -> bool:
    """Wait for a stop request (True) or for a worker to die by itself (False)."""
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([stopping, *mains], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    for main in mains:
        if main.done() and not main.cancelled() and main.exception() is not None:
            log.error("worker.crashed", exc_info=main.exception())
    return not any(main.done() for main in mains)


async def run_workers(settings: Settings, queues: list[str] | None = None) -> bool:
    """Run workers for `queues` until SIGINT, SIGTERM or recycling is due, then drain them.

    Returns False if a worker died by itself (the process should exit non-zero).
    """
    # Named as a lone ARQ worker's own pool is (`worker.settings`).
    engine = create_engine(settings, application_name="jobgate-worker")
    try:
        return await _run_workers(settings, queues, engine)
    finally:
        # Only now: every queue's worker has stopped using it (its on_shutdown leaves it).
        await engine.dispose()


async def _run_workers(settings: Settings, queues: list[str] | None, engine: AsyncEngine) -> bool:
    budget = JobBudget(settings.worker_max_jobs_per_process)
    workers = build_workers(settings, queues, engine=engine, budget=budget)
    freeze_startup_heap()  # job modules, bindings and workers are built
    serve_metrics(settings.worker_metrics_port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    mains = [asyncio.create_task(worker.main()) for worker in workers]
    # Ends by itself once every worker has stopped (after the drain): see worker.announce.
    announcing = asyncio.create_task(announce_while_running(settings, workers, mains, budget))
    monitors = _start_monitors(settings, workers, budget, stop)
    heartbeat = _start_heartbeat(settings)
    log.info("worker.started", queues=[worker.queue_name for worker in workers])
    is_clean = await _until_stop_or_crash(stop, mains)
    for monitor in monitors:
        monitor.cancel()
    await asyncio.gather(*monitors, return_exceptions=True)
    log.info("worker.stopping", grace_seconds=settings.worker_shutdown_grace_seconds)
    await asyncio.gather(
        *(
            stop_worker(worker, main, settings.worker_shutdown_grace_seconds)
            for worker, main in zip(workers, mains, strict=True)
        )
    )
    if heartbeat is not None:
        # Only now: a worker draining its jobs is still alive for a liveness probe.
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
    await announcing
    log.info("worker.stopped", jobs_started=budget.started)
    return is_clean
