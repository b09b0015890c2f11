"""`jobgate worker`: one process serving several queues, one ARQ worker per queue."""

from __future__ import annotations

import asyncio
import signal

import structlog
from arq.worker import Worker
from prometheus_client import start_http_server

from shared.contracts import load_contracts
from shared.settings import Settings
from worker.settings import worker_options

log = structlog.get_logger("jobgate.worker")


def build_workers(settings: Settings, queues: list[str] | None = None) -> list[Worker]:
    """ARQ workers for `queues` (default: the configured ones, else every registered queue).

    Call it inside the running event loop: an ARQ worker binds to the loop it is built in.
    """
    registry = load_contracts(settings.contract_modules)
    chosen = queues or settings.worker_queues or registry.queues()
    return [
        Worker(**worker_options(settings, queue=queue, registry=registry), handle_signals=False)
        for queue in chosen
    ]


async def stop_worker(worker: Worker, main: asyncio.Task[None], grace_seconds: float) -> None:
    """Take no new jobs, let running ones finish for up to `grace_seconds`, then stop.

    Jobs still running at the limit are cancelled; ARQ leaves them on their queue, so they
    run again (their rows say `running` and are claimed afresh).
    """
    worker.allow_pick_jobs = False
    # Let the poll loop end by itself (ARQ's burst exit: it returns once its tasks are done).
    # Cancelling it mid-iteration can interrupt redis-py's UNWATCH in ARQ's `start_jobs` and
    # leave a pipeline holding a connection ("Unclosed client session").
    worker.burst, worker.max_burst_jobs = True, 0
    await asyncio.wait([main], timeout=grace_seconds)
    main.cancel()
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(main, *worker.tasks.values(), return_exceptions=True)
    # ARQ's close() gathers its tasks again and would re-raise their cancellation.
    worker.tasks.clear()
    await worker.close()


async def run_workers(settings: Settings, queues: list[str] | None = None) -> None:
    """Run workers for `queues` until SIGINT or SIGTERM, then stop them."""
    workers = build_workers(settings, queues)
    if settings.worker_metrics_port is not None:
        start_http_server(settings.worker_metrics_port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    mains = [asyncio.create_task(worker.main()) for worker in workers]
    log.info("worker.started", queues=[worker.queue_name for worker in workers])
    await stop.wait()
    log.info("worker.stopping", grace_seconds=settings.worker_shutdown_grace_seconds)
    await asyncio.gather(
        *(
            stop_worker(worker, main, settings.worker_shutdown_grace_seconds)
            for worker, main in zip(workers, mains, strict=True)
        )
    )
    log.info("worker.stopped")
