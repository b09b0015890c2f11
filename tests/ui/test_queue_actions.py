"""The overview's pause and resume buttons: the operator's only, CSRF- and origin-checked."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN
from tests.factories import auth
from tests.ui.conftest import csrf_token, sign_in


async def _queues(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/admin/queues", headers=auth(ADMIN_TOKEN))
    return {queue["queue"]: queue for queue in response.json()}


def _state_cell(page: str, queue: str) -> str:
    return page.split(f'<tr data-queue="{queue}">')[1].split("</tr>")[0]


async def test_the_operator_pauses_and_resumes_a_queue(client: httpx.AsyncClient) -> None:
    await sign_in(client, ADMIN_TOKEN)
    page = (await client.get("/ui")).text
    assert 'action="/ui/queues/email/pause"' in _state_cell(page, "email")
    token = await csrf_token(client)

    paused = await client.post("/ui/queues/email/pause", data={"csrf_token": token})
    assert paused.status_code == 303
    assert paused.headers["location"] == "/ui?notice=queue-paused"
    assert (await _queues(client))["email"]["paused_by"] == "dashboard"
    page = (await client.get(paused.headers["location"])).text
    assert "Queue paused" in page
    cell = _state_cell(page, "email")
    assert "paused" in cell and 'action="/ui/queues/email/resume"' in cell

    resumed = await client.post("/ui/queues/email/resume", data={"csrf_token": token})
    assert resumed.headers["location"] == "/ui?notice=queue-resumed"
    assert (await _queues(client))["email"]["paused"] is False


async def test_an_unknown_queue_changes_nothing(client: httpx.AsyncClient) -> None:
    await sign_in(client, ADMIN_TOKEN)
    token = await csrf_token(client)
    response = await client.post("/ui/queues/nowhere/pause", data={"csrf_token": token})
    assert response.headers["location"] == "/ui?notice=unknown-queue"


async def test_a_tenant_sees_no_buttons_and_cannot_pause(
    client: httpx.AsyncClient, acme: tuple[str, str]
) -> None:
    await sign_in(client, acme[1])
    page = (await client.get("/ui")).text
    assert "/ui/queues/" not in page
    token = await csrf_token(client)
    response = await client.post("/ui/queues/default/pause", data={"csrf_token": token})
    assert response.headers["location"] == "/ui?notice=forbidden"
    assert (await _queues(client))["default"]["paused"] is False


async def test_a_forged_or_cross_site_form_is_refused(client: httpx.AsyncClient) -> None:
    await sign_in(client, ADMIN_TOKEN)
    token = await csrf_token(client)
    assert (await client.post("/ui/queues/default/pause")).status_code == 403
    forged = await client.post("/ui/queues/default/pause", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    cross_site = await client.post(
        "/ui/queues/default/pause",
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403
    assert (await _queues(client))["default"]["paused"] is False
