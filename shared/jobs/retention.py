"""How long finished jobs stay readable: the job type's own TTL, else the setting."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from shared.contracts import JobType
from shared.settings import Settings


def ttl_seconds(job_type: JobType[Any, Any], settings: Settings) -> float:
    """How long a finished job of this type stays readable."""
    ttl = job_type.result_ttl_seconds
    return settings.result_ttl_seconds if ttl is None else ttl


def expires_at(job_type: JobType[Any, Any], settings: Settings) -> datetime:
    """When a job of this type that finishes now is purged."""
    return datetime.now(UTC) + timedelta(seconds=ttl_seconds(job_type, settings))


@dataclass(frozen=True)
class Retention:
    """`ttl_seconds` of several job types at once, for statements that end jobs of any of them
    in SQL (an expiry at a claim or by the sweep) and compute `expires_at` there."""

    default_seconds: float
    """For a job type not in `by_type` (declared since the worker started)."""
    by_type: dict[str, float]

    @classmethod
    def of(cls, job_types: Iterable[JobType[Any, Any]], settings: Settings) -> Retention:
        return cls(
            default_seconds=float(settings.result_ttl_seconds),
            by_type={job_type.name: ttl_seconds(job_type, settings) for job_type in job_types},
        )

    @cached_property
    def by_type_json(self) -> str:
        """`by_type` as a JSON object, as raw statements take it (serialised once)."""
        return json.dumps(self.by_type)
