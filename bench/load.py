"""The load generator: N keep-alive connections sending one request over and over.

Run as its own process (`python -m bench.load ...`, JSON on stdout) so it never shares a CPU
time slice with the server it loads; `run_load` starts it and reads the answer. The same
generator loads jobgate and the bare endpoint. It reports its own CPU use (`client_cpu`,
as a fraction of one core) so a reader can check it was not the bottleneck.

Two modes: `--seconds` measures for a fixed time after `--warmup` seconds (throughput and
latency); `--requests` sends a fixed number of requests and stops (a fixed amount of work).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.http import Connection, encode_request
from bench.stats import summarise_ms


@dataclass(frozen=True)
class LoadSpec:
    """What to send, how hard and for how long."""

    port: int
    path: str
    method: str = "POST"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    connections: int = 50
    seconds: float | None = 10.0
    warmup_seconds: float = 1.0
    requests: int | None = None
    host: str = "127.0.0.1"


@dataclass
class _Tally:
    recording: bool = False
    stop: bool = False
    remaining: int | None = None
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


async def _connection_loop(spec: LoadSpec, raw: bytes, tally: _Tally) -> None:
    connection = Connection(spec.host, spec.port)
    try:
        while not tally.stop:
            if tally.remaining is not None:
                if tally.remaining <= 0:
                    return
                tally.remaining -= 1
            started = time.perf_counter()
            try:
                response = await connection.request(raw)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                tally.errors[type(exc).__name__] += 1
                await connection.close()
                await asyncio.sleep(0.01)
                continue
            if tally.recording:
                tally.latencies.append(time.perf_counter() - started)
                tally.statuses[response.status] += 1
    finally:
        await connection.close()


async def run(spec: LoadSpec) -> dict[str, Any]:
    """Apply the load and summarise it (runs inside the load generator's process)."""
    raw = encode_request(
        spec.method,
        spec.path,
        host=f"{spec.host}:{spec.port}",
        headers=spec.headers,
        body=spec.body,
    )
    tally = _Tally(remaining=spec.requests)
    tasks = [
        asyncio.create_task(_connection_loop(spec, raw, tally)) for _ in range(spec.connections)
    ]
    if spec.requests is None and spec.warmup_seconds > 0:
        await asyncio.sleep(spec.warmup_seconds)
    tally.recording = True
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started_unix, started = time.time(), time.perf_counter()
    if spec.requests is None:
        await asyncio.sleep(spec.seconds or 0)
        # Count what completed inside the window only (as it started, so it ends).
        tally.stop, tally.recording = True, False
        elapsed = time.perf_counter() - started
        await asyncio.gather(*tasks)
    else:
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    done = len(tally.latencies)
    return {
        "started_unix": started_unix,
        "finished_unix": started_unix + elapsed,
        "seconds": elapsed,
        "requests": done,
        "rps": done / elapsed if elapsed > 0 else 0.0,
        "statuses": {str(status): count for status, count in tally.statuses.items()},
        "errors": dict(tally.errors),
        "client_cpu": cpu / elapsed if elapsed > 0 else 0.0,
        **summarise_ms(tally.latencies),
    }


def spec_arguments(spec: LoadSpec) -> list[str]:
    """Command-line arguments that make `python -m bench.load` apply `spec`."""
    arguments = [
        f"--host={spec.host}",
        f"--port={spec.port}",
        f"--path={spec.path}",
        f"--method={spec.method}",
        f"--body={spec.body.decode()}",
        f"--connections={spec.connections}",
        f"--warmup={spec.warmup_seconds}",
    ]
    arguments += [f"--header={name}: {value}" for name, value in spec.headers.items()]
    if spec.requests is not None:
        arguments.append(f"--requests={spec.requests}")
    else:
        arguments.append(f"--seconds={spec.seconds}")
    return arguments


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Run the load generator in its own process and return its summary."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.load",
        *spec_arguments(spec),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed: {stderr.decode()[-2000:]}")
    summary: dict[str, Any] = json.loads(stdout)
    return summary


def _parse(argv: list[str]) -> LoadSpec:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--method", default="POST")
    parser.add_argument("--body", default="")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--requests", type=int)
    args = parser.parse_args(argv)
    headers = dict(header.split(": ", 1) for header in args.header)
    return LoadSpec(
        host=args.host,
        port=args.port,
        path=args.path,
        method=args.method,
        body=args.body.encode(),
        headers=headers,
        connections=args.connections,
        warmup_seconds=args.warmup,
        seconds=args.seconds,
        requests=args.requests,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the load generator process."""
    import uvloop

    spec = _parse(sys.argv[1:] if argv is None else argv)
    print(json.dumps(uvloop.run(run(spec))))


if __name__ == "__main__":
    main()
