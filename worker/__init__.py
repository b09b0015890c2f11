"""The jobgate worker: `arq worker.WorkerSettings` runs it."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Built on first access, not at import: importing `worker.runner` in a test or a tool must
    # not read the environment or require a database URL.
    if name == "WorkerSettings":
        from worker.arq_command import build_worker_settings

        return build_worker_settings()
    raise AttributeError(name)
