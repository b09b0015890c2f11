"""`POST /jobs/{name}` and `POST /jobs/{name}/batch`: one typed operation per job type."""

# No `from __future__ import annotations` here: the routes are built at runtime from each job
# type's models, and FastAPI must see those classes, not strings naming locals.

from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from gateway.auth import (
    SubmitAccess,
    SubmitAuth,
    SubmitToken,
    check_api_key,
    open_submit_access,
)
from gateway.deps import Resources
from gateway.examples import batch_examples, submit_examples
from gateway.problems import problems, rate_limit_headers
from gateway.schemas import JobOut
from shared.contracts import Contract, JobType, Registry
from shared.errors import PayloadTooLarge, UnknownJobType
from shared.jobs.submit import (
    Created,
    InSession,
    Submission,
    SubmitOptions,
    WithKey,
    create_jobs,
)
from shared.jobs.view import job_view
from shared.tenants.apikeys import Scope, parse_token
from shared.tenants.ratelimit import RateState, rate_limit_for, take_tokens
from shared.webhooks.destinations import refuse_webhook_urls

MAX_BATCH = 1000
RATE_LIMIT_HEADERS: dict[str, Any] = {
    "RateLimit-Limit": {
        "description": "The tenant's burst: jobs it may submit at once (rate-limited tenants).",
        "schema": {"type": "integer"},
    },
    "RateLimit-Remaining": {
        "description": "Jobs it may still submit at once right now.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the full burst is available again.",
        "schema": {"type": "integer"},
    },
}
SUBMIT_PROBLEMS = problems(401, 403, 404, 409, 413, 415, 422, 429, 503)
SUBMIT_PROBLEMS[429]["description"] = (
    "The tenant submits faster than its rate limit (a batch counts each job); nothing was"
    " stored. Retry after `Retry-After` seconds."
)
SUBMIT_PROBLEMS[429]["headers"] = RATE_LIMIT_HEADERS | {
    "Retry-After": {
        "description": "Seconds until this request would be let through.",
        "schema": {"type": "integer"},
    }
}
ACCEPTED_HEADERS = {"headers": RATE_LIMIT_HEADERS}
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Same key and same args return the original job (200), never a second one.",
    ),
]


class JobBatch(BaseModel):
    jobs: list[JobOut]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _submission_model(job_type: JobType[Any, Any]) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        f"{_camel(job_type.name)}Submission",
        __config__=ConfigDict(extra="forbid"),
        args=(job_type.args, Field(description=f"Arguments of `{job_type.name}`.")),
        options=(SubmitOptions, Field(default_factory=SubmitOptions)),
    )
    return model


def _batch_model(job_type: JobType[Any, Any], item: type[BaseModel]) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        f"{_camel(job_type.name)}Batch",
        __config__=ConfigDict(extra="forbid"),
        # The length is checked before the items: a longer batch costs no per-item work.
        jobs=(
            list[item],  # type: ignore[valid-type]
            Field(min_length=1, max_length=MAX_BATCH, description=f"Up to {MAX_BATCH} jobs."),
        ),
    )
    return model


def _overfull_batch(errors: Sequence[Any]) -> PayloadTooLarge | None:
    """The documented 413 for a batch over `MAX_BATCH`, which its model refuses as `too_long`."""
    for error in errors:
        if error["type"] == "too_long" and tuple(error["loc"]) == ("body", "jobs"):
            length = error.get("ctx", {}).get("actual_length")
            jobs = f", not {length}" if length is not None else ""
            return PayloadTooLarge(f"A batch holds at most {MAX_BATCH} jobs{jobs}.")
    return None


async def _take_tokens(access: SubmitAccess, cost: int) -> dict[str, str]:
    """Charge the tenant's rate limit before anything is stored (no Redis trip if unlimited).

    Returns the `RateLimit-*` headers of the answer (none if the tenant is unlimited).
    """
    principal, resources = access.principal, access.resources
    rate = rate_limit_for(principal.limits, resources.settings)
    if rate is None:
        return {}
    return _rate_headers(
        await take_tokens(resources.redis, tenant_id=principal.tenant_id, rate=rate, cost=cost)
    )


def _rate_headers(state: RateState | None) -> dict[str, str]:
    """The `RateLimit-*` headers for a rate-limited tenant's answer (none if unlimited)."""
    if state is None:
        return {}
    return rate_limit_headers(
        limit=state.limit, remaining=state.remaining, reset_seconds=state.reset_seconds
    )


