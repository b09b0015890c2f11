"""Webhook signatures: `X-Jobgate-Signature: sha256=<hex HMAC-SHA256 of the body>`.

The HMAC covers the exact body bytes sent, keyed with the tenant's webhook secret. A receiver
recomputes it over the raw body it received (before any JSON parsing) and compares in
constant time, as `verify_signature` does; `X-Jobgate-Delivery` (stable across retries of one
delivery) lets it drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Jobgate-Signature"
DELIVERY_HEADER = "X-Jobgate-Delivery"
EVENT_HEADER = "X-Jobgate-Event"
_SCHEME = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The `X-Jobgate-Signature` value for `body` signed with `secret`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"{_SCHEME}{digest}"


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    """Whether `signature` (the header's value) is `body` signed with `secret`."""
    if signature is None or not signature.startswith(_SCHEME):
        return False
    return hmac.compare_digest(sign(secret, body), signature)
