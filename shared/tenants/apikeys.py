"""API key format, generation and verification.

A key reads `jg_<key id, 32 hex>_<secret, 43 url-safe chars>`: the id finds the row, the
256-bit secret proves possession. Only SHA-256 of the secret is stored; a slow password hash
buys nothing for a random secret this long, and SHA-256 keeps authentication cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum

PREFIX = "jg_"
_KEY_HEX = re.compile(r"[0-9a-f]{32}")
SECRET_BYTES = 32


class Scope(StrEnum):
    """What a key may do."""

    SUBMIT = "jobs:submit"
    READ = "jobs:read"
    CANCEL = "jobs:cancel"


ALL_SCOPES = tuple(Scope)


@dataclass(frozen=True)
class IssuedKey:
    """A freshly generated key: the full token (shown once) and what is stored."""

    key_id: uuid.UUID
    token: str
    secret_hash: bytes


def hash_secret(secret: str) -> bytes:
    """The stored form of a key's secret."""
    return hashlib.sha256(secret.encode()).digest()


def issue_key(key_id: uuid.UUID) -> IssuedKey:
    """A new random key for the row `key_id`."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return IssuedKey(
        key_id=key_id, token=f"{PREFIX}{key_id.hex}_{secret}", secret_hash=hash_secret(secret)
    )


def parse_token(token: str) -> tuple[uuid.UUID, str] | None:
    """Split a presented key into (key id, secret); None if it is not shaped like one."""
    if not token.startswith(PREFIX):
        return None
    key_hex, sep, secret = token[len(PREFIX) :].partition("_")
    # Exactly 32 lowercase hex digits, as issued: `uuid.UUID(hex=...)` alone would also accept
    # spaces, signs, braces and `0x`, so one key would answer to many spellings.
    if not sep or not _KEY_HEX.fullmatch(key_hex) or not secret:
        return None
    return uuid.UUID(hex=key_hex), secret


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)
