"""Lua scripts run by SHA1, alone or in a pipeline, also after Redis forgot them."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.redis import LuaScript

# Returns its argument and counts its runs, so a test sees how often it ran.
COUNTING = LuaScript("redis.call('INCR', KEYS[1]) return ARGV[1]")


async def _run_in_pipeline(redis: Redis, key: str, argument: str) -> object:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(key + ":before")
        COUNTING.queue(pipe, [key], [argument])
        _, reply = await pipe.execute(raise_on_error=False)
    return await COUNTING.reply_of(redis, reply, [key], [argument])


async def test_a_script_redis_holds_runs_once_in_a_pipeline(redis: Redis) -> None:
    assert await COUNTING.run(redis, ["runs"], ["load"]) == b"load"

    assert await _run_in_pipeline(redis, "runs", "piped") == b"piped"

    assert await redis.get("runs") == b"2"


async def test_a_script_redis_forgot_is_loaded_and_run_once(redis: Redis) -> None:
    await redis.script_flush()

    assert await _run_in_pipeline(redis, "runs", "again") == b"again"

    assert await redis.get("runs") == b"1"
    assert await redis.get("runs:before") == b"1"  # the pipeline's other command ran as sent
