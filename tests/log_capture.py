"""Capturing what the configured renderer writes: the log lines a deployment would see."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog


@contextmanager
def rendered_logs() -> Iterator[io.StringIO]:
    """Every line the root logger writes meanwhile, rendered by `configure_logging`'s formatter.

    Enter it after `create_app` / `configure_logging`, which replace the root's handlers.
    """
    root = logging.getLogger()
    formatter = next(
        handler.formatter
        for handler in root.handlers
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter)
    )
    rendered = io.StringIO()
    handler = logging.StreamHandler(rendered)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    try:
        yield rendered
    finally:
        root.removeHandler(handler)


def json_lines(rendered: io.StringIO) -> list[dict[str, Any]]:
    """The captured lines, each parsed (every line must be one JSON object)."""
    return [json.loads(line) for line in rendered.getvalue().splitlines() if line.strip()]
