"""`POST /jobs/{name}` and `POST /jobs/{name}/batch`: one typed operation per job type.

Each operation is a `FastEndpoint` (the job type, its request model and how to serve it) behind a
`DirectSubmitRoute`; what the operations declare to OpenAPI lives in `submit_schema`.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, ValidationError

from gateway.auth import (
    SubmitAccess,
    SubmitAuth,
    SubmitToken,
    check_api_key,
    open_submit_access,
)
from gateway.deps import Resources
from gateway.problems import rate_limit_headers
from gateway.routes.submit_schema import (
    MAX_BATCH,
    IdempotencyKey,
    JobBatch,
    batch_model,
    batch_operation,
    submission_model,
    submit_operation,
)
from gateway.schemas import JobOut
from shared.contracts import Contract, JobType, Registry
from shared.errors import PayloadTooLarge, QueueNotAllowed, UnknownJobType
from shared.jobs.concurrency_keys import refuse_key_options
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

Location = list[str | int]
"""Where in a request body something is, as a 422's `errors[].loc` says."""


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
        InSession(
            access.session,
            access.principal.tenant_id,
            settings=access.resources.settings,
            idempotency_key=idempotency_key,
        ),
        Submission(job_type, [(args, options)]),
    )
    if created.replayed is not None:  # a replay of a job that may have finished: its webhook
        headers["Location"] = f"/jobs/{created.replayed.id}"
        return _json(await job_view(access.session, created.replayed), 200, headers)
    (row,) = created.rows
    headers["Location"] = f"/jobs/{row['id']}"
    access.resources.jobs_submitted.labels(job_type.name, row["queue"]).inc()
    _count_cancelled(access.resources, created)
    return _json(JobOut.of_new(row), 202, headers)


def _json(model: BaseModel, status_code: int, headers: dict[str, str]) -> Response:
    """The answer, serialised once by pydantic (the route's `response_model` documents it).

    Returning a `Response` spares FastAPI validating and serialising the model again.
    """
    return Response(model.model_dump_json(), status_code, headers, media_type="application/json")


async def _store(
    resources: Resources,
    job_type: JobType[Any, Any],
    token: str,
    requests: list[tuple[Contract, SubmitOptions]],
    options_locations: list[Location],
) -> Created:
    """Key check and insert in one statement (`shared.jobs.submit.WithKey`), then the hand-off to
    Redis; refused options (named by their location in the body) stop it first."""
    _refuse_options(
        resources,
        job_type,
        list(zip(options_locations, (options for _, options in requests), strict=True)),
    )
    submitted = await create_jobs(
        resources.redis,
        WithKey(resources.engine, resources.settings, token),
        Submission(job_type, requests),
    )
    for queue, count in Counter(row["queue"] for row in submitted.rows).items():
        resources.jobs_submitted.labels(job_type.name, queue).inc(count)
    _count_cancelled(resources, submitted)
    return submitted


def _refuse_options(
    resources: Resources,
    job_type: JobType[Any, Any],
    located: list[tuple[Location, SubmitOptions]],
) -> None:
    """Refuse, before anything is charged or stored, a queue the type may not run on
    (`QueueNotAllowed`), a webhook URL jobgate may not call (`WebhookUrlRefused`) or a
    concurrency key the type does not take (`OptionRefused`)."""
    # Most submits set none of these: their per-job cost here stays a few attribute reads.
    issues: list[dict[str, object]] = []
    for location, options in located:
        if options.queue is None:
            continue
        try:
            job_type.queue_for(options.queue)
        except QueueNotAllowed as exc:
            loc = [*location, "queue"]
            issues.append({"loc": loc, "msg": exc.message, "type": "queue_not_allowed"})
    if issues:
        detail = str(issues[0]["msg"]) if len(issues) == 1 else None
        raise QueueNotAllowed(
            detail or "Jobs name queues their type may not run on; see `errors`.", issues=issues
        )
    refuse_webhook_urls(
        resources.settings.webhooks,
        (
            ([*location, "webhook_url"], options.webhook_url)
            for location, options in located
            if options.webhook_url is not None
        ),
    )
    refuse_key_options(
        job_type,
        (
            ([*location, "concurrency_key"], options.concurrency_key)
            for location, options in located
            if options.concurrency_key is not None
        ),
    )


def _count_cancelled(resources: Resources, created: Created) -> None:
    """Jobs a concurrency strategy cancelled at once (workers count the running ones they stop)."""
    for outcome in created.cancelled:
        if outcome.is_done:
            resources.jobs_cancelled.labels(outcome.job.name, outcome.job.queue).inc()


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class FastEndpoint(ABC):
    """A submit operation of one job type: FastAPI's endpoint, and `serve` for the direct path.

    FastAPI reads an endpoint's parameters from its signature. The body's model is built per job
    type at runtime, so `__signature__` is the `__call__` declared below with the body's
    annotation replaced by `body_model`; every other parameter is declared as written.
    """

    __signature__: inspect.Signature

    def __init__(self, job_type: JobType[Any, Any], body_model: type[BaseModel]) -> None:
        self.job_type = job_type
        self.body_model = body_model
        declared = inspect.signature(self.__call__, eval_str=True)
        self.__signature__ = declared.replace(
            parameters=[
                parameter.replace(annotation=body_model) if parameter.name == "body" else parameter
                for parameter in declared.parameters.values()
            ]
        )

    @abstractmethod
    async def __call__(self, body: Any, request: Request, token: SubmitToken) -> Response:
        """The declared endpoint: FastAPI has validated `body` (a `body_model`) and the key."""

    @abstractmethod
    async def serve(self, resources: Resources, token: str, body: Any) -> Response:
        """A request without `Idempotency-Key` whose `body` is a valid `body_model`."""


