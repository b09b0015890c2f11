"""The dashboard's Jinja2 environment: templates beside this module, autoescaped, a few filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import Response

from gateway.ui.access import CSRF_FIELD, CSRF_HEADER, Viewer

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")


def _when(value: datetime | None) -> str:
    """An instant as the dashboard shows it: UTC, to the second."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


SECURITY_HEADERS = {
    # Pages show tenants' data: keep them out of shared caches and the browser's disk cache.
    "Cache-Control": "no-store",
    # Only our own script, styles and forms; no framing (clickjacking on the cancel buttons).
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
        " form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _static_path(request: Request, path: str) -> str:
    """A dashboard asset's path (`/ui/static/htmx.min.js`), never an absolute URL: `url_for`
    builds those from the `Host` header, which the client chooses, so a forged one (or a cache
    keyed without it) would load our script from another host."""
    root: str = request.scope.get("root_path", "")
    asset: str = request.app.url_path_for("ui-static", path=path)
    return root + asset


templates.env.filters["when"] = _when
templates.env.filters["pretty_json"] = _pretty_json
templates.env.globals["csrf_field"] = CSRF_FIELD
templates.env.globals["csrf_header"] = CSRF_HEADER
templates.env.globals["static_path"] = _static_path


def render(
    request: Request,
    name: str,
    viewer: Viewer | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """A page (or fragment) for `viewer`; every page knows who is signed in and the CSRF token."""
    csrf = None if viewer is None else viewer.session.csrf_token
    context.update(viewer=viewer, csrf_token=csrf)
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response
