"""Errors every route shares: RFC 9457 bodies, body guards, request ids, the status table."""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.problems import STATUS_OF
from shared import errors
from tests.conftest import ClientFactory
from tests.factories import auth
from tests.gateway.problem_checks import assert_problem

SMALL_LIMIT = 1024


def _body_of_size(size: int) -> bytes:
    """A valid echo submission of exactly `size` bytes."""
    frame = json.dumps({"args": {"message": ""}}).encode()
    body = json.dumps({"args": {"message": "x" * (size - len(frame))}}).encode()
    assert len(body) == size
    return body


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


class TestUnknownRoutes:
    @pytest.mark.parametrize("path", ["/nope", "/jobs/x/y/z", "/admin"])
    async def test_unknown_route_is_404_problem(self, client: httpx.AsyncClient, path: str) -> None:
        response = await client.get(path)
        assert_problem(response, 404, "not-found")

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("DELETE", "/jobs", "GET"),
            ("PUT", "/healthz", "GET"),
            ("GET", "/admin/tenants", "POST"),
        ],
    )
    async def test_wrong_method_is_405_problem(
        self, client: httpx.AsyncClient, method: str, path: str, allowed: str
    ) -> None:
        response = await client.request(method, path, json={} if method == "PUT" else None)
        assert_problem(response, 405, "method-not-allowed")
        assert response.headers["allow"] == allowed

    async def test_delete_of_a_job_is_405(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.delete(f"/jobs/{uuid.uuid4()}", headers=auth(token))
        assert_problem(response, 405, "method-not-allowed")


class TestBodyGuards:
    async def test_body_over_the_limit_is_413(self, make_client: ClientFactory, token: str) -> None:
        small = await make_client(max_body_bytes=SMALL_LIMIT)
        response = await small.post(
            "/jobs/echo",
            content=_body_of_size(SMALL_LIMIT + 1),
            headers={**auth(token), "Content-Type": "application/json"},
        )
        body = assert_problem(response, 413, "payload-too-large")
        assert str(SMALL_LIMIT) in body["detail"]
        listed = await small.get("/jobs", headers=auth(token))
        assert listed.json()["items"] == []

    async def test_body_at_the_limit_is_accepted(
        self, make_client: ClientFactory, token: str
    ) -> None:
        small = await make_client(max_body_bytes=SMALL_LIMIT)
        response = await small.post(
            "/jobs/echo",
            content=_body_of_size(SMALL_LIMIT),
            headers={**auth(token), "Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text

    async def test_chunked_body_over_the_limit_is_413(
        self, make_client: ClientFactory, token: str
    ) -> None:
        """Without Content-Length the guard counts what arrives; same answer as above."""
        small = await make_client(max_body_bytes=SMALL_LIMIT)
        response = await small.post(
            "/jobs/echo",
            content=_chunks(_body_of_size(3 * SMALL_LIMIT), 500),
            headers={**auth(token), "Content-Type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        assert_problem(response, 413, "payload-too-large")
        listed = await small.get("/jobs", headers=auth(token))
        assert listed.json()["items"] == []

    async def test_chunked_body_under_the_limit_is_accepted(
        self, make_client: ClientFactory, token: str
    ) -> None:
        small = await make_client(max_body_bytes=SMALL_LIMIT)
        response = await small.post(
            "/jobs/echo",
            content=_chunks(_body_of_size(SMALL_LIMIT - 24), 100),
            headers={**auth(token), "Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text

    @pytest.mark.parametrize(
        "content_type",
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None],
    )
    async def test_non_json_body_is_415(
        self, client: httpx.AsyncClient, token: str, content_type: str | None
    ) -> None:
        headers = auth(token)
        if content_type is not None:
            headers["Content-Type"] = content_type
        response = await client.post(
            "/jobs/echo", content=b'{"args": {"message": "hi"}}', headers=headers
        )
        assert_problem(response, 415, "unsupported-media-type")

    @pytest.mark.parametrize(
        "content_type", ["application/json; charset=utf-8", "application/merge-patch+json"]
    )
    async def test_json_media_types_are_accepted(
        self, client: httpx.AsyncClient, token: str, content_type: str
    ) -> None:
        response = await client.post(
            "/jobs/echo",
            content=b'{"args": {"message": "hi"}}',
            headers={**auth(token), "Content-Type": content_type},
        )
        assert response.status_code == 202, response.text

    @pytest.mark.parametrize("content", [b'{"args": ', b"{'args': {}}", b"\xff\xfe"])
    async def test_malformed_json_is_400(
        self, client: httpx.AsyncClient, token: str, content: bytes
    ) -> None:
        response = await client.post(
            "/jobs/echo",
            content=content,
            headers={**auth(token), "Content-Type": "application/json"},
        )
        assert_problem(response, 400, "malformed-json")

    async def test_empty_json_body_is_422(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.post(
            "/jobs/echo", headers={**auth(token), "Content-Type": "application/json"}
        )
        body = assert_problem(response, 422, "validation-error")
        assert [issue["loc"] for issue in body["errors"]] == [["body"]]


class TestRequestIds:
    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", "/healthz", 200),
            ("GET", "/jobs", 401),
            ("GET", "/nope", 404),
            ("DELETE", "/jobs", 405),
            ("POST", "/jobs/echo", 415),
            ("GET", "/jobs/not-a-uuid", 401),
        ],
    )
    async def test_every_response_has_a_request_id(
        self, client: httpx.AsyncClient, method: str, path: str, status: int
    ) -> None:
        response = await client.request(method, path, content=b"x" if method == "POST" else None)
        assert response.status_code == status, response.text
        assert len(response.headers["x-request-id"]) >= 16

    async def test_request_ids_differ(self, client: httpx.AsyncClient) -> None:
        ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(3)}
        assert len(ids) == 3

    async def test_413_from_the_body_guard_has_a_request_id(
        self, make_client: ClientFactory
    ) -> None:
        small = await make_client(max_body_bytes=SMALL_LIMIT)
        response = await small.post(
            "/jobs/echo",
            content=_body_of_size(SMALL_LIMIT + 1),
            headers={"Content-Type": "application/json", "X-Request-ID": "big-1"},
        )
        assert response.status_code == 413
        assert response.headers["x-request-id"] == "big-1"

    @pytest.mark.parametrize(
        "sent", ["abc-123", "req.42:7", "0193a5b2-7c1d-7e4f-8a9b-0c1d2e3f4a5b", "a" * 128]
    )
    async def test_a_sane_request_id_is_echoed(self, client: httpx.AsyncClient, sent: str) -> None:
        response = await client.get("/jobs", headers={"X-Request-ID": sent})
        assert response.status_code == 401
        assert response.headers["x-request-id"] == sent

    @pytest.mark.parametrize(
        "sent", ["has spaces", "a" * 129, "<script>", "new\\nline", "semi;colon"]
    )
    async def test_an_odd_request_id_is_replaced(
        self, client: httpx.AsyncClient, sent: str
    ) -> None:
        response = await client.get("/healthz", headers={"X-Request-ID": sent})
        assert response.status_code == 200
        replaced = response.headers["x-request-id"]
        assert replaced != sent
        assert replaced.isalnum()


def _jobgate_errors() -> list[type[errors.JobgateError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.JobgateError)
    ]


class TestStatusTable:
    def test_every_jobgate_error_has_a_status(self) -> None:
        classes = _jobgate_errors()
        assert len(classes) > 20  # the tree in shared/errors.py, not an empty import
        missing = [cls.__name__ for cls in classes if cls not in STATUS_OF]
        assert missing == []

    def test_every_subclass_anywhere_has_a_status(self) -> None:
        """Subclasses declared outside shared/errors.py would slip past the test above."""
        pending: list[type[errors.JobgateError]] = [errors.JobgateError]
        seen: set[type[errors.JobgateError]] = set()
        while pending:
            cls = pending.pop()
            seen.add(cls)
            pending += cls.__subclasses__()
        assert [cls.__name__ for cls in seen if cls not in STATUS_OF] == []

    def test_codes_are_unique_slugs(self) -> None:
        codes = [cls.code for cls in _jobgate_errors()]
        assert len(codes) == len(set(codes))
        assert all(code.replace("-", "").isalpha() and code.islower() for code in codes)

    @pytest.mark.parametrize(
        ("cls", "status"),
        [
            (errors.JobNotFound, 404),
            (errors.Unauthenticated, 401),
            (errors.Forbidden, 403),
            (errors.IdempotencyConflict, 409),
            (errors.PayloadTooLarge, 413),
            (errors.UnsupportedMediaType, 415),
            (errors.InvalidCursor, 422),
            (errors.QueueUnavailable, 503),
            (errors.DatabaseUnavailable, 503),
        ],
    )
    def test_status_matches_the_contract(self, cls: type[errors.JobgateError], status: int) -> None:
        assert STATUS_OF[cls] == status
