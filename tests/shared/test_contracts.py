"""Job type declarations: retry backoff, queues and the registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from shared.arg_paths import ArgPathError
from shared.contracts import (
    ECHO,
    FLAKY,
    HEALTH_CHECK,
    REGISTRY,
    SEND_EMAIL,
    SLEEP,
    TENANT_REPORT,
    Backoff,
    ConcurrencyLimit,
    EchoArgs,
    EchoResult,
    JobType,
    NoArgs,
    Registry,
)
from shared.errors import QueueNotAllowed, UnknownJobType


def _fixed(value: float) -> Callable[[], float]:
    return lambda: value


class TestBackoff:
    def test_grows_exponentially_up_to_the_cap(self) -> None:
        backoff = Backoff(base_seconds=1.0, factor=2.0, max_seconds=10.0, jitter=0.2)
        delays = [backoff.delay_seconds(retry, rand=lambda: 0.0) for retry in range(1, 7)]
        assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]

    def test_retry_zero_or_less_waits_the_base_delay(self) -> None:
        backoff = Backoff(base_seconds=3.0)
        assert backoff.delay_seconds(0, rand=lambda: 0.0) == 3.0
        assert backoff.delay_seconds(-5, rand=lambda: 0.0) == 3.0

    def test_jitter_only_shortens_by_at_most_its_fraction(self) -> None:
        backoff = Backoff(base_seconds=60.0, factor=2.0, max_seconds=600.0, jitter=0.2)
        assert backoff.delay_seconds(1, rand=lambda: 1.0) == pytest.approx(48.0)
        assert backoff.delay_seconds(1, rand=lambda: 0.5) == pytest.approx(54.0)
        assert backoff.delay_seconds(5, rand=lambda: 1.0) == pytest.approx(480.0)  # capped first
        for retry in range(1, 12):
            undelayed = min(600.0, 60.0 * 2.0 ** (retry - 1))
            draws = [step / 20 for step in range(20)]  # rand() is in [0, 1)
            for draw in draws:
                delay = backoff.delay_seconds(retry, rand=_fixed(draw))
                assert 0.8 * undelayed < delay <= undelayed
            for _ in range(20):  # the default, real random source
                assert 0.8 * undelayed < backoff.delay_seconds(retry) <= undelayed

    def test_is_deterministic_with_a_fixed_rand(self) -> None:
        backoff = Backoff()

        def replay() -> list[float]:
            draws = iter([0.1, 0.7, 0.3, 0.9, 0.5])
            return [backoff.delay_seconds(n, rand=lambda: next(draws)) for n in range(1, 6)]

        assert replay() == replay()
        assert replay() == pytest.approx([60 * 0.98, 120 * 0.86, 240 * 0.94, 480 * 0.82, 540.0])

    def test_without_jitter_ignores_rand(self) -> None:
        backoff = Backoff(base_seconds=2.0, jitter=0.0)
        assert backoff.delay_seconds(2, rand=lambda: 0.9) == 4.0


def _job_type(name: str, queue: str = "default") -> JobType[EchoArgs, EchoResult]:
    return JobType(name=name, args=EchoArgs, result=EchoResult, description="d", queue=queue)


class TestRegistry:
    def test_registers_and_finds_by_name(self) -> None:
        registry = Registry()
        job_type = _job_type("ping")
        assert registry.register(job_type) is job_type
        assert registry.get("ping") is job_type
        assert "ping" in registry
        assert "pong" not in registry

    def test_registering_the_same_declaration_again_is_harmless(self) -> None:
        registry = Registry()
        job_type = _job_type("ping")
        registry.register(job_type)
        registry.register(job_type)
        assert list(registry) == [job_type]

    def test_a_second_type_with_the_same_name_is_refused(self) -> None:
        registry = Registry()
        registry.register(_job_type("ping"))
        with pytest.raises(ValueError, match="'ping' is declared twice"):
            registry.register(
                JobType(name="ping", args=NoArgs, result=EchoResult, description="other")
            )
        assert registry.get("ping").args is EchoArgs

    def test_an_unknown_name_is_unknown_job_type(self) -> None:
        with pytest.raises(UnknownJobType, match="'nope'"):
            Registry().get("nope")
        with pytest.raises(UnknownJobType):
            REGISTRY.get("nope")

    def test_iterates_by_name_and_lists_queues(self) -> None:
        registry = Registry()
        for job_type in (_job_type("b", "low"), _job_type("a"), _job_type("c", "low")):
            registry.register(job_type)
        assert [job_type.name for job_type in registry] == ["a", "b", "c"]
        assert registry.queues() == ["default", "low"]

    def test_builtin_types_are_registered(self) -> None:
        assert REGISTRY.get("echo") is ECHO
        assert {"echo", "sleep", "flaky", "health_check"} <= {t.name for t in REGISTRY}


def _queued(**queues: Any) -> JobType[EchoArgs, EchoResult]:
    return JobType(name="q", args=EchoArgs, result=EchoResult, description="d", **queues)


class TestQueues:
    @pytest.mark.parametrize(
        ("declared", "queue", "queues"),
        [
            ({}, "default", ("default",)),
            ({"queue": "email"}, "email", ("email",)),
            ({"queues": ("default", "bulk")}, "default", ("default", "bulk")),
            ({"queues": ("default", "bulk"), "queue": "bulk"}, "bulk", ("bulk", "default")),
        ],
        ids=["nothing", "queue", "queues", "both"],
    )
    def test_queue_and_queues_fill_each_other_the_default_first(
        self, declared: dict[str, object], queue: str, queues: tuple[str, ...]
    ) -> None:
        job_type = _queued(**declared)
        assert (job_type.queue, job_type.queues) == (queue, queues)

    @pytest.mark.parametrize(
        "declared",
        [
            {"queues": ("default", "bulk"), "queue": "email"},
            {"queues": ("bulk", "bulk")},
            {"queues": ("default", "")},
        ],
        ids=["queue-not-among-queues", "twice", "empty-name"],
    )
    def test_queues_that_cannot_be_meant_are_refused_at_declaration(
        self, declared: dict[str, object]
    ) -> None:
        with pytest.raises(ValueError, match="job type 'q': queues must be distinct names"):
            _queued(**declared)

    def test_queue_for_is_the_requested_queue_if_allowed_else_the_default(self) -> None:
        job_type = _queued(queues=("default", "bulk"))
        assert job_type.queue_for(None) == "default"
        assert job_type.queue_for("bulk") == "bulk"
        assert job_type.queue_for("default") == "default"

    @pytest.mark.parametrize("requested", ["email", "", "Bulk"])
    def test_queue_for_refuses_any_other_queue(self, requested: str) -> None:
        with pytest.raises(QueueNotAllowed) as refused:
            _queued(queues=("default", "bulk")).queue_for(requested)
        assert refused.value.message == (
            f"Jobs of type 'q' may run on 'default', 'bulk', not on {requested!r}."
        )
        assert refused.value.issues is None  # the gateway adds where in the body

    def test_the_registry_lists_every_queue_a_type_may_run_on(self) -> None:
        registry = Registry()
        registry.register(_job_type("a"))
        registry.register(
            JobType(
                name="b", args=EchoArgs, result=EchoResult, description="d", queues=("low", "bulk")
            )
        )
        assert registry.queues() == ["bulk", "default", "low"]


class TestExamples:
    def test_an_example_the_args_refuse_is_refused_at_declaration(self) -> None:
        with pytest.raises(ValidationError):
            JobType(
                name="bad_example",
                args=EchoArgs,
                result=EchoResult,
                description="d",
                examples=({"message": "hi", "repeat": 0},),
            )

    def test_every_public_built_in_type_has_an_example(self) -> None:
        built_in = (ECHO, SLEEP, FLAKY, HEALTH_CHECK, SEND_EMAIL, TENANT_REPORT)
        assert [job_type.name for job_type in built_in if not job_type.examples] == []


def _keyed(limit: ConcurrencyLimit) -> JobType[EchoArgs, EchoResult]:
    return JobType(
        name="keyed", args=EchoArgs, result=EchoResult, description="d", concurrency=limit
    )


class TestConcurrencyLimit:
    def test_a_key_naming_a_plain_field_of_the_args_is_declared(self) -> None:
        job_type = _keyed(ConcurrencyLimit(key="message", limit=2, strategy="cancel_newest"))
        assert job_type.concurrency == ConcurrencyLimit("message", 2, "cancel_newest")
        assert ConcurrencyLimit(key="message").limit == 1
        assert ConcurrencyLimit(key="message").strategy == "queue"

    @pytest.mark.parametrize(
        ("key", "message"),
        [("customer", "EchoArgs has no field 'customer'"), ("message.id", "is not a nested model")],
    )
    def test_a_key_that_is_not_a_field_of_the_args_is_refused_at_declaration(
        self, key: str, message: str
    ) -> None:
        with pytest.raises(ArgPathError, match=message):
            _keyed(ConcurrencyLimit(key=key))

    def test_a_limit_below_one_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 1, not 0"):
            ConcurrencyLimit(key="message", limit=0)

    def test_an_unknown_strategy_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no concurrency strategy 'latest'"):
            ConcurrencyLimit(key="message", strategy="latest")  # type: ignore[arg-type]

    def test_built_in_types_declare_none(self) -> None:
        assert [job_type.name for job_type in REGISTRY if job_type.concurrency] == []
