"""A plain ARQ worker with no-op functions, no database: the raw ARQ baseline's worker process.

    python -m bench.baselines.arq_worker --redis-url redis://... --max-jobs 100 --poll-delay 0.01

Everything else is ARQ's default (pickle payloads, results kept for an hour, the default event
loop, as jobgate's worker uses).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func

QUEUE = "bench:arq:queue"


async def noop(ctx: dict[str, Any]) -> None:
    """Do nothing."""


async def stamp(ctx: dict[str, Any]) -> float:
    """The wall-clock time as the function starts."""
    return time.time()


def main() -> None:
    """Run the worker until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.baselines.arq_worker")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--max-jobs", type=int, required=True)
    parser.add_argument("--poll-delay", type=float, required=True)
    args = parser.parse_args()
    worker = Worker(
        functions=[func(noop, name="noop"), func(stamp, name="stamp")],
        redis_settings=RedisSettings.from_dsn(args.redis_url),
        queue_name=QUEUE,
        max_jobs=args.max_jobs,
        poll_delay=args.poll_delay,
    )
    worker.run()


if __name__ == "__main__":
    main()
