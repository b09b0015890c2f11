"""`create_app(settings)`: the gateway, with its resources owned by the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from gateway.deps import Resources
from gateway.http_head import HeadLimits
from gateway.job_events import JobEvents
from gateway.known_keys import KnownKeys
from gateway.metrics import GatewayMetrics
from gateway.middleware import BodyGuardMiddleware, HeadGuardMiddleware, RequestIdMiddleware
from gateway.problems import Problem, install_problem_handlers, problems
from gateway.routes import admin, control, events, health, job_types, jobs, schedules, submit
from gateway.routes import queues as queue_routes
from gateway.routes import workflows as workflow_routes
from gateway.tracing import telemetry_config
from gateway.ui import PREFIX as UI_PREFIX
from gateway.ui import install_ui
from shared.contracts import load_contracts
from shared.db import create_engine, create_sessionmaker, libpq_url
from shared.logs import configure_logging
from shared.redis import create_redis
from shared.settings import Settings, get_settings
from shared.tracing import configure_tracing

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

OPENAPI_TAGS = [
    {"name": "jobs", "description": "Submit, read, list, follow, cancel and re-run jobs."},
    {"name": "job types", "description": "The catalogue of job types and their contracts."},
    {"name": "workflows", "description": "Chains, groups and chords of jobs, nestable."},
    {"name": "schedules", "description": "The cron schedules the workers run."},
    {"name": "health", "description": "Liveness and readiness probes (no auth)."},
    {"name": "admin", "description": "Tenants, API keys and queues; the operator token only."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway ASGI app. Nothing connects until the lifespan starts."""
    settings = settings or get_settings()
    configure_logging(settings)
    configure_tracing(settings, service_name="jobgate-gateway")
    registry = load_contracts(settings.contract_modules)
    metrics = GatewayMetrics()

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
            jobs_submitted=metrics.jobs_submitted,
            jobs_cancelled=metrics.jobs_cancelled,
            known_keys=KnownKeys(),
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
        telemetry=telemetry_config(),
        openapi_tags=OPENAPI_TAGS,
    )
    install_problem_handlers(app, settings)
    app.include_router(submit.build_router(registry))
    app.include_router(jobs.build_router())
    app.include_router(events.router)
    app.include_router(control.router)
    app.include_router(workflow_routes.router)
    app.include_router(job_types.build_router(registry))
    app.include_router(schedules.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(queue_routes.router)
    install_ui(app)
    metrics.install(
        app,
        registry.queues(),
        keyed_types=[job_type.name for job_type in registry if job_type.concurrency is not None],
    )
    # Added last so they run first; around them all, even a 413 or a 500, the request id.
    app.add_middleware(
        BodyGuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        form_path_prefix=f"{UI_PREFIX}/",  # the dashboard's HTML forms
    )
    app.add_middleware(HeadGuardMiddleware, limits=HeadLimits.of(settings))
    _bind_request_ids_outermost(app)
    _register_problem_schema(app)
    return app


def _bind_request_ids_outermost(app: FastAPI) -> None:
    """Put `RequestIdMiddleware` around Starlette's whole stack, not inside its 500 layer.

    `add_middleware` would place it within `ServerErrorMiddleware`, where the last-resort 500
    handler runs after the id is unbound: its `request.crashed` line and its response would
    carry no request id.
    """
    build_stack = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return RequestIdMiddleware(build_stack())

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]


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
            _document_internal_errors(schema)
            _document_head_limits(schema)
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


def _document_internal_errors(schema: dict[str, Any]) -> None:
    """Every operation may answer 500 `internal-error`: the last-resort handler covers them all."""
    (internal,) = problems(500).values()
    internal["description"] = (
        "An unexpected error; the body names no internals, the log has it under `X-Request-ID`."
    )
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            operation["responses"].setdefault("500", internal)


def _document_head_limits(schema: dict[str, Any]) -> None:
    """Every operation may answer 431: the head limits hold before any route is chosen."""
    (too_large,) = problems(431).values()
    too_large["description"] = (
        "More header fields than `JOBGATE_MAX_HEADER_COUNT`, or a request line and header fields"
        " larger than `JOBGATE_MAX_HEADER_BYTES`."
    )
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            operation["responses"].setdefault("431", too_large)
