"""API keys this gateway process proved lately: the pre-body check spares them a lookup.

Not an authority. A route still authenticates the key for real (the submit statement, the
`SubmitAuth` dependencies), so a key revoked a moment ago is still refused; what this
cache decides is only whether the gateway reads and validates a body at all. It holds keys
whose secret matched, so a caller without a valid key cannot grow it, and it is bounded anyway.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from shared.tenants.apikeys import hash_secret, secret_matches

PROVEN_FOR_SECONDS = 60.0
"""How long a proven key skips the lookup; a revoked key's bodies are read for at most this
long (then refused by the real check, as ever)."""
MAX_KEYS = 10_000


@dataclass(frozen=True)
class _Proven:
    secret_hash: bytes
    scopes: frozenset[str]
    until: float


@dataclass
class KnownKeys:
    """Key id -> the secret's hash and the key's scopes, for `PROVEN_FOR_SECONDS`."""

    _proven: dict[uuid.UUID, _Proven] = field(default_factory=dict)

    def scopes_of(self, key_id: uuid.UUID, secret: str) -> frozenset[str] | None:
        """The scopes of a key proven lately with this secret (constant-time), else None."""
        proven = self._proven.get(key_id)
        if proven is None:
            return None
        if proven.until < time.monotonic():
            del self._proven[key_id]
            return None
        return proven.scopes if secret_matches(secret, proven.secret_hash) else None

    def remember(self, key_id: uuid.UUID, secret: str, scopes: frozenset[str]) -> None:
        """Record a key whose secret the database just confirmed."""
        self._proven.pop(key_id, None)  # re-inserted last: the newest proof
        if len(self._proven) >= MAX_KEYS:
            # Dicts keep insertion order: the first entry is the oldest proof.
            del self._proven[next(iter(self._proven))]
        until = time.monotonic() + PROVEN_FOR_SECONDS
        self._proven[key_id] = _Proven(hash_secret(secret), scopes, until)
