"""`create_app(settings)`: the gateway, with its resources owned by the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter
from prometheus_fastapi_instrumentator import Instrumentator

from gateway.deps import Resources
from gateway.job_events import JobEvents
from gateway.middleware import BodyGuardMiddleware, RequestIdMiddleware
from gateway.problems import Problem, install_problem_handlers, problems
from gateway.routes import admin, control, events, health, job_types, jobs, schedules, submit
from shared.contracts import load_contracts
from shared.db import create_engine, create_sessionmaker, libpq_url
from shared.logs import configure_logging
from shared.redis import create_redis
from shared.settings import Settings, get_settings

DESCRIPTION = """\
A typed HTTP API in front of ARQ workers. Submit a job with `POST /jobs/{name}`, read it
with `GET /jobs/{id}` (add `?wait=30` to long-poll for the result).

Every route under `/jobs` needs `Authorization: Bearer <api-key>`; errors are RFC 9457
`application/problem+json`; every response carries `X-Request-ID`.

Bodies are JSON objects in UTF-8. Unknown members are refused (422); a member given twice keeps
its last value; `NaN`, `Infinity` and numbers outside a field's range are refused (422); a body
that is not UTF-8, not JSON, or nested too deeply to parse is a 400 (`/problems/malformed-json`).
Unknown query parameters are ignored; a repeated single-valued one takes its last value.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway ASGI app. Nothing connects until the lifespan starts."""
    settings = settings or get_settings()
    configure_logging(settings)
    registry = load_contracts(settings.contract_modules)
    metrics = CollectorRegistry()
    jobs_submitted = Counter(
        "jobgate_jobs_submitted_total",
        "Jobs accepted, by job type.",
        ["job_type"],
        registry=metrics,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings, application_name="jobgate-gateway")
        redis = create_redis(settings)
        job_events = JobEvents(
            libpq_url(settings.require_database_url()),
            connect_timeout_seconds=settings.db_connect_timeout_seconds,
        )
        job_events.start()
        resources = Resources(
            settings=settings,
            registry=registry,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            redis=redis,
            events=job_events,
            jobs_submitted=jobs_submitted,
        )
        app.state.resources = resources
        try:
            yield
        finally:
            await job_events.close()
            await redis.aclose(close_connection_pool=True)
            await engine.dispose()

    app = FastAPI(
        title="jobgate",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[{"name": "jobs", "description": "Submit, read and list jobs."}],
    )
    install_problem_handlers(app, settings)
    app.include_router(submit.build_router(registry))
    app.include_router(jobs.build_router())
    app.include_router(events.router)
    app.include_router(control.router)
    app.include_router(job_types.build_router(registry))
    app.include_router(schedules.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    Instrumentator(registry=metrics, excluded_handlers=["/metrics"]).instrument(app).expose(
        app, include_in_schema=False
    )
    # Added last so they run first: every response, even a 413, carries its request id.
    app.add_middleware(BodyGuardMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    _register_problem_schema(app)
    return app


def _register_problem_schema(app: FastAPI) -> None:
    """Put `Problem` in the OpenAPI components, where the routes' error responses point."""
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            defs = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(defs.pop("$defs", {}))
            components["Problem"] = defs
            _document_malformed_bodies(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_malformed_bodies(schema: dict[str, Any]) -> None:
    """Every operation that reads a JSON body may answer 400 `malformed-json`, new ones too."""
    (malformed,) = problems(400).values()
    malformed["description"] = (
        "The body is not JSON jobgate can read: malformed, not UTF-8, or nested too deeply."
    )
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if "requestBody" in operation:
                operation["responses"].setdefault("400", malformed)
