"""How long finished jobs stay readable: the job type's own TTL, else the setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts import JobType
from shared.settings import Settings


def expires_at(job_type: JobType[Any, Any], settings: Settings) -> datetime:
    """When a job of this type that finishes now is purged."""
    ttl = job_type.result_ttl_seconds
    seconds = settings.result_ttl_seconds if ttl is None else ttl
    return datetime.now(UTC) + timedelta(seconds=seconds)
