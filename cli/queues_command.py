"""`jobgate queues ...`: list queues, pause and resume one (see docs/flow-control.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession

from cli.inspect_command import duration, table
from cli.jobs_command import run_operator_action
from shared.contracts import load_contracts
from shared.jobs import queue_pauses
from shared.jobs.queue_pauses import QueueState
from shared.jobs.queue_stats import PRIORITIES
from shared.settings import get_settings

T = TypeVar("T")

queues = typer.Typer(help="See queues; pause and resume them.", no_args_is_help=True)


def _run(action: Callable[[AsyncSession, ArqRedis, list[str]], Awaitable[T]]) -> T:
    """Run one action with a session, a Redis client and the known queues; errors exit 1."""
    known = load_contracts(get_settings().contract_modules).queues()
    return run_operator_action(lambda session, redis: action(session, redis, known))


def render(states: list[QueueState]) -> str:
    """The queues as a plain-text table."""
    rows = [
        [
            state.queue,
            "paused" if state.is_paused else "running",
            *(str(state.waiting[priority]) for priority in PRIORITIES),
            str(state.running),
            duration(state.oldest_waiting_age_seconds),
            "" if state.pause is None else _pause_note(state),
        ]
        for state in states
    ]
    headers = ["QUEUE", "STATE", *(p.upper() for p in PRIORITIES), "RUNNING", "OLDEST DUE", ""]
    return table(headers, rows)


def _pause_note(state: QueueState) -> str:
    assert state.pause is not None  # noqa: S101 (only called for paused queues)
    note = f"by {state.pause.paused_by} at {state.pause.paused_at:%Y-%m-%d %H:%M:%S}"
    return f"{note}: {state.pause.reason}" if state.pause.reason else note


@queues.command("list")
def queues_list() -> None:
    """Every queue: paused or not, jobs waiting by priority, running, oldest due."""

    async def action(session: AsyncSession, redis: ArqRedis, known: list[str]) -> str:
        return render(await queue_pauses.queue_states(session, redis, queues=known))

    typer.echo(_run(action))


@queues.command("pause")
def queues_pause(
    queue: str,
    reason: Annotated[str | None, typer.Option(help="Why, for other operators.")] = None,
) -> None:
    """Pause a queue: workers start none of its jobs (running ones finish); submits still queue."""

    async def action(session: AsyncSession, redis: ArqRedis, known: list[str]) -> None:
        queue_pauses.require_known(queue, known)
        await queue_pauses.pause_queue(session, redis, queue=queue, paused_by="cli", reason=reason)

    _run(action)
    typer.echo(f"queue {queue}: paused")


@queues.command("resume")
def queues_resume(queue: str) -> None:
    """Resume a queue: its waiting jobs start at once, in their usual order."""

    async def action(session: AsyncSession, redis: ArqRedis, known: list[str]) -> None:
        queue_pauses.require_known(queue, known)
        await queue_pauses.resume_queue(session, redis, queue=queue)

    _run(action)
    typer.echo(f"queue {queue}: resumed")
