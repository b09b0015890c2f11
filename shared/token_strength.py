"""Whether an operator token is fit to guard `/admin`: long, unpredictable, not a placeholder.

The admin token creates tenants and keys, so a guessable one is a way in. Three refusals, each
cheap to explain in one line: too short; a word we (or anyone) publish as a placeholder, since
a copied example is no secret; and too little variety to have come from a random generator.
"""

from __future__ import annotations

import math
import re

MIN_ADMIN_TOKEN_CHARS = 24
# Length * log2(distinct characters): what a token would be worth were it drawn uniformly from
# its own characters, so an upper bound. `openssl rand -hex 12` (24 characters, about 14 of the
# 16 digits seen) scores about 91; `123456789012345678901234` 80. 80 bits is past any guessing
# over HTTP, and refuses tokens a person typed from a small alphabet.
MIN_ADMIN_TOKEN_BITS = 80.0
# Compared with the token lowercased and stripped to letters and digits, so `CHANGE-ME` and
# `change_me` are caught alike. `deploy/k8s/secret.example.yaml` publishes one of these.
PLACEHOLDER_WORDS = ("changeme", "replaceme", "placeholder", "yourtoken", "example", "secret")
GENERATE_HINT = "generate one with `openssl rand -hex 24`"


def admin_token_problem(token: str) -> str | None:
    """Why `token` is refused as the admin token, or None if it is fit."""
    if len(token) < MIN_ADMIN_TOKEN_CHARS:
        return f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters"
    letters = re.sub(r"[^a-z0-9]", "", token.lower())
    if any(word in letters for word in PLACEHOLDER_WORDS):
        return f"is a placeholder, not a secret: {GENERATE_HINT}"
    repeated = re.fullmatch(r"(.+?)\1+", token) is not None
    if repeated or len(token) * math.log2(len(set(token))) < MIN_ADMIN_TOKEN_BITS:
        return f"is too predictable to be random: {GENERATE_HINT}"
    return None
