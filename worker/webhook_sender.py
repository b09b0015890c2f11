"""Sending webhooks: every worker claims due deliveries (see `shared.webhooks`) and POSTs them.

A claimed batch is sent concurrently, outside any transaction, each attempt bounded by
`webhooks.timeout_seconds`; the claim's lease outlasts that, so no other worker sends the
same delivery meanwhile. Redirects are not followed and answer bodies are not read: only the
status code counts. Destinations are checked where the connection is made
(`worker.webhook_transport`): a refused one fails its delivery at once, for good.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import httpx
import structlog
from opentelemetry.trace import Span, SpanKind, StatusCode
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import webhooks
from shared.job_view import JobOut
from shared.settings import WebhookSettings
from shared.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from shared.tracing import TRACEPARENT, continue_trace, current_traceparent
from shared.webhook_destinations import DestinationPolicy
from shared.webhooks import Outgoing
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


async def deliver_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    settings: WebhookSettings,
) -> int:
    """Claim one batch of due deliveries, send them, record the outcomes; how many were sent."""
    async with sessionmaker() as session:
        batch = await webhooks.claim_due(
            session,
            limit=settings.batch_size,
            lease_seconds=settings.timeout_seconds + LEASE_MARGIN_SECONDS,
        )
        await session.commit()
    if not batch:
        return 0
    # An unexpected error in one send is recorded as that attempt's failure, so a delivery that
    # always breaks the sender ends `failed` instead of blocking the loop.
    outcomes = await asyncio.gather(
        *(post(http, outgoing, settings.timeout_seconds) for outgoing in batch),
        return_exceptions=True,
    )
    attempts = [
        outcome if isinstance(outcome, Attempt) else _failed(outcome) for outcome in outcomes
    ]
    async with sessionmaker() as session:
        for outgoing, attempt in zip(batch, attempts, strict=True):
            status = await webhooks.record_attempt(
                session,
                delivery=outgoing.delivery,
                status_code=attempt.status_code,
                error=attempt.error,
                settings=settings,
                is_final=attempt.is_final,
            )
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
        await session.commit()
    return len(batch)


def http_client(
    settings: WebhookSettings, *, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncClient:
    """The client webhooks are sent with: destinations checked, no redirects, no proxies.

    An environment proxy (`trust_env`) would make the connection on our behalf, past the check.
    """
    return httpx.AsyncClient(
        transport=GuardedTransport(DestinationPolicy.of(settings), ssl_context=ssl_context),
        follow_redirects=False,
        timeout=settings.timeout_seconds,
        trust_env=False,
    )


async def deliver_forever(
    sessionmaker: async_sessionmaker[AsyncSession], settings: WebhookSettings
) -> None:
    """Send due webhooks until cancelled; every worker runs this, claims never overlap."""
    async with http_client(settings) as http:
        while True:
            try:
                sent = await deliver_due(sessionmaker, http, settings)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("webhook.poll_failed", error=type(exc).__name__)
                sent = 0
            if sent < settings.batch_size:  # a full batch: there may be more due right now
                await asyncio.sleep(settings.poll_interval_seconds)
