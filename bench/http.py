"""A minimal HTTP/1.1 keep-alive client over raw asyncio streams.

The load generator and the latency probes use it for jobgate and the bare endpoint alike. It
does the least a client can (pre-encoded requests, `Content-Length` or chunked bodies), so the
servers, not the client, set the pace.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True)
class Response:
    """Status and body of one answer."""

    status: int
    body: bytes


def encode_request(
    method: str, path: str, *, host: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    """The bytes of one keep-alive request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _header(head: bytes, name: bytes) -> bytes | None:
    """A header's value from a raw response head (`name` lower-case, with its colon)."""
    lower = head.lower()
    start = lower.find(b"\r\n" + name)
    if start < 0:
        return None
    start += 2 + len(name)
    end = lower.find(_CRLF, start)
    return head[start:end].strip()


class Connection:
    """One keep-alive connection; reopens itself when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def request(self, raw: bytes) -> Response:
        """Send one pre-encoded request and read its whole answer."""
        reader, writer = await self._open()
        writer.write(raw)
        head = await reader.readuntil(_HEAD_END)
        status = int(head[9:12])
        length = _header(head, b"content-length:")
        if length is not None:
            body = await reader.readexactly(int(length))
        elif (_header(head, b"transfer-encoding:") or b"").lower() == b"chunked":
            body = await self._read_chunks(reader)
        else:
            body = b""
        if (_header(head, b"connection:") or b"").lower() == b"close":
            await self.close()
        return Response(status=status, body=body)

    @staticmethod
    async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(_CRLF)).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(_CRLF)
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def close(self) -> None:
        """Close the socket (the next request opens a new one)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
