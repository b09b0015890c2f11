"""No API key, operator token, webhook secret or job argument reaches a log line.

Everything a deployment would see is captured: the standard library's records at DEBUG
(caplog) and the text the configured structlog renderer writes (console and JSON), while a
tenant is created, jobs are submitted, run, fail, call a webhook, a key is refused and a
request crashes.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import respx
import structlog
from arq.worker import Worker
from fastapi import Request

from gateway.app import create_app
from gateway.auth import SubmitAuth
from shared.settings import Settings, WebhookSettings
from shared.tenants.apikeys import parse_token
from tests.factories import auth, submit, wait_for_status
from tests.gateway.problem_checks import assert_problem
from tests.polling import poll_job

SECRET_ARG = "arg-value-5d41402abc4b2a76-never-logged"
HOOK_URL = "https://hooks.example.test/jobgate"


@pytest.fixture(params=[False, True], ids=["console", "json"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """DEBUG everywhere, both renderers, webhooks sent within milliseconds."""
    fast = WebhookSettings(
        timeout_seconds=2, backoff_base_seconds=0.01, backoff_max_seconds=0.05,
        poll_interval_seconds=0.02, max_attempts=3,
        allowed_hosts=["hooks.example.test"],  # respx answers for it; it resolves nowhere
    )  # fmt: skip
    return settings.model_copy(
        update={"log_level": "DEBUG", "log_json": request.param, "webhooks": fast}
    )


async def _explode(principal: SubmitAuth, request: Request) -> None:
    """A handler that crashes with a key and job args in its locals, as a bug might."""
    api_key = request.headers["authorization"]
    args = {"message": SECRET_ARG}
    raise RuntimeError(f"bug while handling {len(api_key)}-char key and {len(args)} args")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway, plus one route that crashes (the last-resort 500 logs a traceback)."""
    app = create_app(settings)
    app.add_api_route("/jobs-test/explode", _explode, methods=["POST"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://jobgate.test") as http,
    ):
        yield http


@pytest.fixture
def receiver() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        router.post(HOOK_URL).respond(204)
        yield router


@dataclass
class Logs:
    records: pytest.LogCaptureFixture
    rendered: io.StringIO

    def text(self) -> str:
        """Every captured record as stored and as rendered, tracebacks included."""
        parts = [self.rendered.getvalue()]
        for record in self.records.records:
            parts += [str(record.msg), record.getMessage(), repr(record.args)]
            if record.exc_info:
                parts.append(logging.Formatter().formatException(record.exc_info))
        return "\n".join(parts)


@pytest.fixture
def logs(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> Iterator[Logs]:
    """Capture from here on; set up after the app, whose `configure_logging` resets root."""
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
    caplog.set_level(logging.DEBUG)
    yield Logs(records=caplog, rendered=rendered)
    root.removeHandler(handler)


async def test_no_secret_or_job_arg_is_ever_logged(
    client: httpx.AsyncClient,
    settings: Settings,
    receiver: respx.MockRouter,
    worker: Worker,
    logs: Logs,
) -> None:
    assert settings.admin_token is not None
    operator = auth(settings.admin_token.get_secret_value())
    created = await client.post("/admin/tenants", json={"name": "acme"}, headers=operator)
    assert created.status_code == 201, created.text
    api_key = created.json()["api_key"]
    first_secret = created.json()["webhook_secret"]
    rotated = await client.post("/admin/tenants/acme/webhook-secret", headers=operator)
    webhook_secret = rotated.json()["webhook_secret"]
    second = await client.post(
        "/admin/tenants/acme/keys", json={"scopes": ["jobs:read"]}, headers=operator
    )
    second_key = second.json()["api_key"]

    hooked = await submit(
        client, api_key, "echo", {"message": SECRET_ARG}, {"webhook_url": HOOK_URL}
    )
    failing = await submit(client, api_key, "flaky", {"fail_times": 1, "permanent": True})
    await wait_for_status(client, second_key, failing["id"], "failed")
    await poll_job(
        client,
        api_key,
        hooked["id"],
        lambda job: (
            bool(job["webhook"]["deliveries"])
            and job["webhook"]["deliveries"][0]["status"] == "delivered"
        ),
        timeout=10,
    )
    replay = await client.post(
        "/jobs/echo",
        json={"args": {"message": SECRET_ARG, "repeat": 101}},
        headers=auth(api_key),
    )
    assert replay.status_code == 422
    wrong_key = api_key[:-6] + "AAAAAA"
    refused = await client.get("/jobs", headers=auth(wrong_key))
    assert_problem(refused, 401, "unauthenticated")
    refused = await client.post("/admin/tenants", json={"name": "x"}, headers=auth(wrong_key))
    assert_problem(refused, 401, "unauthenticated")
    crashed = await client.post("/jobs-test/explode", headers=auth(api_key))
    assert_problem(crashed, 500, "internal-error")

    text = logs.text()
    # The capture works: each step left its trace.
    for event in ("job.succeeded", "job.failed", "webhook.attempted", "request.crashed"):
        assert event in text, event
    assert "Traceback" in text and "RuntimeError" in text
    secrets = {
        "api key": api_key,
        # The whole secret: a url-safe secret may itself hold "_", so rsplit could return a
        # few characters that turn up in any log by chance.
        "api key secret": _secret_of(api_key),
        "second key": second_key,
        "wrong key": _secret_of(wrong_key),
        "operator token": settings.admin_token.get_secret_value(),
        "webhook secret": webhook_secret,
        "first webhook secret": first_secret,
        "job arg": SECRET_ARG,
    }
    leaked = [name for name, value in secrets.items() if value in text]
    assert leaked == [], f"in the logs: {leaked}"


def _secret_of(token: str) -> str:
    parsed = parse_token(token)
    assert parsed is not None, "not shaped like an API key"
    return parsed[1]
