"""The Celery baseline's client, run inside the bench's Celery virtualenv; prints JSON.

    python -m bench.baselines.celery_driver enqueue --jobs 5000     # no worker running
    python -m bench.baselines.celery_driver pickup --samples 30     # worker idle
    python -m bench.baselines.celery_driver drain --jobs 10000      # worker idle and ready

Drain, like jobgate's and raw ARQ's: the clock runs from the first `delay()` until the broker
holds no message, queued or unacknowledged (with acks_late a message is acknowledged once its
task has run and its result is stored); then every result key must exist.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from bench.baselines.celery_app import app, noop, stamp

QUEUE, UNACKED = "celery", "unacked"


def _wait_ready(timeout_seconds: float = 60) -> None:
    stamp.delay().get(timeout=timeout_seconds)


def enqueue(jobs: int) -> dict[str, Any]:
    """`delay()` rate from one process."""
    started = time.perf_counter()
    for _ in range(jobs):
        noop.delay()
    seconds = time.perf_counter() - started
    return {"jobs": jobs, "seconds": seconds, "rate": jobs / seconds}


def pickup(samples: int) -> dict[str, Any]:
    """Seconds from `delay()` to the task starting, one task at a time, random gaps."""
    _wait_ready()
    latencies = []
    for _ in range(samples):
        time.sleep(random.uniform(0.05, 0.55))  # noqa: S311 (not cryptography)
        sent = time.time()
        started = stamp.delay().get(timeout=10)
        latencies.append(started - sent)
    return {"latencies": latencies}


def drain(jobs: int, deadline_seconds: float) -> dict[str, Any]:
    """Send `jobs` no-op tasks to a ready worker; seconds until all ran."""
    _wait_ready()
    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        started = time.perf_counter()
        ids = [noop.delay().id for _ in range(jobs)]
        while time.perf_counter() - started < deadline_seconds:
            if client.llen(QUEUE) == 0 and client.hlen(UNACKED) == 0:
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - started
        keys = [f"celery-task-meta-{task_id}" for task_id in ids]
        done = sum(client.exists(*keys[i : i + 1000]) for i in range(0, len(keys), 1000))
    return {"jobs": jobs, "done": done, "seconds": seconds}


def main() -> None:
    """Parse the command and print its JSON answer."""
    parser = argparse.ArgumentParser(prog="python -m bench.baselines.celery_driver")
    parser.add_argument("command", choices=["enqueue", "pickup", "drain"])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--deadline", type=float, default=90.0)
    args = parser.parse_args()
    if args.command == "enqueue":
        answer = enqueue(args.jobs)
    elif args.command == "pickup":
        answer = pickup(args.samples)
    else:
        answer = drain(args.jobs, args.deadline)
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
