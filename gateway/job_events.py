"""Wake waiting requests when a job changes, from PostgreSQL's NOTIFY (see the migrations).

One LISTEN connection per gateway process fans notifications out to in-process waiters. A
notification says `<job id>:<new status>`, so a waiter that only cares about some statuses (a
long-poll: the terminal ones) is not woken by the others. If the connection drops, it
reconnects with backoff and wakes every waiter, so each re-reads its job; waiters also re-read
on a timer, so a missed notification costs latency, never a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass

import asyncpg
import structlog

from shared.db_errors import describe_database_error

log = structlog.get_logger("jobgate.gateway")

CHANNEL = "jobgate_job"
APPLICATION_NAME = "jobgate-gateway-listen"
"""The LISTEN connection in `pg_stat_activity`: one per gateway process, outside its pool."""
_MAX_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True, eq=False)
class _Waiter:
    event: asyncio.Event
    statuses: Collection[str] | None
    """Set the event only for changes to these statuses (None: for every change)."""


class JobEvents:
    """Subscriptions to changes of individual jobs."""

    def __init__(self, dsn: str, *, connect_timeout_seconds: float) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout_seconds
        self._waiters: defaultdict[str, set[_Waiter]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.is_listening = False

    def start(self) -> None:
        """Begin listening in the background."""
        self._task = asyncio.create_task(self._listen_forever(), name="jobgate-job-events")

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def watch(
        self, job_id: uuid.UUID, *, statuses: Collection[str] | None = None
    ) -> AsyncIterator[asyncio.Event]:
        """An event set whenever `job_id` changes while the block runs; with `statuses`, only
        when it changes to one of them (or may have: a notification that does not say)."""
        key, waiter = str(job_id), _Waiter(asyncio.Event(), statuses)
        self._waiters[key].add(waiter)
        try:
            yield waiter.event
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[key]

    def _notify(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        # Before migration 0007 the payload was the bare id; a status-less one wakes everyone.
        job_id, _, status = payload.partition(":")
        for waiter in self._waiters.get(job_id, ()):
            if not status or waiter.statuses is None or status in waiter.statuses:
                waiter.event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            try:
                connection = await asyncpg.connect(
                    self._dsn,
                    timeout=self._connect_timeout,
                    server_settings={"application_name": APPLICATION_NAME},
                )
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("job_events.connect_failed", cause=describe_database_error(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
                continue
            backoff = 0.1
            await self._listen_until_lost(connection)

    async def _listen_until_lost(self, connection: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _conn: lost.set())
        try:
            await connection.add_listener(CHANNEL, self._notify)
            self.is_listening = True
            self._wake_all()  # changes may have happened while we were not listening
            await lost.wait()
            log.warning("job_events.connection_lost")
        finally:
            self.is_listening = False
            if not connection.is_closed():
                await connection.close(timeout=1)
