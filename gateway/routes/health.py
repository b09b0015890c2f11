"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from gateway.deps import ResourcesDep
from gateway.problems import PROBLEM_JSON, problem_response
from gateway.schemas import Health, Readiness
from shared.db_errors import describe_database_error

log = structlog.get_logger("jobgate.gateway")

router = APIRouter(tags=["health"])

READINESS_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", operation_id="healthz", summary="Liveness probe")
async def healthz() -> Health:
    """The process is alive (no dependency is checked)."""
    return Health()


async def _check(
    name: str, probe: Awaitable[object], describe: Callable[[BaseException], str]
) -> tuple[str, str]:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            await probe
    except Exception as exc:  # any failure means "down"; `describe` says why, without secrets
        cause = describe(exc)
        log.warning("readiness.down", dependency=name, cause=cause)
        return name, f"down: {cause}"
    return name, "ok"


def _class_name(exc: BaseException) -> str:
    return type(exc).__name__


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="Readiness probe: PostgreSQL and Redis",
    response_model=Readiness,
    responses={
        503: {
            "description": "A dependency is down; `detail` and `checks` name it.",
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    },
)
async def readyz(request: Request, resources: ResourcesDep) -> Readiness | JSONResponse:
    """PostgreSQL and Redis both answer; 503 names whichever does not."""

    async def database() -> None:
        async with resources.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    checks = dict(
        await asyncio.gather(
            _check("postgresql", database(), describe_database_error),
            _check("redis", resources.redis.ping(), _class_name),
        )
    )
    if all(state == "ok" for state in checks.values()):
        return Readiness(status="ok", checks=checks)
    down = ", ".join(name for name, state in checks.items() if state != "ok")
    return problem_response(
        request,
        status=503,
        code="not-ready",
        detail=f"Unavailable: {down}.",
        headers={"Retry-After": str(resources.settings.retry_after_seconds)},
        extensions={"checks": checks},
    )
