"""Real workers whose binding for one job type is changed (extra hooks, another function)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.settings import Settings
from tests.conftest import WorkerFactory
from worker.binding import Binding
from worker.settings import worker_options


async def start_worker_with_binding(
    settings: Settings,
    start_worker: WorkerFactory,
    name: str,
    change: Callable[[Binding], Binding],
) -> None:
    """Start a worker as usual, then swap the binding of job type `name` for `change(it)`."""
    startup = worker_options(settings)["on_startup"]

    async def on_startup(ctx: dict[str, Any]) -> None:
        await startup(ctx)
        ctx["bindings"] = {**ctx["bindings"], name: change(ctx["bindings"][name])}

    await start_worker(on_startup=on_startup)
