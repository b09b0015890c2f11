"""Dashboard sign-in over the ASGI client: cookie flags, CSRF, revocation, no secret anywhere."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.app import create_app
from shared.keys import UI_SESSION_PREFIX
from shared.settings import Settings
from shared.tenants import tenancy
from shared.tenants.apikeys import Scope, parse_token
from tests.conftest import ADMIN_TOKEN
from tests.factories import make_api_key, submit
from tests.ui.conftest import csrf_token, post_login, sign_in


@pytest.fixture
async def https_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway as reached over HTTPS (a TLS-terminating proxy in front, say)."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="https://jobgate.test") as http,
    ):
        yield http


def _cookie_attributes(response: httpx.Response) -> set[str]:
    (header,) = response.headers.get_list("set-cookie")
    return {part.strip().lower() for part in header.split(";")[1:]}


class TestSignIn:
    async def test_signed_out_pages_redirect_to_the_login(self, client: httpx.AsyncClient) -> None:
        for page in ("/ui", "/ui/jobs", "/ui/dead-letters", "/ui/submit/echo"):
            response = await client.get(page)
            assert response.status_code == 303, page
            assert response.headers["location"] == "/ui/login"
        polled = await client.get("/ui/jobs/rows", headers={"HX-Request": "true"})
        assert polled.status_code == 204
        assert polled.headers["hx-redirect"] == "/ui/login"

    async def test_wrong_key_is_refused_without_echoing_it(
        self, client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        wrong = acme[1][:-4] + "AAAA"
        response = await post_login(client, wrong)
        assert response.status_code == 401
        assert "unknown or revoked" in response.text
        assert wrong not in response.text
        assert "set-cookie" not in response.headers

    async def test_key_without_read_scope_is_refused(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession],
        acme: tuple[str, str],
    ) -> None:  # fmt: skip
        submit_only = await make_api_key(sessionmaker, acme[0], Scope.SUBMIT)
        response = await post_login(client, submit_only)
        assert response.status_code == 401
        assert "jobs:read" in response.text

    async def test_cookie_is_opaque_httponly_strict_and_path_scoped(
        self, client: httpx.AsyncClient, redis: Redis, acme: tuple[str, str]
    ) -> None:
        response = await post_login(client, acme[1])
        assert response.status_code == 303
        attributes = _cookie_attributes(response)
        assert {"httponly", "samesite=strict", "path=/ui"} <= attributes
        assert "secure" not in attributes  # plain HTTP: a Secure cookie would never come back
        cookie = response.cookies["jobgate_ui"]
        key_id, secret = parse_token(acme[1]) or (None, "")
        assert secret not in cookie and str(key_id) not in cookie and key_id.hex not in cookie  # type: ignore[union-attr]
        # Redis keeps neither the key, nor its secret, nor the cookie itself.
        (stored_key,) = [key async for key in redis.scan_iter(f"{UI_SESSION_PREFIX}*")]
        stored = (await redis.get(stored_key)) or b""
        assert cookie.encode() not in stored_key + stored
        assert secret.encode() not in stored
        assert 0 < await redis.ttl(stored_key) <= 8 * 3600

    async def test_cookie_is_secure_over_https(
        self, https_client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        response = await post_login(https_client, acme[1])
        assert response.status_code == 303
        assert "secure" in _cookie_attributes(response)

    async def test_sign_out_ends_the_session(
        self, client: httpx.AsyncClient, redis: Redis, acme: tuple[str, str]
    ) -> None:
        await sign_in(client, acme[1])
        cookie = client.cookies["jobgate_ui"]
        token = await csrf_token(client)
        response = await client.post("/ui/logout", data={"csrf_token": token})
        assert response.status_code == 303
        assert [key async for key in redis.scan_iter(f"{UI_SESSION_PREFIX}*")] == []
        client.cookies.set("jobgate_ui", cookie, path="/ui")  # replaying it opens nothing
        assert (await client.get("/ui")).headers["location"] == "/ui/login"

    async def test_revoked_key_ends_its_sessions_on_the_next_request(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis, acme: tuple[str, str],
    ) -> None:  # fmt: skip
        await sign_in(client, acme[1])
        assert (await client.get("/ui")).status_code == 200
        key_id, _ = parse_token(acme[1]) or (None, "")
        assert key_id is not None
        async with sessionmaker() as session:
            await tenancy.revoke_api_key(session, key_id=key_id)
        response = await client.get("/ui/jobs")
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/login"
        assert [key async for key in redis.scan_iter(f"{UI_SESSION_PREFIX}*")] == []

    async def test_operator_session_ends_when_the_token_changes(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        await sign_in(client, ADMIN_TOKEN)
        assert "Operator (all tenants)" in (await client.get("/ui")).text
        new_token = SecretStr("another-token-0123456789abcdef")
        changed = settings.model_copy(update={"admin_token": new_token})
        app = create_app(changed)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://jobgate.test") as other,
        ):
            other.cookies = client.cookies
            assert (await other.get("/ui")).headers["location"] == "/ui/login"


class TestCsrf:
    async def test_posts_need_the_session_csrf_token(
        self, client: httpx.AsyncClient, arq_redis: object, acme: tuple[str, str]
    ) -> None:
        job = await submit(client, acme[1], "echo", {"message": "hi"}, {"delay_seconds": 600})
        await sign_in(client, acme[1])
        cancel = f"/ui/jobs/{job['id']}/cancel"
        assert (await client.post(cancel)).status_code == 403
        assert (await client.post(cancel, data={"csrf_token": "forged"})).status_code == 403
        token = await csrf_token(client)
        cross_site = await client.post(
            cancel, data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
        )
        assert cross_site.status_code == 403
        proxied = {"Origin": "https://jobs.example.com", "X-Forwarded-Host": "jobs.example.com"}
        response = await client.post(cancel, data={"csrf_token": token}, headers=proxied)
        assert response.status_code == 303
        assert response.headers["location"] == f"/ui/jobs/{job['id']}?notice=cancelled"
        by_header = await client.post(
            f"/ui/jobs/{job['id']}/retry", headers={"X-CSRF-Token": token}
        )
        assert by_header.status_code == 303

    async def test_login_from_another_site_is_refused(
        self, client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        response = await client.post(
            "/ui/login", data={"token": acme[1]}, headers={"Origin": "https://evil.example"}
        )
        assert response.status_code == 403
        assert "set-cookie" not in response.headers

    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="no-origin"),
            pytest.param({"Origin": "null"}, id="null-origin"),
            pytest.param({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, id="null-same"),
        ],
    )
    async def test_login_needs_a_same_origin_origin(
        self, client: httpx.AsyncClient, acme: tuple[str, str], headers: dict[str, str]
    ) -> None:
        """Older browsers send no `Sec-Fetch-Site`: without `Origin` a page elsewhere could
        sign the visitor in as someone else (login CSRF)."""
        response = await client.post("/ui/login", data={"token": acme[1]}, headers=headers)
        assert response.status_code == 403
        assert "set-cookie" not in response.headers
        assert (await post_login(client, acme[1])).status_code == 303


class TestSecrecy:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"log_level": "DEBUG"})

    async def test_no_key_or_token_in_logs_urls_or_pages(
        self, client: httpx.AsyncClient, acme: tuple[str, str],
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
    ) -> None:  # fmt: skip
        caplog.set_level(logging.DEBUG)
        secrets = [acme[1], ADMIN_TOKEN]
        seen: list[str] = []
        for secret in secrets:
            client.cookies.clear()
            login = await post_login(client, secret)
            seen += [login.headers["location"], login.headers["set-cookie"]]
            for page in ("/ui", "/ui/jobs", "/ui/dead-letters", "/ui/submit/echo"):
                response = await client.get(page)
                assert response.status_code == 200, page
                seen += [str(response.url), response.text]
            await post_login(client, secret + "x")  # a failed try too
        out, err = capfd.readouterr()
        for secret in secrets:
            for text in (caplog.text, out, err, *seen):
                assert secret not in text


class TestHostHeader:
    async def test_pages_link_their_assets_by_path_whatever_the_host_header(
        self, client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        """A forged `Host` (or one a shared cache ignores) must not move our script elsewhere."""
        forged = {"Host": "evil.example"}
        signed_out = await client.get("/ui/login", headers=forged)
        await sign_in(client, acme[1])
        signed_in = await client.get("/ui/jobs", headers=forged)
        for page in (signed_out, signed_in):
            assert page.status_code == 200
            assert "evil.example" not in page.text
            assert '<script src="/ui/static/htmx.min.js" defer>' in page.text
            assert 'href="/ui/static/dashboard.css"' in page.text
        asset = await client.get("/ui/static/htmx.min.js")
        assert asset.status_code == 200
