"""Why PostgreSQL could not be used, in words an operator can act on.

SQLAlchemy wraps a refused connection in a `DBAPIError` whose class says nothing of the cause
(`too many clients already` and a wrong password look alike from outside). The driver's error
underneath carries the SQLSTATE; this names it. The phrases are fixed: the server's own message
is never passed on (it may quote a role or host), and neither is the URL.
"""

from __future__ import annotations

import socket

import asyncpg
from asyncpg.exceptions._base import DataError as ArgumentRefused
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.errors import DatabaseUnavailable

# The connection-time refusals worth telling apart (PostgreSQL Appendix A, "Error Codes").
_CAUSES_BY_SQLSTATE = {
    "53300": "too many connections",
    "28P01": "authentication failed",
    "28000": "authentication failed",
    "3D000": "database does not exist",
    "57P03": "server is starting up or shutting down",
    "53100": "server disk full",
    "53200": "server out of memory",
    "57P01": "server shut the connection down",
}
# SQLSTATEs that say the server could not be used, not that it refused a statement: connection
# exceptions (08), insufficient resources (53: too many connections, disk full, out of memory),
# and shutdowns or a start-up in progress (57P: not 57014, a statement cancelled by its timeout,
# which a retry of the same statement would meet again).
_OUTAGE_SQLSTATE_PREFIXES = ("08", "53", "57P")
# How far down `__cause__`/`__context__` to look: SQLAlchemy adds two levels, asyncio one.
_MAX_DEPTH = 6


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then what it wraps (`orig`, `__cause__`, `__context__`), outermost first."""
    seen: list[BaseException] = []
    pending: list[tuple[BaseException, int]] = [(exc, 0)]
    while pending:
        current, depth = pending.pop(0)
        if any(current is known for known in seen) or depth > _MAX_DEPTH:
            continue
        seen.append(current)
        for inner in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                pending.append((inner, depth + 1))
    return seen


def _cause_of_one(exc: BaseException) -> str | None:
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        cause = _CAUSES_BY_SQLSTATE.get(sqlstate, type(exc).__name__)
        return f"{cause} (SQLSTATE {sqlstate})"
    if isinstance(exc, PoolTimeout):
        return "connection pool exhausted"  # our own limit, not the server's
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, FileNotFoundError):
        # A unix socket whose file is missing: the local server is not running (libpq asks
        # "Is the server running locally?" here too).
        return "no server at the socket"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return None


def describe_database_error(exc: BaseException) -> str:
    """A short, secret-free cause for `exc` ("too many connections (SQLSTATE 53300)"); failing
    a known one, the innermost exception's class name."""
    chain = _chain(exc)
    for link in chain:
        cause = _cause_of_one(link)
        if cause is not None:
            return cause
    return type(chain[-1]).__name__


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says PostgreSQL could not be used (unreachable, refusing connections, the
    connection cut, the pool exhausted), rather than that it refused a statement: the first
    passes by itself and is worth waiting out; the second (a bug, a value) would recur."""
    for link in _chain(exc):
        if isinstance(link, DatabaseUnavailable | PoolTimeout | OSError):
            return True  # TimeoutError, refused and reset connections are OSErrors
        if getattr(link, "connection_invalidated", False):
            return True  # SQLAlchemy saw the connection die under the statement
        if isinstance(link, asyncpg.InterfaceError) and not isinstance(link, ArgumentRefused):
            return True  # "connection was closed in the middle of operation" and the like
        sqlstate = getattr(link, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_OUTAGE_SQLSTATE_PREFIXES):
            return True
    return False
