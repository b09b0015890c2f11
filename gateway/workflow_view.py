"""The Workflow resource as callers see it: its definition, status, result and each step's job."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from shared.jobs.view import JobOut, job_views
from shared.models import Workflow, WorkflowStatus
from shared.workflows.runs import definition_of, plan_of, step_jobs
from shared.workflows.spec import steps_of


class WorkflowStepOut(BaseModel):
    """One step of a workflow and its current job (null until the step is released)."""

    step: str = Field(description="The step's JSON pointer in `definition`, e.g. `/steps/1`.")
    name: str = Field(description="The step's job type.")
    status: str = Field(
        description=(
            "Its job's status; without a job: `waiting` (for the steps before it), `skipped`"
            " (something before it failed) or `cancelled` (the workflow was)."
        )
    )
    job: JobOut | None = Field(description="The step's current job; a re-run replaces it.")


class WorkflowOut(BaseModel):
    """A workflow: what was submitted, how far it got, and what it returned."""

    id: uuid.UUID
    status: WorkflowStatus
    definition: dict[str, Any] = Field(
        description="The root node as submitted (defaults left out); see `WorkflowSubmission`."
    )
    result: Any = Field(None, description="The root node's output, once `succeeded`.")
    created_at: datetime
    finished_at: datetime | None
    steps: list[WorkflowStepOut] = Field(description="Every step, in definition order.")


async def workflow_view(session: AsyncSession, workflow: Workflow) -> WorkflowOut:
    """A workflow as callers see it, with each step's current job."""
    jobs = await step_jobs(session, tenant_id=workflow.tenant_id, workflow_id=workflow.id)
    views = await job_views(session, tenant_id=workflow.tenant_id, jobs=jobs)
    by_step = {job.workflow_step: view for job, view in zip(jobs, views, strict=True)}
    plan = plan_of(workflow, jobs)
    steps = []
    for pointer, step in steps_of(definition_of(workflow)):
        job = by_step.get(pointer)
        status = plan.step_states.get(pointer, "waiting")
        if job is None and workflow.status == "cancelled":
            status = "cancelled"
        steps.append(WorkflowStepOut(step=pointer, name=step.job, status=status, job=job))
    return WorkflowOut(
        id=workflow.id,
        status=cast(WorkflowStatus, workflow.status),  # the CHECK constraint's values
        definition=workflow.definition,
        result=workflow.result,
        created_at=workflow.created_at,
        finished_at=workflow.finished_at,
        steps=steps,
    )
