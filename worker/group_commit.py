"""Group commit: writes asked for while one is under way go out together in the next one.

A worker finishing hundreds of jobs a second would otherwise pay one statement (and one
PostgreSQL commit) or one Redis round trip per job. With `GroupCommit`, the first caller's
write starts at once (no added latency on an idle worker) and callers arriving meanwhile wait
for the next write, which carries all of them: under load, writes grow instead of queueing.

Each caller still waits for its own item to be written before going on, so what follows a
write (ending the job in Redis after its row is recorded) keeps its order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Funnel single items into batched calls of `write(items) -> one result per item`."""

    def __init__(
        self, write: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_batch: int = 500
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Write `item` with whatever else is waiting; its result, or the write's exception."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="jobgate-group-commit")
        return await future

    async def _write_pending(self) -> None:
        # One turn of the loop first: jobs ending in the same turn join this write.
        await asyncio.sleep(0)
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():  # its caller may have been cancelled meanwhile
                        future.set_exception(exc)
                continue
            except BaseException:
                # The writer itself is going (cancelled at shutdown): nobody may wait forever.
                for _, future in [*batch, *self._pending]:
                    future.cancel()
                self._pending.clear()
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
