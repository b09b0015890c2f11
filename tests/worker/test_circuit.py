"""Circuit breakers: the state machine against real Redis, shared between workers, and
`send_email` refusing to call an SMTP server that keeps failing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.errors import CircuitOpenError, PermanentJobError
from shared.settings import CircuitPolicy, CircuitSettings, Settings
from tests.conftest import WorkerFactory
from tests.factories import make_tenant, submit
from tests.polling import poll_job, poll_until
from worker.circuit import CircuitBreaker, Circuits, CircuitState, circuit_breaker

NAME = "test-dependency"
RECOVERY_SECONDS = 0.2


class Down(ConnectionError):
    """What the dependency raises in these tests."""


@pytest.fixture
async def other_redis(settings: Settings) -> AsyncIterator[Redis]:
    """A second worker's own Redis client."""
    client: Redis = Redis.from_url(settings.require_redis_url())
    yield client
    await client.aclose()


def _breaker(redis: Redis, name: str = NAME, **defaults: float) -> CircuitBreaker:
    """An undeclared breaker: its policy is the settings' defaults."""
    return Circuits(redis, CircuitSettings.model_validate(defaults)).get(name)


async def _fail(breaker: CircuitBreaker) -> None:
    with pytest.raises(Down):
        async with breaker:
            raise Down


async def _answer() -> str:
    return "ok"


async def _recover() -> None:
    # Recovery is a span of (Redis) time, so time has to pass; nothing else to wait on.
    await asyncio.sleep(RECOVERY_SECONDS * 1.5)


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("jobgate_circuit_state", {"name": name})


def _rejected(name: str) -> float:
    return REGISTRY.get_sample_value("jobgate_circuit_rejected_total", {"name": name}) or 0.0


async def test_opens_after_threshold_failures_within_the_window(redis: Redis) -> None:
    breaker = _breaker(redis, failure_threshold=3)
    await _fail(breaker)
    await _fail(breaker)
    assert await breaker.state() is CircuitState.CLOSED
    assert await breaker.call(_answer) == "ok"  # successes do not reset the window's count
    await _fail(breaker)
    assert await breaker.state() is CircuitState.OPEN
    assert _gauge(NAME) == CircuitState.OPEN


async def test_failures_outside_the_window_do_not_count(redis: Redis) -> None:
    breaker = _breaker(redis, failure_threshold=2, window_seconds=0.2)
    await _fail(breaker)
    await asyncio.sleep(0.3)  # the first failure leaves the window
    await _fail(breaker)
    assert await breaker.state() is CircuitState.CLOSED
    await _fail(breaker)
    assert await breaker.state() is CircuitState.OPEN


async def test_open_refuses_without_calling_until_the_recovery_time(redis: Redis) -> None:
    breaker = _breaker(redis, failure_threshold=1, recovery_seconds=30)
    await _fail(breaker)
    before = _rejected(NAME)
    calls: list[str] = []

    async def call() -> None:
        calls.append("called")

    with pytest.raises(CircuitOpenError) as refused:
        await breaker.call(call)
    with pytest.raises(CircuitOpenError):
        async with breaker:
            calls.append("entered")
    assert calls == []
    assert 29 < refused.value.retry_after_seconds <= 30
    assert "test-dependency" in refused.value.message
    assert _rejected(NAME) == before + 2


async def test_after_recovery_exactly_one_of_many_concurrent_callers_is_the_trial(
    redis: Redis, other_redis: Redis
) -> None:
    workers = [
        _breaker(client, failure_threshold=1, recovery_seconds=RECOVERY_SECONDS)
        for client in (redis, other_redis)
    ]
    await _fail(workers[0])
    await _recover()
    release, entered = asyncio.Event(), []

    async def trial() -> str:
        entered.append("trial")
        await release.wait()
        return "ok"

    callers = [asyncio.create_task(workers[i % 2].call(trial)) for i in range(10)]
    await poll_until(lambda: sum(c.done() for c in callers) == 9, what="nine callers refused")
    assert entered == ["trial"]
    assert await workers[1].state() is CircuitState.HALF_OPEN
    assert _gauge(NAME) == CircuitState.HALF_OPEN
    release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert results.count("ok") == 1
    assert sum(isinstance(result, CircuitOpenError) for result in results) == 9
    assert await workers[0].state() is CircuitState.CLOSED
    assert _gauge(NAME) == CircuitState.CLOSED


async def test_a_successful_trial_closes_it(redis: Redis) -> None:
    breaker = _breaker(redis, failure_threshold=2, recovery_seconds=RECOVERY_SECONDS)
    await _fail(breaker)
    await _fail(breaker)
    await _recover()
    assert await breaker.call(_answer) == "ok"
    assert await breaker.state() is CircuitState.CLOSED
    await _fail(breaker)  # the count starts afresh: one failure is below the threshold
    assert await breaker.call(_answer) == "ok"


