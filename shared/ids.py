"""Identifiers: UUIDv7 job ids sort by creation time, so the newest-first list is an index scan."""

from __future__ import annotations

import uuid

import uuid_utils


def new_id() -> uuid.UUID:
    """A new time-ordered UUID (version 7)."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)
