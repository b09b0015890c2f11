"""Pure ASGI middleware (no per-request task overhead): request ids, head and body guards."""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http_head import HeadLimits
from gateway.problems import problem_response
from shared.errors import HeadersTooLarge, PayloadTooLarge, UnsupportedMediaType

REQUEST_ID_HEADER = "x-request-id"
# ASCII only, and fullmatch: `$` would let a trailing newline through into the echoed header.
_SAFE_REQUEST_ID = re.compile(r"[\w.:\-]{1,128}", re.ASCII)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class RequestIdMiddleware:
    """Echo a sane caller-sent `X-Request-ID` or make one; bind it to every log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = sent if _SAFE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        # Tokens, not `bound_contextvars`: that one copies the whole context to save and
        # restore, a measurable share of a submit's CPU; resetting the token restores the same.
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)


class BodyGuardMiddleware:
    """Refuse bodies over the limit (413) and bodies that are not JSON (415), before parsing.

    Under `form_path_prefix` (the dashboard's HTML forms) URL-encoded form bodies pass too.
    """

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, form_path_prefix: str | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.form_path_prefix = form_path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self._precheck(headers, scope["path"])
        if problem is not None:
            status, error = problem
            response = problem_response(
                Request(scope), status=status, code=error.code, detail=error.message
            )
            await response(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _precheck(
        self, headers: Headers, path: str
    ) -> tuple[int, PayloadTooLarge | UnsupportedMediaType] | None:
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return 413, PayloadTooLarge(f"The body exceeds {self.max_body_bytes} bytes.")
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        is_json = media_type == "application/json" or media_type.endswith("+json")
        is_form = (
            self.form_path_prefix is not None
            and path.startswith(self.form_path_prefix)
            and media_type == "application/x-www-form-urlencoded"
        )
        if has_body and not (is_json or is_form):
            return 415, UnsupportedMediaType()
        return None

    def _counting(self, receive: Receive) -> Receive:
        # Content-Length can be absent (chunked) or lie: count what actually arrives.
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    detail = f"The body exceeds {self.max_body_bytes} bytes."
                    raise HTTPException(413, detail)
            return message

        return counted


class HeadGuardMiddleware:
    """Refuse requests with too many header fields or too large a head (431), whatever server
    runs the app; the served protocol (`gateway.http_head`) refuses them before buffering."""

    def __init__(self, app: ASGIApp, *, limits: HeadLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target_bytes = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
        refusal = self.limits.refusal_of(target_bytes, scope["headers"])
        if refusal is None:
            await self.app(scope, receive, send)
            return
        error = HeadersTooLarge(refusal)
        response = problem_response(
            Request(scope), status=431, code=error.code, detail=error.message
        )
        await response(scope, receive, send)
