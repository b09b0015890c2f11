"""`jobgate worker --processes N`: N children, crashed ones replaced, SIGTERM drains them all."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.chaos.conftest import SpawnWorker, WorkerProcess
from tests.factories import make_tenant, submit, wait_for_status
from tests.polling import poll_until


def _children(worker: WorkerProcess) -> set[int]:
    pid = worker.process.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


async def test_children_run_jobs_are_replaced_when_killed_and_drain_on_sigterm(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_worker: SpawnWorker,
) -> None:
    _, token = await make_tenant(sessionmaker)
    supervisor = spawn_worker("--processes", "2")
    await poll_until(lambda: len(_children(supervisor)) == 2, timeout=20, what="two children")
    first = _children(supervisor)

    jobs = [await submit(client, token, "echo", {"message": f"m{n}"}) for n in range(10)]
    for job in jobs:
        await wait_for_status(client, token, job["id"], "succeeded", timeout=30)

    killed = min(first)
    os.kill(killed, signal.SIGKILL)
    await poll_until(
        lambda: len(_children(supervisor)) == 2 and killed not in _children(supervisor),
        timeout=20,
        what="the killed child replaced",
    )
    await supervisor.wait_for_log("worker.child_crashed")
    assert max(first) in _children(supervisor)  # the other child was left alone
    later = await submit(client, token, "echo", {"message": "after the crash"})
    await wait_for_status(client, token, later["id"], "succeeded", timeout=30)

    children = _children(supervisor)
    supervisor.signal(signal.SIGTERM)
    assert await supervisor.exit_code(timeout=30) == 0
    assert all(_is_gone(child) for child in children)


def _is_gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent has not reaped yet."""
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split()[2] == "Z"


async def test_the_heartbeat_stops_while_any_child_is_stuck(
    spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    heartbeat = tmp_path / "worker.heartbeat"
    supervisor = spawn_worker(
        "--processes", "2", worker_heartbeat_file=heartbeat, worker_health_interval_seconds=0.2
    )
    children = [heartbeat.with_name(f"{heartbeat.name}.{index}") for index in range(2)]
    await poll_until(
        lambda: all(_age(path) < 1 for path in [heartbeat, *children]),
        timeout=30,
        what="the supervisor and both children beating",
    )
    stuck = min(_children(supervisor))
    os.kill(stuck, signal.SIGSTOP)  # its event loop stops turning, the process stays
    try:
        # Its beat goes stale after five intervals (1 s); from then on the supervisor's too.
        await poll_until(lambda: _age(heartbeat) > 2, timeout=10, what="the heartbeat stopping")
        assert min(_age(child) for child in children) < 1  # the other child still beats
    finally:
        os.kill(stuck, signal.SIGCONT)
    await poll_until(lambda: _age(heartbeat) < 1, timeout=10, what="the heartbeat resuming")

    supervisor.signal(signal.SIGTERM)
    assert await supervisor.exit_code(timeout=30) == 0
    assert not heartbeat.exists()  # a stopped worker is not alive


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
