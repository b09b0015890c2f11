"""Circuit breakers for job code calling flaky dependencies, their state shared in Redis.

    closed ──N failures within the window──▶ open ──recovery time passed──▶ half-open
       ▲                                      ▲                                │
       └────────── the trial call succeeds ───┼──── the trial call fails ──────┘

While open, calls are refused with `CircuitOpenError` (a retryable job error: the job comes back
once a trial may pass) instead of waiting on a dependency that is down. Half-open lets
`half_open_trials` calls through; every transition is one Lua script, so however many workers
ask at once, only that many get a trial. Time is Redis's, so worker clocks do not matter.

Job code: `async with job.circuit("smtp"): ...` or `await job.circuit("smtp").call(fn, ...)`.
A breaker is tuned where it is declared (`circuit_breaker("smtp", failure_threshold=5)`);
undeclared names get `Settings.circuits`, and `Settings.circuits.overrides` wins over both.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import ParamSpec, TypeVar

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import CircuitOpenError, PermanentJobError
from shared.keys import circuit_failures_key, circuit_key
from shared.settings import CircuitPolicy, CircuitSettings
from worker.metrics import CIRCUIT_REJECTED, CIRCUIT_STATE
from worker.platform_failures import redis_call

log = structlog.get_logger("jobgate.circuit")

P = ParamSpec("P")
T = TypeVar("T")

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: state hash. ARGV: recovery ms, half-open trials. Returns {decision, state, wait ms}.
_ACQUIRE_LUA = (
    _NOW_MS
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'call', 'closed', 0} end
local until_ms = tonumber(redis.call('HGET', KEYS[1], 'until'))
local recovery = tonumber(ARGV[1])
if state == 'open' then
    if now < until_ms then return {'reject', 'open', until_ms - now} end
    redis.call('HSET', KEYS[1], 'state', 'half_open', 'trials', 1, 'until', now + recovery)
    return {'trial', 'half_open', 0}
end
local trials = tonumber(redis.call('HGET', KEYS[1], 'trials'))
if trials < tonumber(ARGV[2]) then
    redis.call('HINCRBY', KEYS[1], 'trials', 1)
    return {'trial', 'half_open', 0}
end
if now >= until_ms then
    -- The trials never reported (their worker died): let a new one try.
    redis.call('HSET', KEYS[1], 'trials', 1, 'until', now + recovery)
    return {'trial', 'half_open', 0}
end
return {'reject', 'half_open', until_ms - now}
"""
)

# KEYS: state hash, failures set. ARGV: outcome (success, failure, abandon), is trial (1/0),
# threshold, window ms, recovery ms, failure id. Returns {state, changed (1/0)}.
_RECORD_LUA = (
    _NOW_MS
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local outcome, is_trial = ARGV[1], ARGV[2] == '1'
local recovery = tonumber(ARGV[5])
if is_trial and state == 'half_open' then
    if outcome == 'success' then
        redis.call('DEL', KEYS[1], KEYS[2])
        return {'closed', 1}
    elseif outcome == 'failure' then
        redis.call('HSET', KEYS[1], 'state', 'open', 'trials', 0, 'until', now + recovery)
        return {'open', 1}
    end
    if tonumber(redis.call('HGET', KEYS[1], 'trials')) > 0 then
        redis.call('HINCRBY', KEYS[1], 'trials', -1)
    end
    return {state, 0}
end
if outcome ~= 'failure' or state ~= 'closed' then return {state, 0} end
local window = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('PEXPIRE', KEYS[2], window)
if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[3]) then return {state, 0} end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'state', 'open', 'trials', 0, 'until', now + recovery)
return {'open', 1}
"""
)


class CircuitState(enum.IntEnum):
    """A breaker's state; the values are what `jobgate_circuit_state` reports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


ErrorTypes = tuple[type[BaseException], ...]


@dataclass(frozen=True)
class CircuitDeclaration:
    """A breaker declared in code: its name, what it tunes and which errors count as failures."""

    name: str
    tuned: CircuitPolicy = field(default_factory=CircuitPolicy)
    failure_types: ErrorTypes = (Exception,)
    ignored_types: ErrorTypes = (PermanentJobError,)

    def policy(self, settings: CircuitSettings) -> CircuitPolicy:
        """Settings' defaults, then what the code tunes, then settings' override for this name."""
        policy = CircuitPolicy.model_validate(settings.model_dump(exclude={"overrides"}))
        for layer in (self.tuned, settings.overrides.get(self.name)):
            if layer is not None:
                policy = policy.model_copy(update=layer.model_dump(include=layer.model_fields_set))
        return policy

    def counts_as_failure(self, exc: Exception) -> bool:
        """Whether `exc` from a call says the dependency is failing."""
        return isinstance(exc, self.failure_types) and not isinstance(exc, self.ignored_types)


_DECLARED: dict[str, CircuitDeclaration] = {}


