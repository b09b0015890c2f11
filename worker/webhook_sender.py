"""Sending webhooks: every worker claims due deliveries (`shared.webhooks.deliveries`), POSTs them.

Each claimed delivery is sent on its own as soon as a slot is free (see `Sender`: bounded
in-flight deliveries, capped per tenant and per host), outside any transaction, each attempt
bounded by `webhooks.timeout_seconds`; the claim's lease outlasts that, so no other worker
sends the same delivery meanwhile. Redirects are not followed and answer bodies are not read:
only the status code counts. Destinations are checked where the connection is made
(`worker.webhook_transport`): a refused one fails its delivery at once, for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections import Counter
from dataclasses import dataclass

import httpx
import structlog
from opentelemetry.trace import Span, SpanKind, StatusCode
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs.view import JobOut
from shared.settings import WebhookSettings
from shared.tracing import TRACEPARENT, continue_trace, current_traceparent
from shared.webhooks import deliveries
from shared.webhooks.deliveries import Outgoing
from shared.webhooks.destinations import DestinationPolicy
from shared.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from worker.webhook_transport import DestinationRefused, GuardedTransport

log = structlog.get_logger("jobgate.worker")

LEASE_MARGIN_SECONDS = 30.0
"""How much longer than one attempt a claim holds a delivery away from other workers."""
USER_AGENT = "jobgate-webhooks/1"


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: the answer's status code, or why there was none."""

    status_code: int | None
    error: str | None
    is_final: bool = False
    """No later attempt can do better (a refused destination): fail the delivery now."""


def render(outgoing: Outgoing) -> tuple[bytes, dict[str, str]]:
    """The exact body and headers of one delivery attempt."""
    body = JobOut.of(outgoing.job, outgoing.deliveries).model_dump_json().encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(outgoing.secret, body),
        DELIVERY_HEADER: str(outgoing.delivery.id),
        EVENT_HEADER: f"job.{outgoing.job.status}",
    }
    return body, headers


async def post(http: httpx.AsyncClient, outgoing: Outgoing, timeout_seconds: float) -> Attempt:
    """POST one delivery; never raises for the receiver's failures."""
    job = outgoing.job
    with (
        structlog.contextvars.bound_contextvars(
            job_id=str(job.id), job_name=job.name, tenant_id=str(job.tenant_id)
        ),
        continue_trace(
            f"webhook {job.name}",
            job.traceparent,
            kind=SpanKind.CLIENT,
            attributes={"jobgate.job.id": str(job.id), "jobgate.job.name": job.name},
        ) as span,
    ):
        attempt = await _post(http, outgoing, timeout_seconds)
        if span is not None:
            _annotate(span, attempt)
        return attempt


async def _post(http: httpx.AsyncClient, outgoing: Outgoing, timeout_seconds: float) -> Attempt:
    body, headers = render(outgoing)
    traceparent = current_traceparent()
    if traceparent is not None:  # the receiver may continue the job's trace
        headers[TRACEPARENT] = traceparent
    try:
        async with (
            asyncio.timeout(timeout_seconds),
            http.stream("POST", outgoing.delivery.url, content=body, headers=headers) as response,
        ):
            code = response.status_code
    except DestinationRefused as exc:
        return Attempt(status_code=None, error=f"destination refused: {exc}", is_final=True)
    except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
        return _failed(exc)
    return Attempt(status_code=code, error=None if 200 <= code < 300 else _unanswered(code))


def _unanswered(code: int) -> str:
    if 300 <= code < 400:  # following it could lead anywhere, the check notwithstanding
        return f"HTTP {code} (redirects are not followed)"
    return f"HTTP {code}"


def _annotate(span: Span, attempt: Attempt) -> None:
    if attempt.status_code is not None:
        span.set_attribute("http.response.status_code", attempt.status_code)
    if attempt.error is not None:
        span.set_status(StatusCode.ERROR, attempt.error)


def _failed(exc: BaseException) -> Attempt:
    message = str(exc)
    name = type(exc).__name__
    return Attempt(status_code=None, error=f"{name}: {message}" if message else name)


