"""Rate limits per job type: declaration checks, and the limiter's schedule on a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from gateway.schemas import JobTypeOut
from shared.arg_paths import ArgPathError
from shared.contracts import REGISTRY, Contract, EchoArgs, EchoResult, JobType, RateLimit
from shared.keys import job_rate_booking_key
from shared.rate_limiter import next_free_start, schedule_key, take_start
from tests.docs_examples import RATE_LIMIT_DECLARATION
from tests.rate_limited_jobs import StampArgs, StampResult

TENANT = uuid.UUID(int=1)
# 20 per second: starts 50 ms apart, a booking kept 100 ms (a tenth of the period) after its time.
TWENTY_PER_SECOND = RateLimit(count=20, per_seconds=1)
INTERVAL = 0.05
SLACK = 0.02
"""Redis time that passes between the calls of one test, at most (a busy machine)."""


def _seconds(wait: timedelta) -> float:
    return wait.total_seconds()


async def _take(redis: Redis, limit: RateLimit, job_id: str, schedule: str = "s") -> float:
    return _seconds(
        await take_start(redis, limit, schedule=f"jobgate:job-rate:{schedule}", job_id=job_id)
    )


class Order(Contract):
    customer: StampArgs
    lines: list[str]


class TestDeclaration:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"count": 0, "per_seconds": 1}, "count"),
            ({"count": True, "per_seconds": 1}, "count"),
            ({"count": 1.5, "per_seconds": 1}, "count"),
            ({"count": 1, "per_seconds": 0}, "per_seconds"),
            ({"count": 1, "per_seconds": -1}, "per_seconds"),
            ({"count": 1, "per_seconds": float("inf")}, "per_seconds"),
            ({"count": 1, "per_seconds": float("nan")}, "per_seconds"),
            ({"count": 1, "per_seconds": "60"}, "per_seconds"),
            ({"count": 1, "per_seconds": 1, "burst": -1}, "burst"),
            ({"count": 10**7, "per_seconds": 1}, "too high"),
            ({"count": 1, "per_seconds": 1, "key": ""}, "key"),
        ],
    )
    def test_a_wrong_limit_is_refused(self, options: dict[str, object], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            RateLimit(**options)  # type: ignore[arg-type]

    def test_a_key_the_args_lack_is_refused_at_declaration(self) -> None:
        with pytest.raises(ArgPathError, match="no field 'customer'"):
            JobType(
                name="limited",
                args=EchoArgs,
                result=EchoResult,
                description="x",
                rate_limit=RateLimit(count=1, per_seconds=1, key="customer"),
            )

    @pytest.mark.parametrize("key", ["lines", "customer"])
    def test_a_key_that_is_not_a_plain_value_is_refused(self, key: str) -> None:
        with pytest.raises(ArgPathError):
            JobType(
                name="limited",
                args=Order,
                result=StampResult,
                description="x",
                rate_limit=RateLimit(count=1, per_seconds=1, key=key),
            )

    def test_a_nested_key_is_accepted_and_the_limit_describes_itself(self) -> None:
        limit = RateLimit(count=100, per_seconds=60, key="customer.customer_id", burst=5)
        JobType(name="limited", args=Order, result=StampResult, description="x", rate_limit=limit)
        assert limit.describe() == "100 per 60 s, burst 5, per tenant and customer.customer_id"
        assert RateLimit(count=10, per_seconds=1).describe() == "10 per 1 s"
        assert (limit.interval_us, limit.grace_us) == (600_000, 6_000_000)


class TestTheDocsExample:
    """docs/flow-control.md's declarations, run as a reader copies them."""

    def _declare(self, code: str) -> dict[str, object]:
        namespace: dict[str, object] = {}
        try:
            # Not this module's `from __future__ import annotations`: the reader's has none.
            compiled = compile(code, str(RATE_LIMIT_DECLARATION.page), "exec", dont_inherit=True)
            exec(compiled, namespace)  # noqa: S102 (our own docs)
        finally:
            for name in ("geocode", "sync_crm_contact"):
                REGISTRY.unregister(name)
        return namespace

    def test_declares_both_types_with_their_limits(self) -> None:
        (code,) = RATE_LIMIT_DECLARATION.blocks()
        namespace = self._declare(code)
        geocode, sync = namespace["GEOCODE"], namespace["SYNC_CRM_CONTACT"]
        assert isinstance(geocode, JobType) and isinstance(sync, JobType)
        shown = JobTypeOut.of(geocode).rate_limit
        assert shown is not None
        assert shown.model_dump() == {"count": 10, "per_seconds": 1, "burst": 2, "key": None}
        assert sync.rate_limit == RateLimit(count=100, per_seconds=60, key="account_id")

    def test_a_mistyped_key_fails_at_import(self) -> None:
        (code,) = RATE_LIMIT_DECLARATION.blocks()
        with pytest.raises(ArgPathError, match="no field 'acount_id'"):
            self._declare(code.replace('key="account_id"', 'key="acount_id"'))


