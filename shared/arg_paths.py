"""Dotted paths into a job's Args: the field a concurrency or rate limit is keyed by.

A job type names the field once (`key="customer.id"`); `check_path` refuses, when the type is
declared, a path that is not a field of its Args or does not end at a plain value, so a typo
fails at import rather than at the first submit; `value_at` reads the key of one job's args.
"""

from __future__ import annotations

import enum
import json
import types
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

# What a key may be: values with one obvious text form. Lists, dicts and models are refused:
# two equal lists would compare by their JSON text, which is easy to get subtly wrong.
_PLAIN = (str, int, float, bool, uuid.UUID, Decimal, datetime, date, enum.Enum)


class ArgPathError(ValueError):
    """A path that does not name a plain field of the Args."""


def check_path(args: type[BaseModel], path: str) -> None:
    """Refuse a `path` that is not a dotted chain of Args fields ending at a plain value."""
    model: type[BaseModel] = args
    parts = path.split(".")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            raise ArgPathError(f"{args.__name__} has no field {'.'.join(parts[: depth + 1])!r}")
        leaves = _types_of(field.annotation)
        nested = [kind for kind in leaves if isinstance(kind, type) and issubclass(kind, BaseModel)]
        if depth < len(parts) - 1:
            if len(nested) != 1:
                raise ArgPathError(f"{'.'.join(parts[: depth + 1])!r} is not a nested model")
            model = nested[0]
        elif nested or not all(_is_plain(kind) for kind in leaves):
            raise ArgPathError(f"{path!r} must end at a plain value (text, number, id, date)")


def value_at(args: Mapping[str, Any], path: str) -> str | None:
    """The key at `path` of a job's args (as JSON: what the job stores), as text; None when a
    part of the path is missing or null (the job then has no key and is not limited by it)."""
    value: Any = args
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
        if value is None:
            return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _types_of(annotation: Any) -> list[Any]:
    """The types an annotation allows, with Optional/Union/Annotated unwrapped."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return [kind for arg in get_args(annotation) for kind in _types_of(arg)]
    if origin is Literal:
        return [type(value) for value in get_args(annotation)]
    if origin is not None and hasattr(annotation, "__metadata__"):  # Annotated
        return _types_of(get_args(annotation)[0])
    return [annotation]


def _is_plain(kind: Any) -> bool:
    return kind is type(None) or (isinstance(kind, type) and issubclass(kind, _PLAIN))
