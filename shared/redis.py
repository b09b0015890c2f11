"""The ARQ Redis client: JSON payloads, bounded timeouts, and no connection at construction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from shared.settings import Settings


def serialize_payload(data: dict[str, Any]) -> bytes:
    """ARQ job payloads cross Redis as compact JSON, never pickle."""
    return json.dumps(data, separators=(",", ":")).encode()


def deserialize_payload(raw: bytes) -> dict[str, Any]:
    """Inverse of `serialize_payload`."""
    data: dict[str, Any] = json.loads(raw)
    return data


class LuaScript:
    """A Lua script Redis runs by its SHA1 (EVALSHA, through redis-py's `AsyncScript`).

    Its body crosses the wire once per server (loaded when Redis answers NOSCRIPT), not on
    every call: the enqueue script, a few kilobytes, went out with every submit before.
    """

    def __init__(self, body: str) -> None:
        self.body = body
        # Given as bytes, its SHA1 needs no client (a str would be encoded by one).
        self._script = AsyncScript(None, body.encode())  # type: ignore[arg-type]

    async def run(
        self, redis: Redis, keys: Sequence[str], args: Sequence[str | bytes | int | float] = ()
    ) -> Any:
        """The script's reply for these keys and arguments."""
        return await self._script(keys=keys, args=args, client=redis)

    def queue(
        self, pipe: Pipeline, keys: Sequence[str], args: Sequence[str | bytes | int | float] = ()
    ) -> None:
        """Add a run to `pipe`, by SHA1 only; pass its reply (or error) to `reply_of` after.

        redis-py's own scripts in a pipeline first ask Redis whether they are loaded: an extra
        round trip on every `execute`, which is what a pipeline is there to save.
        """
        # redis-py annotates str; like any command, it takes bytes and numbers too.
        pipe.evalsha(self._script.sha, len(keys), *keys, *args)  # type: ignore[arg-type]

    async def reply_of(
        self,
        redis: Redis,
        reply: Any,
        keys: Sequence[str],
        args: Sequence[str | bytes | int | float] = (),
    ) -> Any:
        """The reply of a run `queue`d in a pipeline executed with `raise_on_error=False`.

        If Redis did not hold the script (a restart, SCRIPT FLUSH), run it again now, which
        loads it; any other error is raised.
        """
        if isinstance(reply, NoScriptError):
            return await self.run(redis, keys, args)
        if isinstance(reply, Exception):
            raise reply
        return reply


def create_redis(settings: Settings) -> ArqRedis:
    """An ARQ client that connects lazily, so a gateway starts (and recovers) without Redis."""
    pool = BlockingConnectionPool.from_url(
        settings.require_redis_url(),
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_seconds,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=30,
    )
    return ArqRedis(
        connection_pool=pool,
        job_serializer=serialize_payload,
        job_deserializer=deserialize_payload,
    )


def arq_redis_settings(settings: Settings) -> RedisSettings:
    """The same Redis as ARQ's worker wants it described."""
    redis_settings = RedisSettings.from_dsn(settings.require_redis_url())
    redis_settings.conn_timeout = int(settings.redis_timeout_seconds)
    return redis_settings
