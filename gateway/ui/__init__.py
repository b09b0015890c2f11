"""The web dashboard at `/ui`: server-rendered pages, htmx for live parts, no build step.

`install_ui(app)` adds its routes, its static files and the redirect to the sign-in page.
Pages are Jinja2 templates (`templates/`); `static/` holds the stylesheet and a vendored
htmx (see `static/VENDORED.md`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from gateway.ui import actions, pages, queue_actions, signin, submit_form
from gateway.ui.access import SignInRequired
from gateway.ui.templating import STATIC_DIR

PREFIX = "/ui"


async def _to_sign_in(request: Request, exc: Exception) -> Response:
    if request.headers.get("hx-request") == "true":
        # An htmx poll would swap the sign-in page into a table: make the browser navigate.
        return Response(status_code=204, headers={"HX-Redirect": f"{PREFIX}/login"})
    return RedirectResponse(f"{PREFIX}/login", status_code=303)


def install_ui(app: FastAPI) -> None:
    """Serve the dashboard from `app` (kept out of the OpenAPI document: it is not the API)."""
    for module in (signin, pages, actions, queue_actions, submit_form):
        app.include_router(module.router, prefix=PREFIX, include_in_schema=False)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.add_exception_handler(SignInRequired, _to_sign_in)
