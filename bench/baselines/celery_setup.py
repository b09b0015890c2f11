"""Baseline 3: Celery, installed only in a virtualenv of the bench's own, run as subprocesses.

`bench/.venv-celery` is made with `uv venv` + `uv pip install "celery[redis]"` (or `venv` + pip
without uv) on first use and reused after. If that fails, the Celery rows say why instead.
The worker is prefork with 2 processes, `acks_late`, Redis broker and result backend.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.processes import REPO_ROOT, running, spawn
from bench.results import Figure, Results
from bench.services import flush_redis
from bench.stats import percentile

VENV = REPO_ROOT / "bench" / ".venv-celery"
REQUIREMENT = "celery[redis]"
INSTALL_TIMEOUT_SECONDS = 600
FIGURES = (Figure.CELERY_ENQUEUE_JOBS_S, Figure.CELERY_DRAIN_JOBS_S, Figure.CELERY_PICKUP_P50_MS)


class CeleryUnavailable(Exception):
    """The Celery virtualenv could not be made; the message says why."""


def _run(argv: list[str]) -> None:
    # Fixed programs and arguments, no shell.
    done = subprocess.run(  # noqa: S603
        argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS, check=False
    )
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CeleryUnavailable(f"{Path(argv[0]).name} {argv[1]} failed: {last[0][:120]}")


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_celery_venv() -> str:
    """The virtualenv's Python, made and filled if needed; returns Celery's version."""
    python, venv = str(_venv_python()), str(VENV)
    check = [python, "-c", "import celery, redis; print(celery.__version__)"]
    if not _venv_python().exists() or subprocess.run(check, capture_output=True).returncode:  # noqa: S603
        uv = shutil.which("uv")
        try:
            if uv:
                _run([uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, venv])
                _run([uv, "pip", "install", "--quiet", "--python", python, REQUIREMENT])
            else:
                _run([sys.executable, "-m", "venv", venv])
                _run([python, "-m", "pip", "install", "--quiet", REQUIREMENT])
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CeleryUnavailable(f"{type(exc).__name__}: {exc}") from None
    version = subprocess.run(check, capture_output=True, text=True, check=False)  # noqa: S603
    if version.returncode:
        raise CeleryUnavailable("celery does not import in bench/.venv-celery")
    return version.stdout.strip()


async def _driver(context: Context, *arguments: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        str(_venv_python()),
        "-m",
        "bench.baselines.celery_driver",
        *arguments,
        cwd=REPO_ROOT,
        env={**os.environ, "BENCH_CELERY_REDIS_URL": context.redis_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"celery driver {arguments[0]} failed: {stderr.decode()[-1500:]}")
    answer: dict[str, Any] = json.loads(stdout)
    return answer


async def measure_celery(context: Context, results: Results) -> None:
    """Celery's enqueue rate, pickup latency and drain rate."""
    if not context.redis_url.startswith(("redis://", "rediss://")):
        results.miss(FIGURES, "skipped (Celery baseline needs Redis over TCP)")
        return
    try:
        version = await asyncio.to_thread(ensure_celery_venv)
    except CeleryUnavailable as exc:
        results.miss(FIGURES, f"skipped ({exc})")
        return
    sizes = context.sizes
    await flush_redis(context.redis_url)
    enqueued = await _driver(context, "enqueue", f"--jobs={sizes.celery_enqueue_jobs}")
    results.record(Figure.CELERY_ENQUEUE_JOBS_S, enqueued["rate"])
    await flush_redis(context.redis_url)
    argv = [str(_venv_python()), "-m", "celery", "-A", "bench.baselines.celery_app", "worker"]
    argv += ["--pool=prefork", "--concurrency=2", "--loglevel=WARNING"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    env = {**os.environ, "BENCH_CELERY_REDIS_URL": context.redis_url}
    worker = spawn("celery-worker", argv, env=env, log_dir=context.log_dir)
    async with running(worker):
        picked = await _driver(context, "pickup", f"--samples={sizes.baseline_pickup_samples}")
        results.record(Figure.CELERY_PICKUP_P50_MS, percentile(picked["latencies"], 0.5) * 1000)
        drained = await _driver(
            context,
            "drain",
            f"--jobs={sizes.celery_drain_jobs}",
            f"--deadline={sizes.drain_deadline_seconds}",
        )
        worker.check_alive()
    results.record(Figure.CELERY_DRAIN_JOBS_S, drained["done"] / drained["seconds"])
    results.note(f"Celery {version}: prefork, 2 processes, acks_late, Redis broker and results.")
    if drained["done"] < drained["jobs"]:
        results.note(f"Celery drain: {drained['done']:,} of {drained['jobs']:,} results stored.")
    await flush_redis(context.redis_url)
