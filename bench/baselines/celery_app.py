"""The Celery baseline's app: Redis broker and result backend, acks_late, two no-op tasks.

Runs only inside the bench's own virtualenv (`bench/.venv-celery`, see `celery_setup`): Celery's
redis extra wants a redis-py that ARQ's pin excludes, so the project's environment cannot hold it.
"""

from __future__ import annotations

import os
import time

from celery import Celery  # type: ignore[import-not-found]  # only in bench/.venv-celery

app = Celery(
    "bench",
    broker=os.environ["BENCH_CELERY_REDIS_URL"],
    backend=os.environ["BENCH_CELERY_REDIS_URL"],
)
app.conf.update(
    task_acks_late=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop() -> None:
    """Do nothing."""


@app.task(name="bench.stamp")  # type: ignore[untyped-decorator]
def stamp() -> float:
    """The wall-clock time as the task starts."""
    return time.time()
