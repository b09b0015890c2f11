"""Job types, declared once: the gateway builds its routes from them, the worker binds code to them.

A job type is a name, an Args and a Result model (both `Contract`s) and the defaults a submit
may override. Deployments declare their own in modules named by `JOBGATE_CONTRACT_MODULES`.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, Self, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from shared.arg_paths import check_path
from shared.errors import QueueNotAllowed, UnknownJobType
from shared.rate_limiter import RateLimit as RateLimit  # declared beside Backoff by users
from shared.status import JobStatus

if TYPE_CHECKING:
    from shared.python_api import JobHandle, SyncJobHandle

Priority = Literal["critical", "default", "low"]
DEFAULT_QUEUE = "default"


class Contract(BaseModel):
    """Base of every Args and Result model: strict about unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _no_nul_characters(self) -> Self:
        # PostgreSQL's jsonb cannot store U+0000; refuse it here, as a validation error.
        if _has_nul(self.model_dump(mode="json")):
            raise ValueError("text must not contain the NUL character (U+0000)")
        return self


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


A = TypeVar("A", bound=Contract)
R = TypeVar("R", bound=Contract)


@dataclass(frozen=True)
class Backoff:
    """Delay before retry n (1-based): `base * factor**(n-1)`, capped, minus random jitter.

    Jitter removes up to `jitter` (a fraction) of each delay so that jobs failing together,
    say on one outage, do not all come back in the same second.
    """

    base_seconds: float = 60.0
    factor: float = 2.0
    max_seconds: float = 600.0
    jitter: float = 0.2

    def delay_seconds(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        exponent = max(retry - 1, 0)
        delay = min(self.max_seconds, self.base_seconds * self.factor**exponent)
        return delay * (1.0 - self.jitter * rand())


ConcurrencyStrategy = Literal["queue", "cancel_in_progress", "cancel_newest"]


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most `limit` jobs of a type with the same key run at once, over all workers.

    `key` is a dotted path into the Args (`customer.id`); a submit may give the key itself
    (`options.concurrency_key`). Keys are a tenant's own: two tenants' `42` never meet. What a
    job that finds its key at the limit does is the `strategy` (docs/flow-control.md):
    `queue` waits its turn, `cancel_in_progress` cancels the oldest unfinished jobs of the key
    (latest wins), `cancel_newest` is cancelled itself, at submit.
    """

    key: str
    limit: int = 1
    strategy: ConcurrencyStrategy = "queue"

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"a concurrency limit must be at least 1, not {self.limit}")
        if self.strategy not in get_args(ConcurrencyStrategy):
            raise ValueError(f"no concurrency strategy {self.strategy!r}")


@dataclass(frozen=True)
class JobType(Generic[A, R]):
    """One kind of job: its contract and the defaults each submit may override."""

    name: str
    args: type[A]
    result: type[R]
    description: str
    queue: str = ""
    """The queue a submit runs on unless its `options.queue` picks another of `queues`;
    left empty: the first of `queues`, else `default`."""
    queues: tuple[str, ...] = ()
    """Every queue the type may run on, `queue` among them (kept first); left empty: `(queue,)`."""
    priority: Priority = "default"
    max_tries: int = 3
    timeout_seconds: float = 300.0
    soft_timeout_seconds: float | None = None
    """Time after which `JobContext.soft_limit()` blocks are interrupted, before the hard
    `timeout_seconds` (the seeds' 280 s soft / 300 s hard). A per-submit timeout keeps the
    same grace between the two."""
    backoff: Backoff = field(default_factory=Backoff)
    start_within_seconds: float | None = None
    """A start deadline for submits that set none: a job not started within this many seconds
    of when it may start ends `expired` without running (`docs/flow-control.md`)."""
    result_ttl_seconds: int | None = None
    """How long a finished job stays readable; None: the `result_ttl_seconds` setting."""
    is_internal: bool = False
    """Run only by jobgate itself (schedules): no submit route, not in `GET /job-types`."""
    examples: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    """Args as a caller would send them (JSON), shown in the OpenAPI document and
    `GET /job-types`; each must be valid for `args`, which declaring the type checks."""
    rate_limit: RateLimit | None = None
    """At most so many starts per period, over all workers (`shared.rate_limiter`); jobs over
    it wait their turn without using a try."""
    concurrency: ConcurrencyLimit | None = None
    """How many jobs with the same key may run at once (None: no such limit)."""

    async def submit(self, args: A | dict[str, Any], **options: Any) -> JobHandle[R]:
        """Submit from Python, as `POST /jobs/{name}` would (`shared.python_api.configure`)."""
        from shared.python_api import default_client  # it imports this module

        return await default_client().submit(self, args, **options)

    def submit_sync(self, args: A | dict[str, Any], **options: Any) -> SyncJobHandle[R]:
        """`submit` for code without an event loop (Flask): blocks until the job is stored."""
        from shared.python_api import default_sync_client

        return default_sync_client().submit(self, args, **options)

    def queue_for(self, requested: str | None) -> str:
        """The queue a submit of this type runs on: `requested` (its `options.queue`) if the
        type may run there, its `queue` if none; any other is `QueueNotAllowed`."""
        if requested is None:
            return self.queue
        if requested not in self.queues:
            allowed = ", ".join(repr(queue) for queue in self.queues)
            raise QueueNotAllowed(
                f"Jobs of type {self.name!r} may run on {allowed}, not on {requested!r}."
            )
        return requested

    def __post_init__(self) -> None:
        self._settle_queues()
        if self.start_within_seconds is not None and not self.start_within_seconds > 0:
            raise ValueError(f"job type {self.name!r}: start_within_seconds must be positive")
        for example in self.examples:
            # A wrong example is a programming error: fail at import, not in a caller's hands.
            self.args.model_validate(example)
        if self.rate_limit is not None:
            self.rate_limit.check(self.args)
        if self.concurrency is not None:
            check_path(self.args, self.concurrency.key)  # a typo fails at import too

    def _settle_queues(self) -> None:
        """Fill `queue` and `queues` from each other (frozen: set once, here), or refuse them."""
        queues = self.queues or (self.queue or DEFAULT_QUEUE,)
        queue = self.queue or queues[0]
        if not all(queues) or len(set(queues)) != len(queues) or queue not in queues:
            raise ValueError(
                f"job type {self.name!r}: queues must be distinct names, its queue among them"
                f" (queue={queue!r}, queues={queues!r})"
            )
        object.__setattr__(self, "queue", queue)
        object.__setattr__(self, "queues", (queue, *(other for other in queues if other != queue)))


class Registry:
    """Job types by name."""

    def __init__(self) -> None:
        self._types: dict[str, JobType[Any, Any]] = {}

    def register(self, job_type: JobType[A, R]) -> JobType[A, R]:
        """Add a job type; a second type with the same name is a programming error."""
        existing = self._types.get(job_type.name)
        if existing is not None and existing is not job_type:
            raise ValueError(f"job type {job_type.name!r} is declared twice")
        self._types[job_type.name] = job_type
        return job_type

    def get(self, name: str) -> JobType[Any, Any]:
        """The job type called `name`, or `UnknownJobType`."""
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(f"No job type named {name!r} is registered.") from None

    def __iter__(self) -> Iterator[JobType[Any, Any]]:
        return iter(sorted(self._types.values(), key=lambda job_type: job_type.name))

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def unregister(self, name: str) -> None:
        """Forget a job type (test suites that declare types of their own for a while)."""
        self._types.pop(name, None)

    def public(self) -> list[JobType[Any, Any]]:
        """The job types callers may submit."""
        return [job_type for job_type in self if not job_type.is_internal]

    def queues(self) -> list[str]:
        """Every queue some job type may run on."""
        return sorted({queue for job_type in self._types.values() for queue in job_type.queues})


REGISTRY = Registry()


def job_type(
    name: str, *, args: type[A], result: type[R], description: str, **defaults: Any
) -> JobType[A, R]:
    """Declare a job type and register it; the one line a new job type needs in `shared`."""
    return REGISTRY.register(
        JobType(name=name, args=args, result=result, description=description, **defaults)
    )


def load_contracts(modules: Sequence[str]) -> Registry:
    """Import the deployment's contract modules (they declare with `job_type`)."""
    for module in modules:
        importlib.import_module(module)
    return REGISTRY


# Built-in job types: every installation ships these (contract table in API.md).


class NoArgs(Contract):
    """This job takes no arguments."""


class EchoArgs(Contract):
    message: Annotated[str, Field(max_length=10_000, description="Text to echo back.")]
    repeat: Annotated[int, Field(ge=1, le=100, description="How many times to repeat it.")] = 1


class EchoResult(Contract):
    message: Annotated[str, Field(description="The message repeated, no separator.")]


class SleepArgs(Contract):
    seconds: Annotated[float, Field(ge=0, le=3600, description="How long to sleep in total.")]
    steps: Annotated[int, Field(ge=1, le=1000, description="Progress reports, one per step.")] = 1


class SleepResult(Contract):
    slept: Annotated[float, Field(description="Seconds actually slept.")]


class FlakyArgs(Contract):
    fail_times: Annotated[int, Field(ge=0, le=20, description="Attempts that fail first.")]
    permanent: Annotated[
        bool, Field(description="Fail with a non-retryable error instead of a retryable one.")
    ] = False


class FlakyResult(Contract):
    attempts: Annotated[int, Field(description="The attempt that succeeded (1-based).")]


class HealthCheckResult(Contract):
    status: Annotated[Literal["ok"], Field(description="Always `ok` when a worker ran it.")]
    worker: Annotated[str, Field(description="Identity of the worker that ran it.")]


ECHO = job_type(
    "echo",
    args=EchoArgs,
    result=EchoResult,
    description="Return the message, repeated. Answers at once; for smoke tests.",
    timeout_seconds=30.0,
    examples=({"message": "hello", "repeat": 2},),
)
SLEEP = job_type(
    "sleep",
    args=SleepArgs,
    result=SleepResult,
    description="Sleep, reporting progress each step; stops promptly when cancelled.",
    timeout_seconds=3700.0,
    max_tries=1,
    examples=({"seconds": 2.0, "steps": 4},),
)
FLAKY = job_type(
    "flaky",
    args=FlakyArgs,
    result=FlakyResult,
    description="Fail the first `fail_times` attempts, then succeed; for testing retries.",
    max_tries=3,
    timeout_seconds=30.0,
    backoff=Backoff(base_seconds=1.0, factor=2.0, max_seconds=10.0),
    examples=({"fail_times": 2}, {"fail_times": 1, "permanent": True}),
)
HEALTH_CHECK = job_type(
    "health_check",
    args=NoArgs,
    result=HealthCheckResult,
    description=(
        "Prove that a worker is consuming jobs. Not started within 5 minutes, it expires: a"
        " late answer would prove nothing, and the schedule submits a new one by then."
    ),
    timeout_seconds=30.0,
    max_tries=1,
    start_within_seconds=300.0,
    examples=({},),
)


class PurgeExpiredArgs(Contract):
    batch_size: Annotated[
        int, Field(ge=1, le=100_000, description="Rows deleted per statement.")
    ] = 5000


class PurgeExpiredResult(Contract):
    deleted: Annotated[int, Field(description="Jobs deleted because their retention passed.")]


PURGE_EXPIRED = job_type(
    "purge_expired",
    args=PurgeExpiredArgs,
    result=PurgeExpiredResult,
    description="Delete jobs whose retention (`expires_at`) has passed; run by a schedule.",
    queue="maintenance",
    max_tries=1,
    timeout_seconds=300.0,
    is_internal=True,
)


class SendEmailArgs(Contract):
    to: Annotated[
        EmailStr, Field(description="Recipient address (one; a display name is dropped).")
    ]
    subject: Annotated[
        str,
        Field(
            max_length=998,
            pattern=r"^[^\r\n]*$",
            description="Subject line: at most 998 characters, no line breaks.",
        ),
    ]
    body: Annotated[str, Field(max_length=100_000, description="Plain-text body (UTF-8).")]


class SendEmailResult(Contract):
    message_id: Annotated[str, Field(description="The `Message-ID` header of the sent message.")]


SEND_EMAIL = job_type(
    "send_email",
    args=SendEmailArgs,
    result=SendEmailResult,
    description=(
        "Send a plain-text email over SMTP to the configured server. An unreachable server or "
        "a 4xx reply is retried (30 s, doubling, at most 10 min apart); a 5xx rejection fails "
        "the job at once."
    ),
    queue="email",
    max_tries=3,
    timeout_seconds=60.0,
    backoff=Backoff(base_seconds=30.0, factor=2.0, max_seconds=600.0),
    examples=(
        {
            "to": "ada@example.com",
            "subject": "Your report is ready",
            "body": "Hello Ada,\n\nthe report you asked for is attached to your account.",
        },
    ),
)


class TenantReportArgs(Contract):
    days: Annotated[int, Field(ge=1, le=365, description="How many days back to count.")] = 7


class JobCountEntry(Contract):
    name: Annotated[str, Field(description="Job type.")]
    status: Annotated[JobStatus, Field(description="Status the jobs are in now.")]
    count: Annotated[int, Field(ge=0, description="How many jobs have this type and status.")]


class TenantReportResult(Contract):
    days: Annotated[int, Field(description="The window counted, in days.")]
    since: Annotated[datetime, Field(description="Start of the window: jobs created since.")]
    counts: Annotated[
        list[JobCountEntry], Field(description="One entry per type and status, sorted by both.")
    ]
    total: Annotated[int, Field(description="All the tenant's jobs created in the window.")]


TENANT_REPORT = job_type(
    "tenant_report",
    args=TenantReportArgs,
    result=TenantReportResult,
    description=(
        "Count your jobs created in the last `days` days by type and status (this report "
        "included, as `running`). Only your own jobs are counted."
    ),
    queue="data_processing",
    timeout_seconds=60.0,
    examples=({"days": 7},),
)
