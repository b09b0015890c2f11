"""Binding job functions to their contracts: `@implements(ECHO)`, checked at start-up."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.contracts import Contract, JobType, Registry
from worker.context import Hook, JobContext

A = TypeVar("A", bound=Contract)
R = TypeVar("R", bound=Contract)
JobFunction = Callable[[JobContext, A], Awaitable[R]]

BUILTIN_JOB_MODULES = (
    "worker.jobs.echo",
    "worker.jobs.sleep",
    "worker.jobs.flaky",
    "worker.jobs.health_check",
    "worker.jobs.send_email",
    "worker.jobs.tenant_report",
    "worker.jobs.purge_expired",
)


@dataclass(frozen=True)
class Hooks:
    """Callbacks after an attempt's outcome is recorded; their errors never change it."""

    on_success: Hook | None = None
    on_retry: Hook | None = None
    on_failure: Hook | None = None


@dataclass(frozen=True)
class Binding:
    """A job type, the function that runs it, and its lifecycle hooks."""

    job_type: JobType[Any, Any]
    function: JobFunction[Any, Any]
    hooks: Hooks = Hooks()


_BOUND: list[Binding] = []


def implements(
    job_type: JobType[A, R],
    *,
    on_success: Hook | None = None,
    on_retry: Hook | None = None,
    on_failure: Hook | None = None,
) -> Callable[[JobFunction[A, R]], JobFunction[A, R]]:
    """Declare that the decorated coroutine runs jobs of `job_type`, with optional hooks."""
    hooks = Hooks(on_success=on_success, on_retry=on_retry, on_failure=on_failure)

    def bind(function: JobFunction[A, R]) -> JobFunction[A, R]:
        _BOUND.append(Binding(job_type=job_type, function=function, hooks=hooks))
        return function

    return bind


def bound_function(job_type: JobType[A, R]) -> JobFunction[A, R]:
    """The function `@implements(job_type)` bound (a deployment's module must be imported)."""
    for module in BUILTIN_JOB_MODULES:
        importlib.import_module(module)
    for binding in reversed(_BOUND):
        if binding.job_type is job_type:
            return binding.function
    raise LookupError(f"no function implements job type {job_type.name!r}")


def load_bindings(registry: Registry, modules: Sequence[str] = ()) -> dict[str, Binding]:
    """Import the job modules and pair every registered type with exactly one function."""
    for module in (*BUILTIN_JOB_MODULES, *modules):
        importlib.import_module(module)
    bindings: dict[str, Binding] = {}
    for binding in _BOUND:
        name = binding.job_type.name
        if name in bindings and bindings[name].function is not binding.function:
            raise RuntimeError(f"job type {name!r} has two implementations")
        bindings[name] = binding
    missing = [job_type.name for job_type in registry if job_type.name not in bindings]
    if missing:
        raise RuntimeError(f"job types without an implementation: {', '.join(missing)}")
    return bindings
