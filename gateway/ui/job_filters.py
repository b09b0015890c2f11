"""The jobs page's filters, read from its query string (a bookmarkable URL) into a `JobQuery`.

An HTML form sends every field, empty ones too, and a person types the values: an empty field
means "any", and a value that makes no sense is shown as a message next to the filters rather
than refused with a 422.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from gateway.pagination import decode_cursor
from shared.errors import InvalidCursor
from shared.jobs.store import JobQuery, utc_filter_time
from shared.status import JobStatus

PAGE_SIZE = 25
MAX_TEXT = 256


@dataclass(frozen=True)
class JobFilters:
    """What the viewer asked for; `problems` says which inputs were ignored and why."""

    status: str = ""
    name: str = ""
    label: str = ""
    created_after: str = ""
    created_before: str = ""
    tenant: str = ""
    cursor: str = ""
    problems: list[str] = field(default_factory=list)

    def params(self, *, cursor: str | None = None) -> str:
        """The query string of these filters (and a page cursor), for links and polling."""
        values = {
            "status": self.status,
            "name": self.name,
            "label": self.label,
            "created_after": self.created_after,
            "created_before": self.created_before,
            "tenant": self.tenant,
            "cursor": self.cursor if cursor is None else cursor,
        }
        return urlencode({key: value for key, value in values.items() if value})


def _text(params: QueryParams, name: str) -> str:
    return params.get(name, "").replace("\x00", "")[:MAX_TEXT].strip()


def _time(value: str, what: str, problems: list[str]) -> datetime | None:
    """A `datetime-local` value (no offset: UTC, as the dashboard shows times)."""
    if not value:
        return None
    try:
        return utc_filter_time(datetime.fromisoformat(value))
    except ValueError:  # not a time, or one outside years 1..9999 in UTC
        problems.append(f"{what} is not a date and time between years 1 and 9999; ignored.")
        return None


def read_filters(params: QueryParams) -> tuple[JobFilters, JobQuery, uuid.UUID | None]:
    """The filters as typed, the query they make, and the tenant picked (operators only)."""
    problems: list[str] = []
    filters = {name: _text(params, name) for name in JobFilters.__dataclass_fields__}
    filters.pop("problems")
    statuses: list[JobStatus] = []
    if filters["status"]:
        try:
            statuses = [JobStatus(filters["status"])]
        except ValueError:
            problems.append("Unknown status; ignored.")
    labels: dict[str, str] = {}
    if filters["label"]:
        key, sep, value = filters["label"].partition(":")
        if sep and key:
            labels = {key: value}
        else:
            problems.append("Write the label as key:value; ignored.")
    before_id = None
    if filters["cursor"]:
        try:
            before_id = decode_cursor(filters["cursor"])
        except InvalidCursor:
            problems.append("That page link is broken; showing the first page.")
    tenant_id = None
    if filters["tenant"]:
        try:
            tenant_id = uuid.UUID(filters["tenant"])
        except ValueError:
            problems.append("Unknown tenant; ignored.")
    query = JobQuery(
        limit=PAGE_SIZE,
        statuses=statuses,
        names=[filters["name"]] if filters["name"] else [],
        labels=labels,
        created_after=_time(filters["created_after"], "Created after", problems),
        created_before=_time(filters["created_before"], "Created before", problems),
        before_id=before_id,
    )
    return JobFilters(**filters, problems=problems), query, tenant_id
