"""Submit forms generated from each job type's Args JSON Schema, read back for its pydantic model.

The form only shapes input; the job type's own model validates it (lax mode turns the text of
`"3"` into 3), so the browser and the API accept and refuse exactly the same args. Fields the
schema cannot map to one input (arrays, objects) take JSON in a text area.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from shared.contracts import JobType
from shared.errors import QueueNotAllowed
from shared.jobs.submit import SubmitOptions

Kind = Literal["text", "textarea", "email", "integer", "number", "checkbox", "select", "json"]
LONG_TEXT_CHARS = 200
"""A string field allowed more than this gets a text area instead of a one-line input."""


@dataclass(frozen=True)
class FormField:
    """One input of a generated form."""

    name: str
    label: str
    kind: Kind
    required: bool
    description: str = ""
    default: str = ""
    choices: list[str] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None


def _resolve(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Follow a `$ref`, and drop the `null` branch of an optional field's `anyOf`."""
    if "$ref" in prop:
        target = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
        return {**target, **{key: value for key, value in prop.items() if key != "$ref"}}
    branches = [branch for branch in prop.get("anyOf", []) if branch.get("type") != "null"]
    if len(branches) == 1:
        return {**_resolve(branches[0], defs), **{k: v for k, v in prop.items() if k != "anyOf"}}
    return prop


def _kind(prop: dict[str, Any]) -> Kind:
    kind = prop.get("type")
    if "enum" in prop:
        return "select"
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return "integer" if kind == "integer" else "number"
    if kind == "string":
        if prop.get("format") == "email":
            return "email"
        return "textarea" if prop.get("maxLength", 0) > LONG_TEXT_CHARS else "text"
    return "json"


def _shown_default(prop: dict[str, Any], kind: Kind) -> str:
    if "default" not in prop:
        return ""
    value = prop["default"]
    if kind == "json":
        return json.dumps(value)
    if kind == "checkbox":
        return "on" if value else ""
    return str(value)


def form_fields(model: type[BaseModel]) -> list[FormField]:
    """The inputs for `model`'s fields, in declaration order."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    fields = []
    for name, raw in schema.get("properties", {}).items():
        prop = _resolve(raw, defs)
        kind = _kind(prop)
        fields.append(
            FormField(
                name=name,
                label=prop.get("title", name),
                kind=kind,
                required=name in required,
                description=prop.get("description", ""),
                default=_shown_default(prop, kind),
                choices=[str(choice) for choice in prop.get("enum", [])],
                minimum=prop.get("minimum", prop.get("exclusiveMinimum")),
                maximum=prop.get("maximum", prop.get("exclusiveMaximum")),
                max_length=prop.get("maxLength"),
            )
        )
    return fields


def read_args(
    fields: list[FormField], form: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The args as the model should see them, and errors found before it (unparsable JSON)."""
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for item in fields:
        if item.kind == "checkbox":
            data[item.name] = item.name in form
            continue
        raw = form.get(item.name, "")
        if not isinstance(raw, str) or (raw == "" and not item.required):
            continue  # left empty: the model's default applies
        if item.kind == "json":
            try:
                data[item.name] = json.loads(raw)
            except ValueError:
                errors[item.name] = "Enter valid JSON."
            continue
        data[item.name] = raw
    return data, errors


def field_errors(exc: ValidationError, prefix: str = "") -> dict[str, str]:
    """The model's complaints keyed by form field (`__all__` for the whole model)."""
    errors: dict[str, str] = {}
    for issue in exc.errors():
        loc = issue["loc"]
        key = f"{prefix}{loc[0]}" if loc else "__all__"
        message = issue["msg"].removeprefix("Value error, ")
        errors.setdefault(key, message)
    return errors


def validate_args(
    job_type: JobType[Any, Any], form: Mapping[str, Any]
) -> tuple[BaseModel | None, dict[str, str]]:
    """The job type's Args model built from the form, or the errors to show beside each field."""
    data, errors = read_args(form_fields(job_type.args), form)
    if errors:
        return None, errors
    try:
        return job_type.args.model_validate(data), {}
    except ValidationError as exc:
        return None, field_errors(exc)


def _labels(text: str) -> dict[str, str] | str:
    """`key:value` lines (as the jobs filter writes labels) as a dict, or what is wrong."""
    labels: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            return f"Write one key:value per line, not {line.strip()[:40]!r}."
        labels[key.strip()] = value.strip()
    return labels


def _seconds(text: str) -> float | str:
    """A number of seconds typed into a form, or what is wrong with it (the options are
    strict: the API takes a JSON number, never text)."""
    try:
        return float(text)
    except ValueError:
        return "Enter a number of seconds."


def validate_options(
    job_type: JobType[Any, Any], form: Mapping[str, Any]
) -> tuple[SubmitOptions | None, dict[str, str]]:
    """The submit options from the form's `options.*` fields (empty ones: the type's default)."""
    data: dict[str, Any] = {}
    for name in ("priority", "queue"):
        raw = form.get(f"options.{name}", "")
        if isinstance(raw, str) and raw:
            data[name] = raw
    for name in ("delay_seconds", "start_within_seconds"):
        typed = form.get(f"options.{name}", "")
        if isinstance(typed, str) and typed.strip():
            seconds = _seconds(typed)
            if isinstance(seconds, str):
                return None, {f"options.{name}": seconds}
            data[name] = seconds
    labels = _labels(str(form.get("options.labels", "")))
    if isinstance(labels, str):
        return None, {"options.labels": labels}
    data["labels"] = labels
    try:
        options = SubmitOptions.model_validate(data)
        job_type.queue_for(options.queue)
    except ValidationError as exc:
        return None, field_errors(exc, prefix="options.")
    except QueueNotAllowed as exc:
        return None, {"options.queue": exc.message}
    return options, {}
