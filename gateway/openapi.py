"""Render the OpenAPI document; `python -m gateway.openapi` writes `openapi/openapi.json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gateway.app import create_app
from shared.settings import Settings

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def render_openapi() -> str:
    """The document as committed: stable key order, trailing newline."""
    # Only built-in job types: the committed document is the contract every install shares.
    app = create_app(Settings(database_url=None, redis_url=None, contract_modules=[]))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def write_openapi(path: Path = OPENAPI_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_openapi())
    return path


if __name__ == "__main__":
    sys.stdout.write(f"wrote {write_openapi()}\n")