async def test_a_failed_trial_opens_it_again(redis: Redis) -> None:
    breaker = _breaker(redis, failure_threshold=1, recovery_seconds=RECOVERY_SECONDS)
    await _fail(breaker)
    await _recover()
    await _fail(breaker)  # the trial
    assert await breaker.state() is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as refused:
        await breaker.call(_answer)
    assert 0 < refused.value.retry_after_seconds <= RECOVERY_SECONDS


async def test_a_cancelled_trial_lets_the_next_caller_try(redis: Redis) -> None:
    breaker = _breaker(redis, failure_threshold=1, recovery_seconds=RECOVERY_SECONDS)
    await _fail(breaker)
    await _recover()
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    trial = asyncio.create_task(breaker.call(hang))
    await asyncio.wait_for(started.wait(), timeout=5)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert await breaker.call(_answer) == "ok"  # not refused: the cancelled trial gave way
    assert await breaker.state() is CircuitState.CLOSED


async def test_state_is_shared_between_workers(redis: Redis, other_redis: Redis) -> None:
    ours, theirs = (_breaker(client, failure_threshold=2) for client in (redis, other_redis))
    await _fail(ours)
    await _fail(theirs)  # one failure each: together they reach the threshold
    for breaker in (ours, theirs):
        with pytest.raises(CircuitOpenError):
            await breaker.call(_answer)


async def test_permanent_errors_do_not_count_by_default(redis: Redis) -> None:
    breaker = _breaker(redis, failure_threshold=1)
    with pytest.raises(PermanentJobError):
        async with breaker:
            raise PermanentJobError("the dependency answered: no")
    assert await breaker.state() is CircuitState.CLOSED


async def test_a_declaration_chooses_which_errors_count(redis: Redis) -> None:
    circuit_breaker("test-connections", failure_threshold=1, failure_types=(ConnectionError,))
    breaker = Circuits(redis, CircuitSettings()).get("test-connections")
    with pytest.raises(ValueError, match="bad input"):
        async with breaker:
            raise ValueError("bad input")
    assert await breaker.state() is CircuitState.CLOSED
    await _fail(breaker)
    assert await breaker.state() is CircuitState.OPEN


async def test_settings_defaults_then_code_then_settings_overrides(redis: Redis) -> None:
    circuit_breaker("test-layers", failure_threshold=7, recovery_seconds=9)
    settings = CircuitSettings(
        window_seconds=11,
        recovery_seconds=99,
        overrides={"test-layers": CircuitPolicy(recovery_seconds=3)},
    )
    circuits = Circuits(redis, settings)
    assert circuits.get("test-layers").policy == CircuitPolicy(
        failure_threshold=7, window_seconds=11, recovery_seconds=3
    )
    assert circuits.get("test-undeclared").policy == CircuitPolicy(
        window_seconds=11, recovery_seconds=99
    )


def test_a_name_cannot_be_declared_twice_differently() -> None:
    first = circuit_breaker("test-twice", failure_threshold=2)
    assert circuit_breaker("test-twice", failure_threshold=2) == first  # a re-import is fine
    with pytest.raises(ValueError, match="declared twice"):
        circuit_breaker("test-twice", failure_threshold=3)


@pytest.fixture
async def dead_smtp() -> AsyncIterator[tuple[int, list[str]]]:
    """A port that accepts connections and hangs up at once: (port, one entry per connection)."""
    connections: list[str] = []

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append("connected")
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], connections


async def test_send_email_stops_calling_a_failing_smtp_server(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
    settings: Settings,
    dead_smtp: tuple[int, list[str]],
) -> None:
    port, connections = dead_smtp
    policy = CircuitPolicy(failure_threshold=2, recovery_seconds=120)
    smtp = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_timeout_seconds": 2.0}
    circuits = CircuitSettings(overrides={"smtp": policy})
    await start_worker(
        queue="email", settings=settings.model_copy(update={**smtp, "circuits": circuits})
    )
    _, token = await make_tenant(sessionmaker)
    args = {"to": "alice@example.com", "subject": "hi", "body": "hello"}

    async def attempt() -> dict[str, object]:
        job = await submit(client, token, "send_email", args)
        return await poll_job(client, token, job["id"], lambda j: j["status"] == "retrying")

    for tried in (1, 2):
        failed = await attempt()
        assert failed["error"] == {
            "type": "RetryableJobError",
            "message": "could not reach the SMTP server",
        }
        assert len(connections) == tried
    refused = await attempt()
    assert refused["error"] == {
        "type": "CircuitOpenError",
        "message": "circuit breaker 'smtp' is open: its dependency was not called",
    }
    assert len(connections) == 2  # no connection attempt
    assert _gauge("smtp") == CircuitState.OPEN
    retry_in = _seconds_from_now(str(refused["scheduled_at"]))
    assert retry_in > 100  # after the breaker's recovery time, not the 30 s backoff


def _seconds_from_now(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp() - time.time()
