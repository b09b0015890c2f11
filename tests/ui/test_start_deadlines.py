"""Start deadlines on the dashboard: the deadline on a job's page, expired jobs filtered, badged,
re-run and charted (not dead letters), and a deadline from the submit form."""

from __future__ import annotations

import re

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import auth, expire_job, submit
from tests.ui.conftest import csrf_token, sign_in

LATER = {"start_within_seconds": 600}


class TestExpiredJobs:
    async def test_the_job_page_shows_the_deadline_the_badge_and_a_re_run(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        acme: tuple[str, str],
    ) -> None:
        tenant_id, key = acme
        job = await submit(client, key, "echo", {"message": "late"}, LATER)
        await sign_in(client, key)
        waiting = (await client.get(f"/ui/jobs/{job['id']}")).text
        assert 'data-testid="start-by"' in waiting
        assert "Re-run job" not in waiting

        await expire_job(sessionmaker, tenant_id, job["id"])
        page = (await client.get(f"/ui/jobs/{job['id']}")).text
        assert 'class="status status-expired">expired<' in page
        assert "not started by its start deadline" in page
        assert "Re-run job" in page
        token = await csrf_token(client, f"/ui/jobs/{job['id']}")
        rerun = await client.post(f"/ui/jobs/{job['id']}/retry", data={"csrf_token": token})
        assert rerun.status_code == 303, rerun.text
        again = await client.get(f"/jobs/{job['id']}", headers=auth(key))
        assert again.json()["retried_by"] is not None

    async def test_are_filtered_and_charted_but_are_not_dead_letters(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        acme: tuple[str, str],
    ) -> None:
        tenant_id, key = acme
        late = await submit(client, key, "echo", {"message": "late"}, LATER)
        waiting = await submit(client, key, "echo", {"message": "waiting"})
        await expire_job(sessionmaker, tenant_id, late["id"])
        await sign_in(client, key)

        listing = (await client.get("/ui/jobs", params={"status": "expired"})).text
        assert '<option value="expired" selected>' in listing
        assert late["id"].replace("-", "")[-12:] in listing
        assert waiting["id"].replace("-", "")[-12:] not in listing
        overview = (await client.get("/ui")).text
        assert 'data-testid="throughput-summary"' in overview
        assert re.search(r"1 finished,\s+0 failed", overview)
        assert '<rect class="expired"' in overview
        assert "No dead letters." in (await client.get("/ui/dead-letters")).text


class TestSubmitForm:
    async def test_a_deadline_from_the_form_is_stored_and_a_wrong_one_shown(
        self, client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        await sign_in(client, acme[1])
        page = (await client.get("/ui/submit/health_check")).text
        assert "300.0 s, the type's default" in page
        token = await csrf_token(client, "/ui/submit/echo")
        wrong = {"csrf_token": token, "message": "x", "options.start_within_seconds": "0"}
        refused = await client.post("/ui/submit/echo", data=wrong)
        assert refused.status_code == 422
        assert 'data-error-for="options.start_within_seconds"' in refused.text

        form = {"csrf_token": token, "message": "x", "options.start_within_seconds": "90"}
        response = await client.post("/ui/submit/echo", data=form)
        assert response.status_code == 303, response.text
        job_id = response.headers["location"].split("/")[-1].split("?")[0]
        job = (await client.get(f"/jobs/{job_id}", headers=auth(acme[1]))).json()
        assert job["start_by"] is not None
