"""`AsyncJobgateClient`: jobgate's job API over an `httpx.AsyncClient` (asyncio, trio)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self, Unpack

import httpx

from jobgate_client import protocol
from jobgate_client.errors import JobWaitTimeout
from jobgate_client.models import Attempt, Job, JobPage, JobRequest, JobStatus, SubmitOptions


class AsyncJobgateClient:
    """Submit jobs to jobgate and read them back, without blocking the event loop.

    Every error answer raises `JobgateError` (with the problem document's fields); network
    failures raise httpx's `TransportError`. Use it as an async context manager, or await
    `aclose()`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = protocol.DEFAULT_TIMEOUT_SECONDS,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        """`base_url` and `api_key` default to `JOBGATE_URL` and `JOBGATE_API_KEY`.

        `timeout` bounds each request (a long-poll gets its wait on top). Pass `http_client`
        for proxies, custom TLS or transports (it is used as it is, and not closed here).
        """
        url, key = protocol.settings_from_env(base_url, api_key)
        self._base_url = url.rstrip("/")  # may hold a path prefix (a gateway behind a proxy)
        self._headers = protocol.auth_headers(key)
        self._timeout = timeout
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()

    async def submit(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Job:
        """Submit one job of type `name`; the new job (or, on an idempotent replay, the original).

        Options (`priority`, `delay_seconds`, `run_at`, `start_by`, `start_within_seconds`,
        `max_tries`, `timeout_seconds`, `labels`, `webhook_url`) default to the job type's
        declaration.
        """
        return protocol.read_job(
            await self._send(protocol.submit_call(name, args, options, idempotency_key))
        )

    async def submit_batch(self, name: str, jobs: Iterable[JobRequest]) -> builtins.list[Job]:
        """Submit up to 1000 jobs of one type, all or nothing: `[{"args": ..., "options": ...}]`."""
        return protocol.read_batch(await self._send(protocol.batch_call(name, jobs)))

    async def get(self, job_id: str, *, wait: float = 0) -> Job:
        """Read a job; with `wait` (≤ 60 s), answer as soon as it is finished, or after `wait`."""
        return protocol.read_job(await self._send(protocol.get_call(job_id, wait)))

    # The deadline sets each long-poll's `?wait=`: jobgate answers on time, and no request is
    # cut off mid-way as an outer `asyncio.timeout` would.
    async def wait(self, job_id: str, timeout: float = 60) -> Job:  # noqa: ASYNC109
        """The job once it is finished (long-polling); `JobWaitTimeout` if not within `timeout`."""
        deadline = time.monotonic() + timeout
        job = await self.get(job_id, wait=min(timeout, protocol.MAX_WAIT_SECONDS))
        while not job.is_terminal:
            wait = protocol.next_wait(deadline)
            if wait is None:
                raise JobWaitTimeout(job, timeout)
            job = await self.get(job_id, wait=wait)
        return job

    async def list(
        self,
        *,
        status: Iterable[JobStatus] = (),
        name: Iterable[str] = (),
        labels: Mapping[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of the caller's jobs, newest first; `labels` must all match."""
        call = protocol.list_call(
            status=status,
            name=name,
            labels=labels,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        )
        return protocol.read_page(await self._send(call))

    async def attempts(self, job_id: str) -> builtins.list[Attempt]:
        """The job's attempts so far, oldest first: worker, start, end, outcome and error."""
        return protocol.read_attempts(await self._send(protocol.attempts_call(job_id)))

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: a waiting one is `cancelled` at once, a running one is being aborted."""
        return protocol.read_job(await self._send(protocol.cancel_call(job_id)))

    async def retry(self, job_id: str) -> Job:
        """Run a `failed`, `cancelled` or `expired` job again, as a new job (linked by
        `retry_of`)."""
        return protocol.read_job(await self._send(protocol.retry_call(job_id)))

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: protocol.Call) -> httpx.Response:
        return await self._http.request(
            call.method,
            self._base_url + call.path,
            json=call.json,
            params=call.params,
            headers=self._headers | call.headers,
            timeout=protocol.timeout_for(call, self._timeout),
        )
