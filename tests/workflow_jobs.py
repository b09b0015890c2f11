"""Test-only job types modelled on seed 004's Celery tasks, for docs/workflows.md's examples.

They are declared with `JobType(...)` (not `job_type(...)`), so they are not in the registry
for the whole test session (the OpenAPI drift test would see their routes); `declared()`
registers them for one test. Their implementations count runs and can be made to fail, so tests
can check that a resumed workflow does not run a succeeded step again.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from pydantic import Field, model_validator

from shared.contracts import Backoff, Contract, JobType
from shared.errors import PermanentJobError
from worker.binding import implements
from worker.context import JobContext


class PstArgs(Contract):
    pst_file_id: Annotated[str, Field(description="The PST file to process.")]


class PstResult(Contract):
    attachment_id: Annotated[str, Field(description="The attachment found in it.")]
    emails: Annotated[int, Field(description="Emails extracted.")]


class ExtractArgs(Contract):
    attachment_id: Annotated[str, Field(description="The attachment to read.")]


class ExtractResult(Contract):
    document_id: Annotated[str, Field(description="The document made of its text.")]
    text: Annotated[str, Field(description="The text.")]


class IndexArgs(Contract):
    document_id: Annotated[str | None, Field(description="One document to index.")] = None
    document_ids: Annotated[
        list[str], Field(default_factory=list, description="Several documents to index.")
    ]

    @model_validator(mode="after")
    def _something(self) -> IndexArgs:
        if self.document_id is None and not self.document_ids:
            raise ValueError("give document_id or document_ids")
        return self


class IndexResult(Contract):
    indexed: Annotated[list[str], Field(description="The documents indexed.")]


class OutcomesArgs(Contract):
    statuses: Annotated[list[str], Field(description="Each chord member's status.")]


class OutcomesResult(Contract):
    failed: Annotated[int, Field(description="How many members failed.")]


PROCESS_PST_FILE = JobType(
    name="process_pst_file",
    args=PstArgs,
    result=PstResult,
    description="Extract emails and attachments from a PST file.",
    queue="default",
)
EXTRACT_ATTACHMENT = JobType(
    name="extract_attachment",
    args=ExtractArgs,
    result=ExtractResult,
    description="Extract an attachment's text.",
    max_tries=1,
    backoff=Backoff(base_seconds=0.1),
)
INDEX_TO_OPENSEARCH = JobType(
    name="index_to_opensearch",
    args=IndexArgs,
    result=IndexResult,
    description="Index documents.",
)
COUNT_OUTCOMES = JobType(
    name="count_outcomes",
    args=OutcomesArgs,
    result=OutcomesResult,
    description="Count the failed members of a chord.",
)
WORKFLOW_TYPES = (PROCESS_PST_FILE, EXTRACT_ATTACHMENT, INDEX_TO_OPENSEARCH, COUNT_OUTCOMES)

RUNS: Counter[str] = Counter()
"""Runs per `<type>:<key>`, across the test (reset by the fixture)."""
UNREADABLE: set[str] = set()
"""Attachments `extract_attachment` fails on (the outside condition a test later fixes)."""


@implements(PROCESS_PST_FILE)
async def process_pst_file(job: JobContext, args: PstArgs) -> PstResult:
    RUNS[f"process_pst_file:{args.pst_file_id}"] += 1
    return PstResult(attachment_id=f"{args.pst_file_id}-att", emails=3)


@implements(EXTRACT_ATTACHMENT)
async def extract_attachment(job: JobContext, args: ExtractArgs) -> ExtractResult:
    RUNS[f"extract_attachment:{args.attachment_id}"] += 1
    if args.attachment_id in UNREADABLE:
        raise PermanentJobError(f"cannot read {args.attachment_id}")
    return ExtractResult(document_id=f"doc-{args.attachment_id}", text="hello")


@implements(INDEX_TO_OPENSEARCH)
async def index_to_opensearch(job: JobContext, args: IndexArgs) -> IndexResult:
    documents = [args.document_id] if args.document_id else args.document_ids
    RUNS[f"index_to_opensearch:{','.join(documents)}"] += 1
    return IndexResult(indexed=documents)


@implements(COUNT_OUTCOMES)
async def count_outcomes(job: JobContext, args: OutcomesArgs) -> OutcomesResult:
    return OutcomesResult(failed=sum(status != "succeeded" for status in args.statuses))