async def _submit_idempotent(
    access: SubmitAccess,
    job_type: JobType[Any, Any],
    args: Contract,
    options: SubmitOptions,
    idempotency_key: str,
) -> Response:
    """A submit with an `Idempotency-Key`: 202 for a new job, 200 replaying the first one."""
    headers = await _take_tokens(access, 1)
    created = await create_jobs(
        access.resources.redis,
        InSession(access.session, access.principal.tenant_id, idempotency_key=idempotency_key),
        Submission(job_type, [(args, options)]),
    )
    if created.replayed is not None:  # a replay of a job that may have finished: its webhook
        headers["Location"] = f"/jobs/{created.replayed.id}"
        return _json(await job_view(access.session, created.replayed), 200, headers)
    (row,) = created.rows
    headers["Location"] = f"/jobs/{row['id']}"
    access.resources.jobs_submitted.labels(job_type.name, job_type.queue).inc()
    return _json(JobOut.of_new(row), 202, headers)


def _json(model: BaseModel, status_code: int, headers: dict[str, str]) -> Response:
    """The answer, serialised once by pydantic (the route's `response_model` documents it).

    Returning a `Response` spares FastAPI validating and serialising the model again.
    """
    return Response(model.model_dump_json(), status_code, headers, media_type="application/json")


async def _submit_plain(
    resources: Resources,
    job_type: JobType[Any, Any],
    token: str,
    args: Contract,
    options: SubmitOptions,
) -> Response:
    """A submit without `Idempotency-Key`."""
    submitted = await _store(
        resources, job_type, token, [(args, options)], [["body", "options", "webhook_url"]]
    )
    headers = _rate_headers(submitted.rate)
    (row,) = submitted.rows
    headers["Location"] = f"/jobs/{row['id']}"
    return _json(JobOut.of_new(row), 202, headers)


async def _submit_batch(
    resources: Resources, job_type: JobType[Any, Any], token: str, items: list[Any]
) -> Response:
    """A batch (its model holds at most `MAX_BATCH`): all jobs stored in one statement, or none."""
    submitted = await _store(
        resources,
        job_type,
        token,
        [(item.args, item.options) for item in items],
        [["body", "jobs", index, "options", "webhook_url"] for index in range(len(items))],
    )
    jobs = [JobOut.of_new(row) for row in submitted.rows]
    return _json(JobBatch(jobs=jobs), 202, _rate_headers(submitted.rate))


async def _store(
    resources: Resources,
    job_type: JobType[Any, Any],
    token: str,
    requests: list[tuple[Contract, SubmitOptions]],
    webhook_url_locations: list[list[str | int]],
) -> Created:
    """Key check and insert in one statement (`shared.jobs.submit.WithKey`), then the hand-off to
    Redis; a refused webhook URL (named by its location in the body) stops it first."""
    refuse_webhook_urls(
        resources.settings.webhooks,
        zip(webhook_url_locations, (options.webhook_url for _, options in requests), strict=True),
    )
    submitted = await create_jobs(
        resources.redis,
        WithKey(resources.engine, resources.settings, token),
        Submission(job_type, requests),
    )
    resources.jobs_submitted.labels(job_type.name, job_type.queue).inc(len(submitted.rows))
    return submitted


def _refuse_webhook_url(resources: Resources, options: SubmitOptions) -> None:
    location: list[str | int] = ["body", "options", "webhook_url"]
    refuse_webhook_urls(resources.settings.webhooks, [(location, options.webhook_url)])


Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Direct = Callable[[Resources, str, Any], Coroutine[Any, Any, Response]]
"""Serves a plain submit: (resources, the key, the validated body) -> the answer."""


