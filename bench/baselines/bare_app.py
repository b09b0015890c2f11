"""The bare endpoint: the least work any HTTP job gateway must do, as an ASGI app.

`POST /jobs` validates a small pydantic body, inserts one row into PostgreSQL (an asyncpg
pool) and calls ARQ's `enqueue_job`. No auth, no middleware, no tenancy. Served by uvicorn
with the same arguments as jobgate's gateway but plain httptools (`bench.processes.uvicorn_argv`):

    BENCH_BARE_DATABASE_URL=postgresql://... BENCH_BARE_REDIS_URL=redis://... \\
        uvicorn bench.baselines.bare_app:app
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import asyncpg
from arq.connections import ArqRedis, RedisSettings, create_pool
from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

POOL_MIN_SIZE, POOL_MAX_SIZE = 10, 30
"""Up to jobgate's pool: `db_pool_size` 30 (plus `db_max_overflow`, 0)."""


class EchoArgs(BaseModel):
    message: Annotated[str, Field(max_length=10_000)]
    repeat: Annotated[int, Field(ge=1, le=100)] = 1


class Submission(BaseModel):
    args: EchoArgs


class Accepted(BaseModel):
    id: uuid.UUID
    status: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(
        os.environ["BENCH_BARE_DATABASE_URL"], min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE
    )
    redis = await create_pool(RedisSettings.from_dsn(os.environ["BENCH_BARE_REDIS_URL"]))
    app.state.pool, app.state.redis = pool, redis
    try:
        yield
    finally:
        await redis.aclose()
        await pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/jobs", status_code=202)
async def submit(body: Submission, request: Request) -> Accepted:
    """Insert the job's row, then hand it to ARQ."""
    job_id = uuid.uuid4()
    pool: asyncpg.Pool = request.app.state.pool
    redis: ArqRedis = request.app.state.redis
    await pool.execute(
        "INSERT INTO bench_bare_job (id, name, args, status) VALUES ($1, $2, $3, 'queued')",
        job_id,
        "echo",
        json.dumps(body.args.model_dump()),
    )
    await redis.enqueue_job("echo", body.args.model_dump(), _job_id=str(job_id))
    return Accepted(id=job_id, status="queued")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Ready once the lifespan has run."""
    return {"status": "ok"}
