"""Registers `tests.rate_limited_jobs`' types, for worker processes that load them by name."""

from __future__ import annotations

from shared.contracts import REGISTRY
from tests.rate_limited_jobs import RATE_LIMITED_TYPES

for _job_type in RATE_LIMITED_TYPES:
    REGISTRY.register(_job_type)
