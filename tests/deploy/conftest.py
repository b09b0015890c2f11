"""Deployment files are checked statically: no PostgreSQL or Redis involved."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_state() -> None:
    """Replaces the suite's per-test reset of PostgreSQL and Redis, which these tests never use."""
