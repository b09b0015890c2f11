"""API key format: issue, parse, verify; anything not shaped like a key parses to None."""

from __future__ import annotations

import uuid

import pytest

from shared.tenants.apikeys import PREFIX, hash_secret, issue_key, parse_token, secret_matches

KEY_ID = uuid.UUID("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")


class TestIssueKey:
    def test_token_carries_the_key_id_and_a_long_secret(self) -> None:
        issued = issue_key(KEY_ID)
        assert issued.key_id == KEY_ID
        assert issued.token.startswith(f"{PREFIX}{KEY_ID.hex}_")
        secret = issued.token.removeprefix(f"{PREFIX}{KEY_ID.hex}_")
        assert len(secret) == 43  # 32 random bytes, url-safe base64

    def test_only_a_hash_of_the_secret_is_kept(self) -> None:
        issued = issue_key(KEY_ID)
        parsed = parse_token(issued.token)
        assert parsed is not None
        _, secret = parsed
        assert issued.secret_hash == hash_secret(secret)
        assert secret.encode() not in issued.secret_hash
        assert len(issued.secret_hash) == 32

    def test_every_key_is_different(self) -> None:
        tokens = {issue_key(KEY_ID).token for _ in range(20)}
        assert len(tokens) == 20


class TestParseToken:
    def test_round_trips_an_issued_key(self) -> None:
        issued = issue_key(KEY_ID)
        parsed = parse_token(issued.token)
        assert parsed is not None
        key_id, secret = parsed
        assert key_id == KEY_ID
        assert secret_matches(secret, issued.secret_hash)

    def test_a_secret_may_contain_underscores(self) -> None:
        assert parse_token(f"jg_{KEY_ID.hex}_a_b-c") == (KEY_ID, "a_b-c")

    @pytest.mark.parametrize(
        "token",
        [
            "",
            "jg_",
            "jg__secret",
            f"jg_{KEY_ID.hex}",
            f"jg_{KEY_ID.hex}_",
            f"xx_{KEY_ID.hex}_secret",
            f"{KEY_ID.hex}_secret",
            f"JG_{KEY_ID.hex}_secret",
            f"jg_{KEY_ID.hex[:-1]}_secret",
            f"jg_{KEY_ID.hex}0_secret",
            f"jg_{'z' * 32}_secret",
            f"jg_{{{KEY_ID.hex[:30]}}}_secret",
            f"jg_{str(KEY_ID)[:32]}_secret",
            f"jg_{KEY_ID.hex.upper()}_secret",
            f"jg_ {KEY_ID.hex[1:]}_secret",
            f"jg_+{KEY_ID.hex[1:]}_secret",
            f"jg_0x{KEY_ID.hex[2:]}_secret",
            f"jg_{KEY_ID.hex[1:]}\n_secret",
            "Bearer jg_x",
        ],
    )
    def test_malformed_tokens_are_none(self, token: str) -> None:
        assert parse_token(token) is None


class TestSecretMatches:
    def test_only_the_right_secret_matches(self) -> None:
        stored = hash_secret("right")
        assert secret_matches("right", stored)
        assert not secret_matches("wrong", stored)
        assert not secret_matches("", stored)
        assert not secret_matches("right", b"")
