"""The ARQ code `worker.loop` replaces, wraps or calls is the ARQ code it was written against.

`worker.loop` extends ARQ's `Worker` through methods and attributes ARQ does not promise to
keep. Each one is pinned here by a hash of its source in the installed ARQ; after an upgrade, a
failure names what changed: re-read that ARQ method against `worker.loop`, adapt the loop if
needed, then update the pin.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any, cast

import arq
import arq.constants
import pytest
from arq.worker import Worker

from worker.loop import JobgateWorker, WakeableWorker

ARQ_VERSION = "0.28.0"

PINNED_METHODS: dict[str, tuple[str, str]] = {
    # name on arq.worker.Worker: (hash of its source, what worker.loop does with it)
    "__init__": ("edfb0cd7e05e77cf", "extended; the loop uses the attributes it sets"),
    "main": ("45ca1591c9717466", "replaced by WakeableWorker.main"),
    "_poll_iteration": ("f8d39d823a0a59f2", "replaced by WakeableWorker._poll_iteration"),
    "_cancel_aborted_jobs": ("54575eaf8682f95b", "wrapped (rate-limited) and called"),
    "start_jobs": ("b45797cfa40bed7f", "replaced by WakeableWorker.start_due_jobs"),
    "run_job": ("589a19059ff84ee7", "replaced by WakeableWorker._run_taken"),
    "finish_job": ("903f09c92830d3fd", "replaced by WakeableWorker._write_ends"),
    "finish_failed_job": ("3e16087f318a7acf", "replaced by WakeableWorker._write_ends"),
    "_release_sem_dec_counter_on_complete": (
        "0ed101482e942c33",
        "replaced by WakeableWorker._job_task_done",
    ),
    "heart_beat": ("2e9959bea66dc551", "called at the end of each poll"),
    "_jobs_started": ("c5643370c110c7cd", "called for the burst limit"),
    "close": ("5bcc9cb356680829", "called by stop_worker, which finishes it if Redis is down"),
    "handle_sig": ("985ff7ba01aa8f04", "called by close; must not stop a drain early"),
    "run": ("e683c7f402930145", "runs main for `arq worker.WorkerSettings` (worker.arq_command)"),
    "async_run": ("f3434c3dd359b31b", "runs main for `arq worker.WorkerSettings`"),
    "pool": ("d6b9a7d2d5280e7f", "read as the worker's Redis client"),
}

PINNED_CONSTANTS = {
    # arq.constants the loop, the take script and shared.keys build ARQ's keys from
    "job_key_prefix": "arq:job:",
    "in_progress_key_prefix": "arq:in-progress:",
    "retry_key_prefix": "arq:retry:",
    "result_key_prefix": "arq:result:",
    "abort_jobs_ss": "arq:abort",
    "abort_job_max_age": 60,
    "health_check_key_suffix": ":health-check",
}


def _source_hash(function: Callable[..., Any]) -> str:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return "no source"
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _method(name: str) -> Callable[..., Any]:
    found: Any = inspect.getattr_static(Worker, name)
    return cast(Callable[..., Any], found.fget if isinstance(found, property) else found)


def changed_methods() -> list[str]:
    """What to re-read: each pinned ARQ method whose source is no longer the pinned one."""
    changed = []
    for name, (pinned, use) in PINNED_METHODS.items():
        if not hasattr(Worker, name):
            changed.append(f"arq.worker.Worker.{name} is gone (worker.loop: {use})")
        elif _source_hash(_method(name)) != pinned:
            changed.append(
                f"arq.worker.Worker.{name} changed (hash {_source_hash(_method(name))}, pinned "
                f"{pinned}): re-read the override in worker/loop.py ({use}), then update the pin"
            )
    return changed


def test_the_installed_arq_is_the_pinned_version() -> None:
    assert arq.__version__ == ARQ_VERSION, (
        f"ARQ {arq.__version__} is installed, worker/loop.py was written against {ARQ_VERSION}: "
        "re-read every method pinned in this file against worker/loop.py"
    )


def test_the_arq_methods_the_loop_relies_on_are_unchanged() -> None:
    changed = changed_methods()
    assert not changed, "\n".join(changed)


def test_the_arq_constants_the_loop_relies_on_are_unchanged() -> None:
    changed = {
        name: getattr(arq.constants, name, None)
        for name, value in PINNED_CONSTANTS.items()
        if getattr(arq.constants, name, None) != value
    }
    assert not changed, (
        f"arq.constants changed: {changed}; worker/loop.py, worker/take.py and shared/keys.py "
        "build ARQ's keys from them: re-read them, then update the pins"
    )


@pytest.mark.parametrize("worker_class", [WakeableWorker, JobgateWorker])
def test_every_arq_method_the_loop_overrides_is_pinned(worker_class: type[Worker]) -> None:
    overridden = {
        name
        for name in vars(worker_class)
        if hasattr(Worker, name) and name not in {"__doc__", "__module__", "__annotations__"}
    }
    assert overridden <= set(PINNED_METHODS), (
        f"{worker_class.__name__} overrides ARQ's {sorted(overridden - set(PINNED_METHODS))}: "
        "pin them in this file"
    )


def test_a_changed_arq_method_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: an ARQ whose `heart_beat` differs is reported, by name."""

    async def heart_beat(self: Worker) -> None:
        await self.record_health()

    monkeypatch.setattr(Worker, "heart_beat", heart_beat)
    changed = changed_methods()
    assert len(changed) == 1
    assert changed[0].startswith("arq.worker.Worker.heart_beat changed")
    assert "re-read the override in worker/loop.py" in changed[0]
