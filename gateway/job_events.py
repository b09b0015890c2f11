"""Wake waiting requests when a job changes, from PostgreSQL's NOTIFY (see the migration).

One LISTEN connection per gateway process fans notifications out to in-process waiters. If
the connection drops, it reconnects with backoff and wakes every waiter, so each re-reads its
job; waiters also re-read on a timer, so a missed notification costs latency, never a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import asyncpg
import structlog

log = structlog.get_logger("jobgate.gateway")

CHANNEL = "jobgate_job"
_MAX_BACKOFF_SECONDS = 5.0


class JobEvents:
    """Subscriptions to changes of individual jobs."""

    def __init__(self, dsn: str, *, connect_timeout_seconds: float) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout_seconds
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
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
    async def watch(self, job_id: uuid.UUID) -> AsyncIterator[asyncio.Event]:
        """An event set whenever `job_id` changes while the block runs."""
        key, event = str(job_id), asyncio.Event()
        self._waiters[key].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[key]

    def _notify(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        for event in self._waiters.get(payload, ()):
            event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            try:
                connection = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("job_events.connect_failed", error=type(exc).__name__)
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