class SubmitEndpoint(FastEndpoint):
    """`POST /jobs/{name}`: one job; with an `Idempotency-Key`, at most one per key."""

    def __init__(self, job_type: JobType[Any, Any]) -> None:
        super().__init__(job_type, submission_model(job_type))

    async def __call__(
        self,
        body: Any,
        request: Request,
        token: SubmitToken,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        resources: Resources = request.app.state.resources
        if idempotency_key is None:
            return await self.serve(resources, token, body)
        args, options = body.args, body.options
        _refuse_options(resources, self.job_type, [(["body", "options"], options)])
        async with open_submit_access(resources, token) as access:
            return await _submit_idempotent(access, self.job_type, args, options, idempotency_key)

    async def serve(self, resources: Resources, token: str, body: Any) -> Response:
        submitted = await _store(
            resources,
            self.job_type,
            token,
            [(body.args, body.options)],
            [["body", "options"]],
        )
        headers = _rate_headers(submitted.rate)
        (row,) = submitted.rows
        headers["Location"] = f"/jobs/{row['id']}"
        return _json(JobOut.of_new(row), 202, headers)


class BatchEndpoint(FastEndpoint):
    """`POST /jobs/{name}/batch`: up to `MAX_BATCH` jobs (its model refuses more), all or none."""

    def __init__(self, job_type: JobType[Any, Any], item: type[BaseModel]) -> None:
        super().__init__(job_type, batch_model(job_type, item))

    async def __call__(self, body: Any, request: Request, token: SubmitToken) -> Response:
        return await self.serve(request.app.state.resources, token, body)

    async def serve(self, resources: Resources, token: str, body: Any) -> Response:
        items = body.jobs
        submitted = await _store(
            resources,
            self.job_type,
            token,
            [(item.args, item.options) for item in items],
            [["body", "jobs", index, "options"] for index in range(len(items))],
        )
        jobs = [JobOut.of_new(row) for row in submitted.rows]
        return _json(JobBatch(jobs=jobs), 202, _rate_headers(submitted.rate))


class DirectSubmitRoute(APIRoute):
    """A `FastEndpoint`'s route, served below FastAPI's parameter handling when it can be.

    The API's hot path: FastAPI's dependency solving, body conversion and sub-response are
    work a plain submit does not need, paid on every request. The key is checked first
    (`check_api_key`, a recently proven key from memory), so a caller without one never has its
    body parsed. A request with no `Idempotency-Key` and a body the endpoint's model accepts
    (`model_validate_json`, the same model) goes straight to `serve`, the method the declared
    endpoint calls too; anything else falls through to the declared endpoint, unchanged, which
    re-reads the cached body and gives FastAPI's own answers and errors. The route, its OpenAPI
    operation and every middleware stay FastAPI's.
    """

    def get_route_handler(self) -> Handler:
        declared = super().get_route_handler()
        endpoint = self.endpoint
        if not isinstance(endpoint, FastEndpoint):
            raise TypeError(f"{self.path}: a DirectSubmitRoute serves a FastEndpoint")
        body_model, serve = endpoint.body_model, endpoint.serve

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


def _plain_submit_token(request: Request) -> str | None:
    """The key of a submit the direct path can take (as `SubmitToken` reads it), else None."""
    headers = request.headers
    if "idempotency-key" in headers:
        return None
    scheme, token = get_authorization_scheme_param(headers.get("authorization"))
    if scheme.lower() != "bearer" or parse_token(token) is None:
        return None
    return token


async def _unknown_job_type(name: str, principal: SubmitAuth) -> JobOut:
    raise UnknownJobType(f"No job type named {name!r} is registered; see GET /job-types.")


def build_router(registry: Registry) -> APIRouter:
    """Submit routes for the job types in `registry`."""
    router = APIRouter()
    for job_type in registry.public():
        single = SubmitEndpoint(job_type)
        batch = BatchEndpoint(job_type, single.body_model)
        for path, endpoint, operation in (
            (f"/jobs/{job_type.name}", single, submit_operation(job_type)),
            (f"/jobs/{job_type.name}/batch", batch, batch_operation(job_type)),
        ):
            router.add_api_route(
                path, endpoint, route_class_override=DirectSubmitRoute, **operation
            )
    # After the typed routes: any other name is an unknown type (404), not a 405 from /jobs/{id}.
    for path in ("/jobs/{name}", "/jobs/{name}/batch"):
        router.add_api_route(path, _unknown_job_type, methods=["POST"], include_in_schema=False)
    return router
