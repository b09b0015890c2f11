"""Reading the settings once per process, and refusing bad ones without quoting a value."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from pydantic import BaseModel, ValidationError

from shared.errors import InvalidSettings, SettingNotSet
from shared.settings.model import Settings


def describe_problems(error: ValidationError) -> list[str]:
    """One line per invalid setting of `Settings`, naming its variable and never its value."""
    lines = []
    for problem in error.errors(include_url=False, include_input=False, include_context=False):
        message = problem["msg"].removeprefix("Value error, ")
        if not problem["loc"]:  # a check across fields: its message names the variables
            lines.append(message)
            continue
        lines.append(f"{_variable_of(problem['loc'])}: {message}")
    return lines


def _variable_of(loc: tuple[int | str, ...]) -> str:
    """The variable that sets the field at `loc`, then the path inside its JSON value, if any.

    Groups of settings (`webhooks`, `circuits`) take one variable per field, joined by `__`.
    """
    model: type[BaseModel] | None = Settings
    names: list[str] = []
    rest = list(loc)
    while model is not None and rest and str(rest[0]) in model.model_fields:
        names.append(str(rest.pop(0)))
        annotation = model.model_fields[names[-1]].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            model = None
    variable = "JOBGATE_" + "__".join(name.upper() for name in names)
    return variable + (f" (at {'.'.join(map(str, rest))})" if rest else "")


@lru_cache
def get_settings() -> Settings:
    """Settings of this process, read once; refused ones raise `InvalidSettings`, which (unlike
    pydantic's error) never quotes a value."""
    try:
        return Settings()
    except ValidationError as exc:
        raise InvalidSettings(describe_problems(exc)) from None


@contextmanager
def exit_on_settings_problems() -> Iterator[None]:
    """At a process's entry point: refused or missing settings end it with a line per problem
    and exit code 2, as `jobgate` commands do, instead of a traceback."""
    try:
        yield
    except (InvalidSettings, SettingNotSet) as exc:
        problems = exc.problems if isinstance(exc, InvalidSettings) else [str(exc)]
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def settings_or_exit() -> Settings:
    """`get_settings()` for a process's entry point (`uvicorn gateway.main:app`, `arq
    worker.WorkerSettings`), under `exit_on_settings_problems`."""
    with exit_on_settings_problems():
        return get_settings()
