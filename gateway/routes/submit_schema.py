"""What the submit operations declare: request models, headers, problems and examples per job type.

`gateway.routes.submit` serves the operations; this module only describes them, so the committed
OpenAPI document is generated from here.
"""

from __future__ import annotations

from copy import copy
from types import GenericAlias
from typing import Annotated, Any

from fastapi import Header
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from gateway.problems import problems
from gateway.schemas import JobOut
from shared.contracts import JobType
from shared.jobs.submit import SubmitOptions

JSON = "application/json"
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


def options_model(job_type: JobType[Any, Any]) -> type[SubmitOptions]:
    """`SubmitOptions` as the type's schema shows them: `queue` an enum of its queues.

    Only the schema changes: `JobType.queue_for` still decides, and answers a queue outside
    the enum with its own problem (`queue-not-allowed`), not a generic validation error.
    """
    enum = {"type": "string", "enum": list(job_type.queues)}
    # `Any`: a type built at run time, which mypy cannot read as a type expression.
    queue: Any = Annotated[str | None, WithJsonSchema({"anyOf": [enum, {"type": "null"}]})]
    model: type[SubmitOptions] = create_model(
        f"{_camel(job_type.name)}Options",
        __base__=SubmitOptions,
        # The base field's default, length limit and description, with the enum's schema.
        queue=(queue, copy(SubmitOptions.model_fields["queue"])),
    )
    return model


def submission_model(job_type: JobType[Any, Any]) -> type[BaseModel]:
    """The body of `POST /jobs/{name}`: the type's own args model and its submit options."""
    options = options_model(job_type)
    model: type[BaseModel] = create_model(
        f"{_camel(job_type.name)}Submission",
        __config__=ConfigDict(extra="forbid"),
        args=(job_type.args, Field(description=f"Arguments of `{job_type.name}`.")),
        options=(options, Field(default_factory=options)),
    )
    return model


def batch_model(job_type: JobType[Any, Any], item: type[BaseModel]) -> type[BaseModel]:
    """The body of `POST /jobs/{name}/batch`: 1 to `MAX_BATCH` submissions (`item`)."""
    items: Any = GenericAlias(list, (item,))  # `list[item]`, for a model only known at runtime
    model: type[BaseModel] = create_model(
        f"{_camel(job_type.name)}Batch",
        __config__=ConfigDict(extra="forbid"),
        # The length is checked before the items: a longer batch costs no per-item work.
        jobs=(
            items,
            Field(min_length=1, max_length=MAX_BATCH, description=f"Up to {MAX_BATCH} jobs."),
        ),
    )
    return model


def submit_operation(job_type: JobType[Any, Any]) -> dict[str, Any]:
    """`add_api_route` keywords documenting `POST /jobs/{name}`."""
    return {
        "operation_id": f"submit_{job_type.name}",
        "summary": f"Submit one `{job_type.name}` job",
        "response_model": JobOut,
        "openapi_extra": _submit_examples(job_type),
        "responses": {
            200: {"model": JobOut, "description": "Idempotent replay"} | ACCEPTED_HEADERS,
            202: ACCEPTED_HEADERS,
        }
        | SUBMIT_PROBLEMS,
        **_common(job_type),
    }


def batch_operation(job_type: JobType[Any, Any]) -> dict[str, Any]:
    """`add_api_route` keywords documenting `POST /jobs/{name}/batch`."""
    return {
        "operation_id": f"submit_{job_type.name}_batch",
        "summary": f"Submit up to {MAX_BATCH} `{job_type.name}` jobs, all or nothing",
        "response_model": JobBatch,
        "openapi_extra": _batch_examples(job_type),
        "responses": {202: ACCEPTED_HEADERS} | SUBMIT_PROBLEMS,
        **_common(job_type),
    }


def _common(job_type: JobType[Any, Any]) -> dict[str, Any]:
    return {
        "methods": ["POST"],
        "status_code": 202,
        "tags": ["jobs"],
        "description": job_type.description,
    }


def _submit_examples(job_type: JobType[Any, Any]) -> dict[str, Any]:
    """Bodies of `POST /jobs/{name}`, one per declared example (options left to their defaults)."""
    if not job_type.examples:
        return {}
    return _request_body(_named(job_type, [{"args": args} for args in job_type.examples]))


def _batch_examples(job_type: JobType[Any, Any]) -> dict[str, Any]:
    """Body of `POST /jobs/{name}/batch`: every declared example, one job each."""
    if not job_type.examples:
        return {}
    body = {"jobs": [{"args": args} for args in job_type.examples]}
    return _request_body(_named(job_type, [body]))


def _named(job_type: JobType[Any, Any], bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """OpenAPI `examples` (a map), one entry per body, named after the job type."""
    return {
        f"{job_type.name}_{number}": {
            "summary": f"`{job_type.name}` example {number}",
            "value": body,
        }
        for number, body in enumerate(bodies, start=1)
    }


def _request_body(examples: dict[str, Any]) -> dict[str, Any]:
    """An `openapi_extra` fragment; FastAPI merges it into the generated operation."""
    return {"requestBody": {"content": {JSON: {"examples": examples}}}}