def circuit_breaker(
    name: str,
    *,
    failure_threshold: int | None = None,
    window_seconds: float | None = None,
    recovery_seconds: float | None = None,
    half_open_trials: int | None = None,
    failure_types: ErrorTypes = (Exception,),
    ignored_types: ErrorTypes = (PermanentJobError,),
) -> CircuitDeclaration:
    """Declare breaker `name`; what is left out comes from `Settings.circuits`."""
    given = {
        "failure_threshold": failure_threshold,
        "window_seconds": window_seconds,
        "recovery_seconds": recovery_seconds,
        "half_open_trials": half_open_trials,
    }
    tuned = CircuitPolicy.model_validate({k: v for k, v in given.items() if v is not None})
    declaration = CircuitDeclaration(name, tuned, failure_types, ignored_types)
    if _DECLARED.setdefault(name, declaration) != declaration:
        raise ValueError(f"circuit breaker {name!r} is declared twice, differently")
    return declaration


class CircuitBreaker:
    """One named breaker as this worker uses it; its state is in Redis, shared by all workers."""

    def __init__(
        self, redis: Redis, policy: CircuitPolicy, declaration: CircuitDeclaration
    ) -> None:
        self.name = declaration.name
        self.policy = policy
        self._declaration = declaration
        self._redis = redis
        self._keys = [circuit_key(self.name), circuit_failures_key(self.name)]
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._record = redis.register_script(_RECORD_LUA)
        # Several tasks may be inside `async with` on one breaker: each has its own trials.
        self._entered: dict[asyncio.Task[object] | None, list[bool]] = {}

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """`await fn(*args, **kwargs)` through the breaker."""
        async with self:
            return await fn(*args, **kwargs)

    async def __aenter__(self) -> None:
        is_trial = await self._ask()
        self._entered.setdefault(asyncio.current_task(), []).append(is_trial)

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        task = asyncio.current_task()
        is_trial = self._entered[task].pop()
        if not self._entered[task]:
            del self._entered[task]
        await self._report(is_trial, self._outcome(exc))

    async def state(self) -> CircuitState:
        """The state in Redis now (an open breaker turns half-open only when a call asks)."""
        with redis_call():  # Redis down is jobgate's failure, not the job's
            state = await self._redis.hget(self._keys[0], "state")  # type: ignore[misc,unused-ignore]
        return _state(state or "closed")

    async def _ask(self) -> bool:
        """Ask to make a call: True if it is a half-open trial; `CircuitOpenError` if refused."""
        with redis_call():  # Redis down is jobgate's failure, not the job's
            decision, state, wait_ms = await self._acquire(
                keys=self._keys[:1],
                args=[_ms(self.policy.recovery_seconds), self.policy.half_open_trials],
            )
        self._observe(_state(state))
        if _text(decision) == "reject":
            CIRCUIT_REJECTED.labels(self.name).inc()
            raise CircuitOpenError(
                f"circuit breaker {self.name!r} is open: its dependency was not called",
                retry_after_seconds=int(wait_ms) / 1000,
            )
        is_trial = _text(decision) == "trial"
        if is_trial:
            log.info("circuit.trial", circuit=self.name)
        return is_trial

    async def _report(self, is_trial: bool, outcome: str) -> None:
        if outcome != "failure" and not is_trial:
            return  # a closed breaker counts only failures: nothing to tell Redis
        try:
            state, changed = await self._record(
                keys=self._keys,
                args=[
                    outcome,
                    int(is_trial),
                    self.policy.failure_threshold,
                    _ms(self.policy.window_seconds),
                    _ms(self.policy.recovery_seconds),
                    uuid.uuid4().hex,
                ],
            )
        except (RedisError, OSError) as error:
            # The call itself is over (an email may have gone out): its outcome must stand.
            log.warning("circuit.record_failed", circuit=self.name, error=type(error).__name__)
            return
        self._observe(_state(state), is_change=bool(changed))

    def _outcome(self, exc: BaseException | None) -> str:
        if exc is None:
            return "success"
        if not isinstance(exc, Exception) or isinstance(exc, CircuitOpenError):
            # Cancelled (timeout, abort, shutdown), or another breaker refused: no verdict.
            return "abandon"
        if self._declaration.counts_as_failure(exc):
            return "failure"
        return "success"  # e.g. a permanent rejection: the dependency did answer

    def _observe(self, state: CircuitState, *, is_change: bool = False) -> None:
        CIRCUIT_STATE.labels(self.name).set(state)
        if is_change and state is CircuitState.OPEN:
            log.warning("circuit.opened", circuit=self.name)
        elif is_change:
            log.info(f"circuit.{state.name.lower()}", circuit=self.name)


class Circuits:
    """The breakers job code may use, bound to Redis and to `Settings.circuits`."""

    def __init__(self, redis: Redis, settings: CircuitSettings) -> None:
        self._redis = redis
        self._settings = settings
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker:
        """Breaker `name`: as declared with `circuit_breaker`, else with settings' defaults."""
        if name not in self._breakers:
            declaration = _DECLARED.get(name) or CircuitDeclaration(name)
            policy = declaration.policy(self._settings)
            self._breakers[name] = CircuitBreaker(self._redis, policy, declaration)
        return self._breakers[name]


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _state(value: bytes | str) -> CircuitState:
    return CircuitState[_text(value).upper()]
