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
MS = 0.001
"""Waits are rounded up to the millisecond."""


class Limiter:
    """Asks for starts on one schedule, noting the time since the first ask: a start booked
    at the first ask's time plus x is waited for x less that time (at most)."""

    def __init__(self, redis: Redis, limit: RateLimit, schedule: str = "s") -> None:
        self.redis, self.limit, self.schedule = redis, limit, f"jobgate:job-rate:{schedule}"
        self.began: float | None = None
        self.since = 0.0
        """Seconds from just before the first ask to just after the last one."""

    async def take(self, job_id: str) -> float:
        loop = asyncio.get_running_loop()
        if self.began is None:
            self.began = loop.time()
        wait = await take_start(self.redis, self.limit, schedule=self.schedule, job_id=job_id)
        self.since = loop.time() - self.began
        return wait.total_seconds()

    def booked_at(self, wait: float, offset: float) -> bool:
        """Whether `wait` is for the start `offset` seconds after the first ask."""
        return offset - self.since - MS <= wait <= offset + MS


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
        limiter = Limiter(redis, TWENTY_PER_SECOND)
        assert await limiter.take("job-0") == 0
        for number in range(1, 5):
            wait = await limiter.take(f"job-{number}")
            assert limiter.booked_at(wait, number * INTERVAL), (number, wait)

    async def test_a_burst_starts_at_once_then_the_interval_holds(self, redis: Redis) -> None:
        limiter = Limiter(redis, RateLimit(count=20, per_seconds=1, burst=3))
        assert [await limiter.take(f"job-{n}") for n in range(4)] == [0, 0, 0, 0]
        assert limiter.booked_at(await limiter.take("job-4"), INTERVAL)
        assert limiter.booked_at(await limiter.take("job-5"), 2 * INTERVAL)

    async def test_no_window_holds_more_than_count_plus_burst(self, redis: Redis) -> None:
        limiter = Limiter(redis, RateLimit(count=10, per_seconds=1, burst=2))
        loop = asyncio.get_running_loop()
        starts = []
        for number in range(50):
            asked = loop.time()
            starts.append(asked + await limiter.take(f"job-{number}"))
        # Starts computed on this clock from waits on Redis's, give or take a round trip: a
        # window a little under a second keeps the 11th interval's start out, which lies a
        # second after the burst's exactly.
        most = max(sum(start <= other < start + 0.95 for other in starts) for start in starts)
        assert most == 12  # the burst of 3, then 9 more at one per 100 ms
        assert 4.7 - 0.05 <= max(starts) - min(starts) <= 4.7 + 0.05

    async def test_each_key_has_its_own_schedule(self, redis: Redis) -> None:
        limit = RateLimit(count=1, per_seconds=10)
        one, other = Limiter(redis, limit, schedule="a"), Limiter(redis, limit, schedule="b")
        assert await one.take("a-1") == 0
        assert await other.take("b-1") == 0
        assert await one.take("a-2") > 9
        assert await other.take("b-2") > 9

    async def test_a_job_back_before_its_start_keeps_its_booking(self, redis: Redis) -> None:
        limiter = Limiter(redis, TWENTY_PER_SECOND)
        assert await limiter.take("first") == 0
        booked = await limiter.take("second")
        again = await limiter.take("second")  # back early: the same start
        assert 0 < again <= booked
        assert limiter.booked_at(await limiter.take("third"), 2 * INTERVAL)  # not behind two

    async def test_a_job_back_at_its_start_starts_without_taking_another(
        self, redis: Redis
    ) -> None:
        limiter = Limiter(redis, TWENTY_PER_SECOND)
        assert await limiter.take("first") == 0
        await asyncio.sleep(await limiter.take("second"))
        assert await limiter.take("second") == 0
        assert not await redis.exists(job_rate_booking_key("second"))
        # Its start was taken when it was booked: the next free one is the one after it.
        assert limiter.booked_at(await limiter.take("third"), 2 * INTERVAL)

    async def test_a_job_back_long_after_its_start_books_a_new_one(self, redis: Redis) -> None:
        limiter = Limiter(redis, TWENTY_PER_SECOND)
        assert await limiter.take("first") == 0
        await asyncio.sleep(await limiter.take("second") + 0.15)  # past its 100 ms of grace
        assert await limiter.take("second") == 0  # a free start, taken anew
        # Had it kept its lost start, the schedule would be free now.
        assert await limiter.take("third") > 0

    async def test_the_schedule_and_bookings_expire(self, redis: Redis) -> None:
        limiter = Limiter(redis, TWENTY_PER_SECOND)
        assert await limiter.take("first") == 0
        await limiter.take("second")
        schedule_ttl = await redis.pttl("jobgate:job-rate:s")
        booking_ttl = await redis.pttl(job_rate_booking_key("second"))
        assert 0 < schedule_ttl <= 100  # until its next free start, 100 ms after the first
        assert 900 < booking_ttl <= 1150  # its start, its grace and a second more

    async def test_next_free_start_grows_with_the_bookings(self, redis: Redis) -> None:
        limiter = Limiter(redis, TWENTY_PER_SECOND, schedule="t")
        assert await next_free_start(redis, "t", TWENTY_PER_SECOND) == timedelta(0)
        for number in range(5):
            await limiter.take(f"job-{number}")
        waiting = (await next_free_start(redis, "t", TWENTY_PER_SECOND)).total_seconds()
        assert limiter.booked_at(waiting, 5 * INTERVAL)
