"""`arq worker.WorkerSettings`: ARQ's command line runs the same worker process as `jobgate worker`.

ARQ's CLI imports `WorkerSettings`, builds its own `arq.worker.Worker` from the class's
attributes and runs it. Left to itself, that plain Worker would take jobs through ARQ's loop,
which jobgate cannot make safe from the outside: it marks each job in progress for ARQ's longest
function timeout (days), so a worker killed before its first lease renewal blocks its job that
long; it logs each job's priority offset as a delay of decades; and it serves one queue,
unannounced, without `/metrics`.

So the Worker ARQ builds only hosts jobgate's: its start-up hook runs
`worker.process.run_workers` to the end. That is the whole `jobgate worker` process: every
configured queue (default: all of them, `maintenance` included), taken by the take script with
short leases, woken on submit, claimed together, announced, with `/metrics`, a pause while
PostgreSQL is down and a drain on SIGTERM (its signal handlers replace ARQ's). Once it has
drained, the hook ends ARQ's main task before ARQ's own poll loop ever starts, and ARQ closes as
usual. One runtime behind both commands, so one set of guarantees and one set of tests.

Of ARQ's options, `--check` works (it reads the first queue's health key, which that queue's
worker keeps writing); `--burst` and `--watch` steer ARQ's loop, which never runs, and do
nothing here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from shared.contracts import load_contracts
from shared.logs import configure_logging
from shared.settings import Settings, exit_on_settings_problems, get_settings
from worker.settings import worker_options

Hook = Callable[[dict[str, Any]], Awaitable[None]]


def _run_jobgate_worker(settings: Settings, queues: list[str]) -> Hook:
    async def on_startup(ctx: dict[str, Any]) -> None:
        from worker.process import run_workers  # it imports this package's settings module

        # ARQ's CLI gave the `arq` logger a handler of its own after importing this module;
        # from here on every line goes through ours, once.
        configure_logging(settings)
        if not await run_workers(settings, queues):
            raise SystemExit(1)  # a worker died by itself: exit non-zero, as `jobgate worker`
        # Drained: end ARQ's main task here, before its own poll loop starts; ARQ then closes
        # its Worker (health key, Redis pool) and the command exits 0.
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 (ARQ awaits this hook inside its main task)
        task.cancel()
        await asyncio.sleep(0)

    return on_startup


def build_worker_settings() -> type:
    """The class `arq worker.WorkerSettings` loads: ARQ builds its Worker from its attributes.

    A missing server URL is found while the queues' options are built, not when the settings
    are read: both end the process with the message, not a traceback.
    """
    with exit_on_settings_problems():
        return _build_worker_settings(get_settings())


def _build_worker_settings(settings: Settings) -> type:
    configure_logging(settings)
    # Until the start-up hook reinstates ours, ARQ's first lines (its start and Redis info) go
    # through the handler its CLI installs next, not through both.
    logging.getLogger("arq").propagate = False
    # The event loop `jobgate worker` runs on; ARQ's Worker creates its loop from the policy.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    registry = load_contracts(settings.contract_modules)
    queues = settings.worker_queues or registry.queues()
    options = [worker_options(settings, queue=queue, registry=registry) for queue in queues]
    first = options[0]
    return type(
        "WorkerSettings",
        (),
        {
            # What ARQ needs to build its Worker: functions (every served type, so its first
            # line lists them), a queue, Redis and the first queue's health key (for
            # `--check`); it never takes a job of its own.
            "functions": [function for served in options for function in served["functions"]],
            "queue_name": first["queue_name"],
            "redis_settings": first["redis_settings"],
            "health_check_key": first["health_check_key"],
            "job_serializer": first["job_serializer"],
            "job_deserializer": first["job_deserializer"],
            "on_startup": _run_jobgate_worker(settings, queues),
        },
    )
