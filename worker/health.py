"""Pause taking jobs while PostgreSQL does not answer: a job that cannot be recorded must not run.

Without the pause, a worker would pick a job, fail to claim its row and leave ARQ to drop it
(the reconciler would restore it later, once PostgreSQL is back). With it, jobs simply stay
on their queues during the outage and start within one check of PostgreSQL answering again.
Jobs already running carry on; if their outcome cannot be recorded, their row stays `running`
and the reconciler hands them out again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import asyncpg
import structlog

from shared.db_errors import describe_database_error
from worker.loop import WakeableWorker

log = structlog.get_logger("jobgate.worker")


APPLICATION_NAME = "jobgate-worker-health"
"""The probe's connection in `pg_stat_activity`: one per worker process, outside its pool."""


class DatabaseProbe:
    """`SELECT 1` on one dedicated connection, reopened after a failure; bounded in time.

    Not a pooled connection: a pool busy with jobs (or exhausted) must not read as an outage.
    """

    def __init__(self, dsn: str, *, timeout_seconds: float) -> None:
        self._dsn = dsn
        self._timeout = timeout_seconds
        self._connection: asyncpg.Connection | None = None
        self.last_failure: str | None = None
        """Why the last check failed ("too many connections (SQLSTATE 53300)"), for the log."""

    async def is_reachable(self) -> bool:
        """Whether PostgreSQL answered within the timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                if self._connection is None or self._connection.is_closed():
                    self._connection = await asyncpg.connect(
                        self._dsn,
                        timeout=self._timeout,
                        server_settings={"application_name": APPLICATION_NAME},
                    )
                await self._connection.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # TimeoutError is an OSError; so are refused and reset connections.
            self.last_failure = describe_database_error(exc)
            log.debug("health.database_check_failed", cause=self.last_failure)
            self.close()
            return False
        self.last_failure = None
        return True

    def close(self) -> None:
        """Drop the connection without waiting on a server that may not answer."""
        if self._connection is not None:
            with contextlib.suppress(Exception):  # it is being thrown away either way
                self._connection.terminate()
            self._connection = None


async def pause_while_database_down(
    workers: Sequence[WakeableWorker], probe: DatabaseProbe, *, interval_seconds: float
) -> None:
    """Check PostgreSQL every `interval_seconds`; let `workers` pick jobs only while it answers."""
    is_up = True
    try:
        while True:
            reachable = await probe.is_reachable()
            if reachable != is_up:
                is_up = reachable
                for worker in workers:
                    worker.set_taking_jobs(reachable)
                if reachable:
                    log.info("health.database_back", action="taking jobs again")
                else:
                    log.warning(
                        "health.database_down", action="taking no jobs", cause=probe.last_failure
                    )
            await asyncio.sleep(interval_seconds)
    finally:
        probe.close()