class TestSchedules:
    def test_a_limit_without_key_is_one_schedule_for_every_tenant(self) -> None:
        limit = RateLimit(count=1, per_seconds=1)
        one = schedule_key("t", limit, tenant_id=TENANT, args=None)
        assert one == schedule_key("t", limit, tenant_id=uuid.UUID(int=2), args=None)
        assert one == "jobgate:job-rate:t"

    def test_a_keyed_limit_has_one_per_tenant_and_value(self) -> None:
        limit = RateLimit(count=1, per_seconds=1, key="customer_id")
        found = {
            schedule_key("t", limit, tenant_id=tenant, args={"customer_id": value})
            for tenant in (TENANT, uuid.UUID(int=2))
            for value in ("a", "b")
        }
        assert len(found) == 4
        assert schedule_key("t", limit, tenant_id=TENANT, args={"customer_id": "a"}) in found
        assert schedule_key("u", limit, tenant_id=TENANT, args={"customer_id": "a"}) not in found

    def test_a_job_without_the_key_is_not_limited(self) -> None:
        limit = RateLimit(count=1, per_seconds=1, key="customer_id")
        assert schedule_key("t", limit, tenant_id=TENANT, args={"customer_id": None}) is None
        assert schedule_key("t", limit, tenant_id=TENANT, args={}) is None


class TestLimiter:
    async def test_starts_are_spaced_one_interval_apart(self, redis: Redis) -> None:
        waits = [await _take(redis, TWENTY_PER_SECOND, f"job-{n}") for n in range(5)]
        assert waits[0] == 0
        for number, wait in enumerate(waits):
            assert number * INTERVAL - SLACK <= wait <= number * INTERVAL + 0.001, waits

    async def test_a_burst_starts_at_once_then_the_interval_holds(self, redis: Redis) -> None:
        limit = RateLimit(count=20, per_seconds=1, burst=3)
        waits = [await _take(redis, limit, f"job-{n}") for n in range(6)]
        assert waits[:4] == [0, 0, 0, 0]
        assert INTERVAL - SLACK <= waits[4] <= INTERVAL + 0.001
        assert 2 * INTERVAL - SLACK <= waits[5] <= 2 * INTERVAL + 0.001

    async def test_no_window_holds_more_than_count_plus_burst(self, redis: Redis) -> None:
        limit = RateLimit(count=10, per_seconds=1, burst=2)
        loop = asyncio.get_running_loop()
        starts = []
        for number in range(50):
            asked = loop.time()
            starts.append(asked + await _take(redis, limit, f"job-{number}"))
        # Starts computed on this clock from waits on Redis's: a window a hair under a second
        # keeps the 11th interval's start out, which lies a second after the burst's exactly.
        most = max(sum(start <= other < start + 0.99 for other in starts) for start in starts)
        assert most == 12  # the burst of 3, then 9 more at one per 100 ms
        assert 4.7 - SLACK <= max(starts) - min(starts) <= 4.7 + SLACK

    async def test_each_key_has_its_own_schedule(self, redis: Redis) -> None:
        limit = RateLimit(count=1, per_seconds=10)
        assert await _take(redis, limit, "a-1", schedule="a") == 0
        assert await _take(redis, limit, "b-1", schedule="b") == 0
        assert await _take(redis, limit, "a-2", schedule="a") > 9
        assert await _take(redis, limit, "b-2", schedule="b") > 9

    async def test_a_job_back_before_its_start_keeps_its_booking(self, redis: Redis) -> None:
        assert await _take(redis, TWENTY_PER_SECOND, "first") == 0
        booked = await _take(redis, TWENTY_PER_SECOND, "second")
        again = await _take(redis, TWENTY_PER_SECOND, "second")  # back early: same start
        assert 0 < again <= booked
        third = await _take(redis, TWENTY_PER_SECOND, "third")
        assert 2 * INTERVAL - SLACK <= third <= 2 * INTERVAL + 0.001  # not behind a second one

    async def test_a_job_back_at_its_start_starts_without_taking_another(
        self, redis: Redis
    ) -> None:
        assert await _take(redis, TWENTY_PER_SECOND, "first") == 0
        booked = await _take(redis, TWENTY_PER_SECOND, "second")
        await asyncio.sleep(booked)
        assert await _take(redis, TWENTY_PER_SECOND, "second") == 0
        assert not await redis.exists(job_rate_booking_key("second"))
        # Its start was taken when it was booked: the next free one is the one after it.
        third = await _take(redis, TWENTY_PER_SECOND, "third")
        assert INTERVAL - SLACK <= third <= INTERVAL + 0.001

    async def test_a_job_back_long_after_its_start_books_a_new_one(self, redis: Redis) -> None:
        assert await _take(redis, TWENTY_PER_SECOND, "first") == 0
        booked = await _take(redis, TWENTY_PER_SECOND, "second")
        await asyncio.sleep(booked + 0.15)  # past its 100 ms of grace
        assert await _take(redis, TWENTY_PER_SECOND, "second") == 0  # a free start, taken anew
        assert await _take(redis, TWENTY_PER_SECOND, "third") >= INTERVAL - SLACK

    async def test_the_schedule_and_bookings_expire(self, redis: Redis) -> None:
        assert await _take(redis, TWENTY_PER_SECOND, "first") == 0
        await _take(redis, TWENTY_PER_SECOND, "second")
        schedule_ttl = await redis.pttl("jobgate:job-rate:s")
        booking_ttl = await redis.pttl(job_rate_booking_key("second"))
        assert 0 < schedule_ttl <= 100
        assert 1000 < booking_ttl <= 1150

    async def test_next_free_start_grows_with_the_bookings(self, redis: Redis) -> None:
        limit = TWENTY_PER_SECOND
        assert await next_free_start(redis, "t", limit) == timedelta(0)
        for number in range(5):
            await take_start(redis, limit, schedule="jobgate:job-rate:t", job_id=f"job-{number}")
        waiting = _seconds(await next_free_start(redis, "t", limit))
        assert 5 * INTERVAL - SLACK <= waiting <= 5 * INTERVAL
