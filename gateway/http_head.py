"""Bounds on a request's head (request line and header fields), and the protocol that keeps them.

httptools, which uvicorn serves HTTP/1.1 with when it is installed, has no limit of its own: it
collected 20 MB of header fields, or 10 000 of them, before the app could look at one. The app
refuses such heads whatever serves it (`HeadGuardMiddleware`); the served process also runs
`bounded_http_protocol`, which counts the head as it arrives and answers 431 once it is over,
so memory held per connection stays near the limit.

Defaults (settings `max_header_count`, `max_header_bytes`): 100 fields, as Apache's
`LimitRequestFields`; 16 KiB of head, as h11's (uvicorn's other parser) and Node.js's limit, and
within nginx's `large_client_header_buffers` (4 x 8 KiB). Browsers and HTTP clients send a
dozen fields and well under 8 KiB; a proxy in front may add a few.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.problems import PROBLEM_JSON, problem_document
from shared.errors import HeadersTooLarge
from shared.settings import Settings

log = structlog.get_logger("jobgate.gateway")

FIELD_OVERHEAD_BYTES = 4
"""`: ` and CRLF around each field's name and value."""
_STATUS_LINE = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
_MAX_INSTANCE_CHARS = 128


@dataclass(frozen=True)
class HeadLimits:
    """How many header fields a request may carry, and how many bytes its head may take."""

    max_header_count: int
    max_header_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> HeadLimits:
        return cls(settings.max_header_count, settings.max_header_bytes)

    def refusal(self, *, field_count: int, head_bytes: int) -> str | None:
        """Why a head this large is refused (the 431's detail), or None."""
        if field_count > self.max_header_count:
            return f"A request may carry at most {self.max_header_count} header fields."
        if head_bytes > self.max_header_bytes:
            return f"The request line and header fields exceed {self.max_header_bytes} bytes."
        return None

    def refusal_of(self, target_bytes: int, fields: Sequence[tuple[bytes, bytes]]) -> str | None:
        """Why a parsed head (the request target's length, its fields) is refused, or None."""
        size = target_bytes + sum(len(name) + len(value) for name, value in fields)
        return self.refusal(
            field_count=len(fields), head_bytes=size + FIELD_OVERHEAD_BYTES * len(fields)
        )


class _HeadRefused(Exception):
    """Raised in a parser callback: httptools stops parsing and uvicorn answers (a 431 here)."""


class _BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, counting each request's head while it arrives."""

    limits: ClassVar[HeadLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # reading a head, or waiting for the next one
        self._message_ended = False  # a request ended within the data being parsed
        self._field_count = 0
        self._parsed_bytes = 0  # the head's URL and complete fields
        self._received_bytes = 0  # the head as received, a field still being collected too
        self._refusal: str | None = None

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        self._message_ended = False
        super().data_received(data)
        # httptools hands a field over only once it is complete: count what is still collecting.
        # When a request ended within `data`, how much of the rest is the next head is unknown:
        # it is left out, so the count errs low by at most one read, never refusing wrongly.
        if self._refusal is not None or not self._in_head or self._message_ended:
            return
        self._received_bytes += len(data)
        refusal = self.limits.refusal(field_count=0, head_bytes=self._received_bytes)
        if refusal is not None:
            self._refuse(refusal)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._field_count = self._parsed_bytes = self._received_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count(0, len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(1, len(name) + len(value) + FIELD_OVERHEAD_BYTES)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = self._message_ended = True

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with a 400; a head refused by `_count` is a 431.
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._answer_431(self._refusal)

    def _count(self, fields: int, size: int) -> None:
        self._field_count += fields
        self._parsed_bytes += size
        refusal = self.limits.refusal(field_count=self._field_count, head_bytes=self._parsed_bytes)
        if refusal is not None:
            self._refusal = refusal
            raise _HeadRefused(refusal)

    def _refuse(self, refusal: str) -> None:
        self._refusal = refusal
        self._answer_431(refusal)

    def _answer_431(self, detail: str) -> None:
        log.warning("request.head_refused", detail=detail)
        url: bytes = getattr(self, "url", b"")  # set once a request begins
        path = url.split(b"?", 1)[0][:_MAX_INSTANCE_CHARS].decode("ascii", "replace")
        document = problem_document(
            status=431, code=HeadersTooLarge.code, detail=detail, instance=path
        )
        body = json.dumps(document).encode()
        head = [_STATUS_LINE]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(f"content-type: {PROBLEM_JSON}\r\n".encode())
        head.append(f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode())
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def bounded_http_protocol(limits: HeadLimits) -> type[asyncio.Protocol]:
    """The HTTP/1.1 protocol class to serve the gateway with (uvicorn's `--http`)."""
    return type("BoundedHttpToolsProtocol", (_BoundedHttpToolsProtocol,), {"limits": limits})
