"""jobgate's own dependencies failing under a job, told apart from the job failing.

An attempt uses PostgreSQL and Redis through jobgate: its progress, its tenant's data, its
circuit breakers, and the runner recording how it ended. When one of those is briefly down
(connections cut, too many clients, a failover), the job did nothing wrong: the attempt must
not use up one of its tries, and the driver's text must not become its `error`.

What counts as the platform's failure, precisely: what jobgate's own helpers raise, which they
mark by raising `DependencyUnavailable` (`database_call`, `redis_call`). An exception job code
raises by itself is the job's, even a driver's error from a database of the job's own: jobgate
cannot tell by its class whose connection failed, and guessing would let a job that always hits
a broken database of its own run forever without using up its tries. (Its text is still cleaned
of driver and SQL text on its way to the job's `error`: see `worker.attempt`.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import structlog
from redis.exceptions import RedisError

from shared.db_errors import describe_database_error, is_outage
from shared.errors import DatabaseUnavailable, DependencyUnavailable, QueueUnavailable

log = structlog.get_logger("jobgate.worker")

T = TypeVar("T")

WRITE_RETRY_FIRST_SECONDS = 0.1
WRITE_RETRY_MAX_SECONDS = 2.0
"""Backoff between tries of an outcome's write while PostgreSQL is unavailable."""


@contextlib.contextmanager
def database_call() -> Iterator[None]:
    """Around a job helper's use of PostgreSQL: an outage comes out as `DatabaseUnavailable`
    (a fixed cause, no driver text); a refused statement (a bug) propagates as it is."""
    try:
        yield
    except DependencyUnavailable:
        raise
    except Exception as exc:
        if not is_outage(exc):
            raise
        raise DatabaseUnavailable(describe_database_error(exc)) from exc


@contextlib.contextmanager
def redis_call() -> Iterator[None]:
    """Around a job helper's use of Redis: its failures come out as `QueueUnavailable`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise QueueUnavailable() from exc


async def until_written(write: Callable[[], Awaitable[T]], *, outcome: str) -> T:
    """`write()`, tried again while PostgreSQL is unavailable, backing off; its result.

    For what the runner records after an attempt (its outcome, or the attempt handed back):
    the attempt is over, and dropping the write would lose a result or run the job again. No
    deadline: the worker takes no new jobs while PostgreSQL is down (`worker.health`), its
    lease on the job is held meanwhile, and a shutdown cancels the wait (the job then runs
    again, as any job cut off by a shutdown). Any other error propagates at once.
    """
    delay = WRITE_RETRY_FIRST_SECONDS
    deferred = False
    while True:
        try:
            result = await write()
        except Exception as exc:
            if not is_outage(exc):
                raise
            if not deferred:
                deferred = True
                log.warning(
                    "job.outcome_deferred", outcome=outcome, cause=describe_database_error(exc)
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, WRITE_RETRY_MAX_SECONDS)
            continue
        if deferred:
            log.info("job.outcome_recorded", outcome=outcome)
        return result
