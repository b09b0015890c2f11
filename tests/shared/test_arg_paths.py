"""Dotted paths into Args: declaration-time checks and the key read from a job's args."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import pytest
from pydantic import Field

from shared.arg_paths import ArgPathError, check_path, value_at
from shared.contracts import Contract


class Customer(Contract):
    id: uuid.UUID
    region: Literal["eu", "us"] = "eu"
    tags: tuple[str, ...] = ()


class Order(Contract):
    customer: Customer
    shop: Annotated[str, Field(max_length=20)]
    number: int
    note: str | None = None
    gift: Customer | None = None


@pytest.mark.parametrize("path", ["shop", "number", "note", "customer.id", "customer.region"])
def test_paths_to_plain_fields_pass(path: str) -> None:
    check_path(Order, path)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("shopp", "Order has no field 'shopp'"),
        ("customer.name", "Order has no field 'customer.name'"),
        ("customer", "must end at a plain value"),
        ("customer.tags", "must end at a plain value"),
        ("shop.length", "'shop' is not a nested model"),
    ],
)
def test_other_paths_are_refused_with_the_reason(path: str, message: str) -> None:
    with pytest.raises(ArgPathError, match=message):
        check_path(Order, path)


def test_an_optional_nested_model_can_be_walked_through() -> None:
    check_path(Order, "gift.id")


def test_value_at_reads_text_as_is_and_other_values_as_json() -> None:
    customer = uuid.uuid4()
    args = Order(customer=Customer(id=customer), shop="acme", number=7).model_dump(mode="json")
    assert value_at(args, "shop") == "acme"
    assert value_at(args, "number") == "7"
    assert value_at(args, "customer.id") == str(customer)


def test_a_missing_or_null_part_gives_no_key() -> None:
    args = {"shop": "acme", "note": None, "gift": None}
    assert value_at(args, "note") is None
    assert value_at(args, "gift.id") is None
    assert value_at(args, "absent") is None
    assert value_at({"shop": "acme"}, "shop.length") is None
