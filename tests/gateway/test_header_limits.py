"""Request heads are bounded: too many header fields, or too many bytes of them, get a 431.

The probe: under uvicorn with httptools, 20 MB of headers and 10 000 header fields were
accepted (httptools has no limit, and it collects the whole head before the app sees it).
The app refuses them under any server; the served protocol refuses them while they arrive.
"""

from __future__ import annotations

import itertools
import select
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest

from shared.settings import Settings
from tests.conftest import ClientFactory
from tests.gateway.problem_checks import assert_problem
from tests.live_gateway import LiveGateway

TOO_LARGE = "request-header-fields-too-large"
ANSWER_TIMEOUT_SECONDS = 10.0


def _many(count: int) -> dict[str, str]:
    return {f"x-probe-{index}": "v" for index in range(count)}


class TestInTheApp:
    """The middleware: a limit that holds whatever server runs the app."""

    async def test_too_many_header_fields_are_431(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers=_many(150))
        assert_problem(response, 431, TOO_LARGE)

    async def test_too_many_header_bytes_are_431(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"x-probe": "v" * 20_000})
        assert_problem(response, 431, TOO_LARGE)

    async def test_a_long_query_counts_too(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", params={"q": "v" * 20_000})
        assert_problem(response, 431, TOO_LARGE)

    async def test_an_ordinary_head_passes(self, client: httpx.AsyncClient) -> None:
        headers = _many(60) | {"x-probe": "v" * 8_000}
        response = await client.get("/healthz", headers=headers)
        assert response.status_code == 200, response.text

    async def test_the_limits_are_settings(self, make_client: ClientFactory) -> None:
        strict = await make_client(max_header_count=10, max_header_bytes=2048)
        assert_problem(await strict.get("/healthz", headers=_many(11)), 431, TOO_LARGE)
        response = await strict.get("/healthz", headers={"x-probe": "v" * 3_000})
        assert_problem(response, 431, TOO_LARGE)
        assert (await strict.get("/healthz", headers=_many(3))).status_code == 200


@pytest.fixture
def served(settings: Settings) -> Iterator[LiveGateway]:
    """The gateway served over a real socket, by the protocol the shipped command uses."""
    with LiveGateway(settings) as gateway:
        yield gateway


def _connect(gateway: LiveGateway) -> socket.socket:
    address = urlparse(gateway.url)
    assert address.hostname is not None and address.port is not None
    return socket.create_connection((address.hostname, address.port), timeout=5)


def _send_until_answered(connection: socket.socket, pieces: Iterator[bytes]) -> None:
    """Send pieces of a head until the server answers (or closes); never block on a full pipe."""
    for piece in pieces:
        readable, _, _ = select.select([connection], [], [], 0)
        if readable:
            return
        try:
            connection.sendall(piece)
        except OSError:  # refused and closed, or (a server that never answers) a full pipe
            return


def _answer(connection: socket.socket) -> bytes:
    """What the server sent, until it closed the connection or the deadline passed."""
    received = b""
    deadline = time.monotonic() + ANSWER_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        readable, _, _ = select.select([connection], [], [], 0.1)
        if not readable:
            if received:
                break
            continue
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received


def _status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


def _head_pieces(*, lines: Iterator[bytes]) -> Iterator[bytes]:
    yield b"GET /healthz HTTP/1.1\r\nHost: jobgate.test\r\n"
    yield from lines


class TestServed:
    """The served process: refuses a head while it arrives, and keeps serving."""

    def test_a_huge_unfinished_header_is_refused_as_it_arrives(self, served: LiveGateway) -> None:
        # 20 MB in one field, never finished: only a server counting as bytes arrive answers.
        value = (b"v" * 65536 for _ in range(320))
        with _connect(served) as connection:
            _send_until_answered(connection, _head_pieces(lines=iter([b"x-probe: ", *value])))
            answer = _answer(connection)
        assert _status_line(answer) == b"HTTP/1.1 431 Request Header Fields Too Large", answer[:200]
        assert b"application/problem+json" in answer

    def test_ten_thousand_header_fields_are_refused(self, served: LiveGateway) -> None:
        fields = (f"x-probe-{index}: v\r\n".encode() for index in range(10_000))
        with _connect(served) as connection:
            _send_until_answered(connection, _head_pieces(lines=itertools.chain(fields, [b"\r\n"])))
            answer = _answer(connection)
        assert _status_line(answer) == b"HTTP/1.1 431 Request Header Fields Too Large", answer[:200]

    def test_150_small_fields_in_one_piece_are_refused(self, served: LiveGateway) -> None:
        fields = b"".join(f"x-probe-{index}: v\r\n".encode() for index in range(150))
        with _connect(served) as connection:
            _send_until_answered(connection, _head_pieces(lines=iter([fields, b"\r\n"])))
            answer = _answer(connection)
        assert _status_line(answer) == b"HTTP/1.1 431 Request Header Fields Too Large", answer[:200]

    def test_heads_are_counted_per_request_on_a_kept_alive_connection(
        self, served: LiveGateway
    ) -> None:
        # Each head is 9 KB: counted over the connection rather than per request, the second
        # would be refused. The bodies between them are not part of any head.
        headers = _many(40) | {"x-probe": "v" * 9_000, "content-type": "application/json"}
        with httpx.Client(base_url=served.url, headers=headers, timeout=10) as caller:
            for _ in range(5):
                response = caller.post("/jobs/echo", content=b"[" + b"0," * 100_000 + b"0]")
                assert_problem(response, 401, "unauthenticated")
                healthy = caller.get("/healthz")
                assert healthy.status_code == 200, healthy.text
            assert caller.get("/healthz").status_code == 200

    def test_the_gateway_keeps_serving(self, served: LiveGateway) -> None:
        for _ in range(3):
            with _connect(served) as connection:
                lines = iter([b"x-probe: ", b"v" * 65536, b"v" * 65536])
                _send_until_answered(connection, _head_pieces(lines=lines))
                _answer(connection)
        headers = _many(60) | {"x-probe": "v" * 8_000}
        response = httpx.get(f"{served.url}/healthz", headers=headers, timeout=5)
        assert response.status_code == 200, response.text
