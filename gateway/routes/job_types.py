"""`GET /job-types`: the catalogue of registered job types."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.schemas import JobTypeOut
from shared.contracts import Registry


def build_router(registry: Registry) -> APIRouter:
    router = APIRouter(tags=["job types"])
    catalogue = [JobTypeOut.of(job_type) for job_type in registry.public()]

    @router.get("/job-types", operation_id="list_job_types", summary="List the job types")
    async def list_job_types() -> list[JobTypeOut]:
        """Each job type's name, description, queues (its own first), defaults and JSON Schemas."""
        return catalogue

    return router
