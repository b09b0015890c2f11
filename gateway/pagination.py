"""Opaque list cursors: the id of the last job on the page, encoded so callers do not parse it."""

from __future__ import annotations

import base64
import binascii
import uuid

from shared.errors import InvalidCursor


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError):
        raise InvalidCursor() from None