def _direct_route(body_model: type[BaseModel], serve: Direct) -> type[APIRoute]:
    """`POST /jobs/{name}` (and `/batch`) served below FastAPI's parameter handling when it can be.

    The API's hot path: FastAPI's dependency solving, body conversion and sub-response were
    a sixth of a submit's CPU. The key is checked first (`check_api_key`, a recently proven key
    from memory), so a caller without one never has its body parsed. A request with no
    `Idempotency-Key` and a body the route's model accepts (`model_validate_json`, the same
    model) goes straight to `serve`, the function the declared endpoint calls too; anything
    else falls through to the declared endpoint, unchanged, which re-reads the cached body and
    gives FastAPI's own answers and errors. The route, its OpenAPI operation and every
    middleware stay FastAPI's.
    """

    class DirectSubmitRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            declared = super().get_route_handler()

            async def handle(request: Request) -> Response:
                # Before the body is read: without a valid key it is never parsed or validated.
                await check_api_key(request, Scope.SUBMIT)
                token = _plain_submit_token(request)
                if token is not None:
                    try:
                        body = body_model.model_validate_json(await request.body())
                    except ValidationError:
                        pass  # the declared endpoint reports it, in FastAPI's words
                    else:
                        return await serve(request.app.state.resources, token, body)
                try:
                    return await declared(request)
                except RequestValidationError as exc:
                    overfull = _overfull_batch(exc.errors())
                    if overfull is not None:
                        raise overfull from None
                    raise

            return handle

    return DirectSubmitRoute


def _plain_submit_token(request: Request) -> str | None:
    """The key of a submit the direct path can take (as `SubmitToken` reads it), else None."""
    headers = request.headers
    if "idempotency-key" in headers:
        return None
    scheme, token = get_authorization_scheme_param(headers.get("authorization"))
    if scheme.lower() != "bearer" or parse_token(token) is None:
        return None
    return token


def _add_routes(router: APIRouter, job_type: JobType[Any, Any]) -> None:
    submission = _submission_model(job_type)
    batch = _batch_model(job_type, submission)

    async def submit(
        body: submission,  # type: ignore[valid-type]
        request: Request,
        token: SubmitToken,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        resources: Resources = request.app.state.resources
        args, options = body.args, body.options  # type: ignore[attr-defined]
        if idempotency_key is None:
            return await serve_one(resources, token, body)
        _refuse_webhook_url(resources, options)
        async with open_submit_access(resources, token) as access:
            return await _submit_idempotent(access, job_type, args, options, idempotency_key)

    async def serve_one(resources: Resources, token: str, body: Any) -> Response:
        return await _submit_plain(resources, job_type, token, body.args, body.options)

    async def serve_batch(resources: Resources, token: str, body: Any) -> Response:
        return await _submit_batch(resources, job_type, token, body.jobs)

    async def submit_batch(
        body: batch,  # type: ignore[valid-type]
        request: Request,
        token: SubmitToken,
    ) -> Response:
        return await serve_batch(request.app.state.resources, token, body)

    common: dict[str, Any] = {
        "methods": ["POST"],
        "status_code": 202,
        "responses": {
            200: {"model": JobOut, "description": "Idempotent replay"} | ACCEPTED_HEADERS,
            202: ACCEPTED_HEADERS,
        }
        | SUBMIT_PROBLEMS,
        "tags": ["jobs"],
        "description": job_type.description,
    }
    router.add_api_route(
        f"/jobs/{job_type.name}",
        submit,
        operation_id=f"submit_{job_type.name}",
        summary=f"Submit one `{job_type.name}` job",
        response_model=JobOut,
        openapi_extra=submit_examples(job_type),
        route_class_override=_direct_route(submission, serve_one),
        **common,
    )
    common["responses"] = {202: ACCEPTED_HEADERS} | SUBMIT_PROBLEMS
    router.add_api_route(
        f"/jobs/{job_type.name}/batch",
        submit_batch,
        operation_id=f"submit_{job_type.name}_batch",
        summary=f"Submit up to {MAX_BATCH} `{job_type.name}` jobs, all or nothing",
        response_model=JobBatch,
        openapi_extra=batch_examples(job_type),
        route_class_override=_direct_route(batch, serve_batch),
        **common,
    )


async def _unknown_job_type(name: str, principal: SubmitAuth) -> JobOut:
    raise UnknownJobType(f"No job type named {name!r} is registered; see GET /job-types.")


def build_router(registry: Registry) -> APIRouter:
    """Submit routes for the job types in `registry`."""
    router = APIRouter()
    for job_type in registry.public():
        _add_routes(router, job_type)
    # After the typed routes: any other name is an unknown type (404), not a 405 from /jobs/{id}.
    for path in ("/jobs/{name}", "/jobs/{name}/batch"):
        router.add_api_route(path, _unknown_job_type, methods=["POST"], include_in_schema=False)
    return router