class Sender:
    """Sends due deliveries, each as soon as a slot is free, never waiting for a whole batch.

    At most `max_in_flight` deliveries are on their way at once, at most
    `max_in_flight_per_tenant` of one tenant and `max_in_flight_per_host` to one host, so a
    tenant whose receivers hang holds a few slots of its own while every other tenant's
    deliveries go on. Each attempt is recorded on its own as soon as it ends.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        settings: WebhookSettings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._http = http
        self._settings = settings
        self._sending: set[asyncio.Task[None]] = set()
        self._tenants: Counter[uuid.UUID] = Counter()
        self._hosts: Counter[str] = Counter()
        self._slot_freed = asyncio.Event()

    def capacity(self) -> deliveries.Capacity:
        """What this sender may claim now, given what it is sending."""
        return deliveries.Capacity(
            slots=self._settings.max_in_flight - len(self._sending),
            per_tenant=self._settings.max_in_flight_per_tenant,
            per_host=self._settings.max_in_flight_per_host,
            tenants=dict(self._tenants),
            hosts=dict(self._hosts),
        )

    async def claim_and_send(self) -> int:
        """Claim what fits in the free slots and start sending it; how many were claimed."""
        capacity = self.capacity()
        if capacity.slots <= 0:
            return 0
        async with self._sessionmaker() as session:
            claimed = await deliveries.claim_due(
                session,
                capacity=capacity,
                lease_seconds=self._settings.timeout_seconds + LEASE_MARGIN_SECONDS,
            )
            await session.commit()
        for outgoing in claimed:
            self._start(outgoing)
        return len(claimed)

    def _start(self, outgoing: Outgoing) -> None:
        self._tenants[outgoing.job.tenant_id] += 1
        self._hosts[outgoing.host] += 1
        task = asyncio.create_task(self._send(outgoing), name="jobgate-webhook")
        self._sending.add(task)
        task.add_done_callback(lambda done: self._finished(outgoing, done))

    def _finished(self, outgoing: Outgoing, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._tenants -= Counter({outgoing.job.tenant_id: 1})  # `-=` drops counts that reach 0
        self._hosts -= Counter({outgoing.host: 1})
        self._slot_freed.set()

    async def _send(self, outgoing: Outgoing) -> None:
        try:
            attempt = await post(self._http, outgoing, self._settings.timeout_seconds)
        except Exception as exc:  # recorded as a failure, so a delivery that always breaks
            attempt = _failed(exc)  # the sender ends `failed` instead of coming back forever
        try:
            await self._record(outgoing, attempt)
        except (SQLAlchemyError, OSError) as exc:  # its lease ends and it is sent again
            log.warning(
                "webhook.record_failed",
                delivery_id=str(outgoing.delivery.id),
                error=type(exc).__name__,
            )

    async def _record(self, outgoing: Outgoing, attempt: Attempt) -> None:
        async with self._sessionmaker() as session:
            status = await deliveries.record_attempt(
                session,
                delivery=outgoing.delivery,
                status_code=attempt.status_code,
                error=attempt.error,
                settings=self._settings,
                is_final=attempt.is_final,
            )
            await session.commit()
        log.info(
            "webhook.attempted",
            delivery_id=str(outgoing.delivery.id),
            job_id=str(outgoing.job.id),
            job_name=outgoing.job.name,
            tenant_id=str(outgoing.job.tenant_id),
            status_code=attempt.status_code,
            outcome=status,
            error=attempt.error if attempt.is_final else None,
        )

    async def run_forever(self) -> None:
        """Claim whenever a slot frees or the poll interval passes; stop sending when cancelled.

        Deliveries cut off by the cancellation keep their lease and are sent again after it.
        """
        try:
            while True:
                self._slot_freed.clear()  # before claiming: a slot freed meanwhile wakes us
                requested = self.capacity().slots
                try:
                    claimed = await self.claim_and_send()
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("webhook.poll_failed", error=type(exc).__name__)
                    claimed = 0
                if 0 < requested == claimed:  # every free slot was taken: more may be due now
                    continue
                await self._wait_for_slot(forever=requested == 0)
        finally:
            for task in self._sending:
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _wait_for_slot(self, *, forever: bool) -> None:
        """Until a slot frees (its tenant or host may take more), or the poll interval passes."""
        timeout_seconds = None if forever else self._settings.poll_interval_seconds
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_seconds):
                await self._slot_freed.wait()


def http_client(
    settings: WebhookSettings, *, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncClient:
    """The client webhooks are sent with: destinations checked, no redirects, no proxies.

    An environment proxy (`trust_env`) would make the connection on our behalf, past the check.
    The pool has a connection for every delivery in flight, so a request never waits for one
    that a hanging receiver holds.
    """
    limits = httpx.Limits(
        max_connections=settings.max_in_flight,
        max_keepalive_connections=min(settings.max_in_flight, 20),
    )
    transport = GuardedTransport(
        DestinationPolicy.of(settings), ssl_context=ssl_context, limits=limits
    )
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        timeout=settings.timeout_seconds,
        trust_env=False,
    )


async def deliver_forever(
    sessionmaker: async_sessionmaker[AsyncSession], settings: WebhookSettings
) -> None:
    """Send due webhooks until cancelled; every worker runs this, claims never overlap."""
    async with http_client(settings) as http:
        await Sender(sessionmaker, http, settings).run_forever()
