"""Liveness of one worker process: its event loop touches a file, a probe checks the file's age.

ARQ's own health key (`jobgate:worker-health:<queue>`) is one per queue, shared by every
process serving that queue: it says the queue has *a* live worker, not that *this* container's
is alive, and reading it needs Redis, which a worker is built to outlive. A file touched from
the event loop answers what a container HEALTHCHECK or a Kubernetes liveness probe asks: is
this process still turning? (A blocked loop or a hung process stops touching it.)

`python -m worker.heartbeat PATH` checks it with the standard library only: probes run every
few seconds, and importing the `jobgate` CLI (gateway and worker with it) is far heavier
than the check itself.
`jobgate worker-health` is the same check for people.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

STALE_AFTER_SECONDS = 30.0
"""A heartbeat older than this means the worker is stuck (its loop touches it every second)."""


def touch(path: Path) -> None:
    """Mark the worker alive now (a local file's mtime: microseconds, fine on the event loop)."""
    path.touch()


def clear(path: Path) -> None:
    """Mark the worker stopped."""
    path.unlink(missing_ok=True)


def heartbeat_age_seconds(path: Path) -> float | None:
    """Seconds since the worker last touched `path`; None if it never did (or has stopped)."""
    try:
        return max(time.time() - path.stat().st_mtime, 0.0)
    except FileNotFoundError:
        return None


def check(path: Path, *, stale_after_seconds: float = STALE_AFTER_SECONDS) -> str | None:
    """None if the worker is alive, else why not (for the probe's output)."""
    age = heartbeat_age_seconds(path)
    if age is None:
        return f"no heartbeat at {path}: the worker is not running (or not started yet)"
    if age > stale_after_seconds:
        return f"heartbeat {age:.0f} s old (limit {stale_after_seconds:g} s): the worker is stuck"
    return None


async def beat_forever(
    path: Path, *, interval_seconds: float, when: Callable[[], bool] | None = None
) -> None:
    """Touch `path` every `interval_seconds` (only while `when()` holds, if given); remove it
    when stopped (a stopped worker is dead)."""
    try:
        while True:
            if when is None or when():
                touch(path)
            await asyncio.sleep(interval_seconds)
    finally:
        clear(path)


def main(argv: list[str]) -> int:
    """`python -m worker.heartbeat PATH`: exit 0 if the worker is alive, 1 (and why) if not."""
    if len(argv) != 1:
        print("usage: python -m worker.heartbeat HEARTBEAT_FILE", file=sys.stderr)
        return 2
    problem = check(Path(argv[0]))
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
