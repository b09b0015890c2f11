"""Request-body examples of the submit operations, built from each job type's declared examples."""

from __future__ import annotations

from typing import Any

from shared.contracts import JobType

JSON = "application/json"


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


def submit_examples(job_type: JobType[Any, Any]) -> dict[str, Any]:
    """Bodies of `POST /jobs/{name}`, one per example (options left to their defaults)."""
    if not job_type.examples:
        return {}
    return _request_body(_named(job_type, [{"args": args} for args in job_type.examples]))


def batch_examples(job_type: JobType[Any, Any]) -> dict[str, Any]:
    """Body of `POST /jobs/{name}/batch`: every example, one job each."""
    if not job_type.examples:
        return {}
    body = {"jobs": [{"args": args} for args in job_type.examples]}
    return _request_body(_named(job_type, [body]))
