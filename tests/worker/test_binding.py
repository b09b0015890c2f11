"""Binding job functions to contracts: every registered type needs exactly one implementation."""

from __future__ import annotations

import pytest

from shared.contracts import REGISTRY, EchoResult, JobType, NoArgs, Registry
from shared.settings import Settings
from worker.binding import load_bindings
from worker.jobs.echo import echo
from worker.settings import worker_options


def _builtins_plus_orphan() -> Registry:
    registry = Registry()
    for job_type in REGISTRY:
        registry.register(job_type)
    registry.register(
        JobType(name="orphan", args=NoArgs, result=EchoResult, description="Nobody runs this.")
    )
    return registry


def test_every_builtin_type_is_bound() -> None:
    bindings = load_bindings(REGISTRY)
    assert {job_type.name for job_type in REGISTRY} <= set(bindings)
    assert bindings["echo"].function is echo
    assert bindings["echo"].job_type is REGISTRY.get("echo")


def test_a_type_without_implementation_is_refused() -> None:
    with pytest.raises(RuntimeError, match="without an implementation: orphan"):
        load_bindings(_builtins_plus_orphan())


def test_a_worker_will_not_start_with_an_unimplemented_type(settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="orphan"):
        worker_options(settings, registry=_builtins_plus_orphan())


def test_a_worker_serves_only_the_types_of_its_queue(settings: Settings) -> None:
    default = worker_options(settings, queue="default")
    names = {function.name for function in default["functions"]}
    assert names == {job_type.name for job_type in REGISTRY if job_type.queue == "default"}
    assert {"echo", "sleep", "flaky", "health_check"} <= names
    assert worker_options(settings, queue="no-such-queue")["functions"] == []
