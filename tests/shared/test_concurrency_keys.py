"""The key a new job counts under: from its args, from its submit, or none."""

from __future__ import annotations

import hashlib

import pytest

from shared.contracts import ECHO
from shared.errors import OptionRefused
from shared.jobs.concurrency_keys import MAX_KEY_LENGTH, concurrency_key_of
from tests.keyed_jobs import KEYED_QUEUE


def _args(customer: object) -> dict[str, object]:
    return {"customer": {"id": customer}, "seconds": 0}


def test_the_key_is_read_from_the_declared_path() -> None:
    assert concurrency_key_of(KEYED_QUEUE, _args("42"), None) == "42"


def test_the_submit_may_give_its_own() -> None:
    assert concurrency_key_of(KEYED_QUEUE, _args("42"), "vip") == "vip"


def test_a_missing_or_null_value_means_no_key() -> None:
    assert concurrency_key_of(KEYED_QUEUE, {"seconds": 0}, None) is None
    assert concurrency_key_of(KEYED_QUEUE, _args(None), None) is None


def test_a_long_key_becomes_its_digest() -> None:
    at_limit, over = "k" * MAX_KEY_LENGTH, "k" * (MAX_KEY_LENGTH + 1)
    assert concurrency_key_of(KEYED_QUEUE, _args(at_limit), None) == at_limit
    digest = hashlib.sha256(over.encode()).hexdigest()
    assert concurrency_key_of(KEYED_QUEUE, _args(over), None) == f"sha256:{digest}"


def test_a_type_without_a_limit_has_no_key_and_refuses_one() -> None:
    assert concurrency_key_of(ECHO, {"message": "hi"}, None) is None
    with pytest.raises(OptionRefused) as refused:
        concurrency_key_of(ECHO, {"message": "hi"}, "42")
    assert refused.value.issues == [
        {
            "loc": ["options", "concurrency_key"],
            "msg": "job type 'echo' declares no concurrency limit, so it takes no key",
            "type": "option_refused",
        }
    ]
