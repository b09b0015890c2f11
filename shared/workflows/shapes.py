"""What the workflow checks know of a node's output before anything runs: its shape.

A step's output is its Result (an object whose fields have JSON schemas); a group's is a list
of its members' outputs. `source_problem` says why an `args_from` source cannot be read from
such an input, or does not fit the arg it fills: a field that does not exist, a list where an
object is expected, a JSON type the arg refuses (`"emails"`, an integer, for a string arg).
Types are compared only where both schemas say them plainly (`type`, `anyOf` of such); anything
else (nested models, `$ref`) is left to the step's own validation once it is released.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class ObjectShape:
    """An object with these fields (a step's Result), each with its JSON schema."""

    fields: Mapping[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True)
class ListShape:
    """A list whose items have these shapes (a group's outputs)."""

    items: tuple[Shape, ...]


Shape = ObjectShape | ListShape
OUTCOME = ObjectShape({"status": {"type": "string"}, "result": {}, "error": {}})
"""A chord member's outcome, as an `include_failures` callback receives it."""


def result_shape(result: type[BaseModel]) -> ObjectShape:
    """The shape of a step's output: its Result model's fields."""
    properties: dict[str, Schema] = result.model_json_schema().get("properties", {})
    return ObjectShape(properties)


def source_problem(source: str, given: Shape | None, target: Schema) -> str | None:
    """Why `source` cannot fill an arg of schema `target` from an input `given` (None: it can)."""
    if given is None:
        return "this step has no input: nothing runs before it"
    if source == "$":
        return _mismatch(
            frozenset({"object" if isinstance(given, ObjectShape) else "array"}), target
        )
    if source.startswith("*."):
        return _items_problem(source, given, target)
    if not isinstance(given, ObjectShape):
        return f"the input is a list (after a group); use `*.{source}` or `$`"
    if source not in given.fields:
        known = ", ".join(sorted(given.fields)) or "none"
        return f"the input has no field {source!r} (it has: {known})"
    return _mismatch(_json_types(given.fields[source]), target)


def _items_problem(source: str, given: Shape, target: Schema) -> str | None:
    name = source[2:]
    if not isinstance(given, ListShape):
        return f"`{source}` needs a list input (after a group); this input is one object"
    if not all(isinstance(item, ObjectShape) and name in item.fields for item in given.items):
        return f"not every item of the input has a field {name!r}"
    problem = _mismatch(frozenset({"array"}), target)
    items = _array_items(target)
    for item in given.items:
        assert isinstance(item, ObjectShape)  # noqa: S101 (checked above)
        problem = problem or _mismatch(_json_types(item.fields[name]), items, "each item ")
    return problem


def _json_types(schema: Schema) -> frozenset[str] | None:
    """The JSON types a schema allows, if it says so plainly (None: it does not)."""
    if "type" in schema:
        kind = schema["type"]
        return frozenset(kind if isinstance(kind, list) else [kind])
    if "anyOf" in schema:
        kinds: set[str] = set()
        for member in schema["anyOf"]:
            found = _json_types(member)
            if found is None:
                return None
            kinds |= found
        return frozenset(kinds)
    return None


def _array_items(schema: Schema) -> Schema:
    """The item schema of an array schema (or of the array member of an `anyOf`)."""
    if schema.get("type") == "array":
        items: Schema = schema.get("items", {})
        return items
    for member in schema.get("anyOf", ()):
        if member.get("type") == "array":
            return _array_items(member)
    return {}


def _mismatch(source: frozenset[str] | None, target: Schema, what: str = "") -> str | None:
    """A description of JSON types `source` may have that `target` refuses (None: it fits).

    A source that may be null is given the benefit of the doubt: only a released step can tell.
    """
    allowed = _json_types(target)
    if source is None or allowed is None:
        return None
    if "number" in allowed:
        allowed |= {"integer"}
    refused = source - allowed - {"null"}
    if not refused:
        return None
    return f"{what}gives {'/'.join(sorted(source))} where the arg takes {'/'.join(sorted(allowed))}"
