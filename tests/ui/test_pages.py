"""Dashboard pages over the ASGI client: tenant scoping, the submit form, dead letters, queues."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from arq.worker import Worker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.chaos.outages import scripts_refused
from tests.choice_jobs import UPSTREAM_CALL
from tests.conftest import ADMIN_TOKEN, ClientFactory
from tests.factories import auth, set_tenant_limits, submit, wait_for_status
from tests.keyed_jobs import KEYED_TYPES
from tests.rate_limited_jobs import RATE_LIMITED_TYPES
from tests.ui.conftest import csrf_token, sign_in
from worker.settings import worker_name
from worker.testing import declared

FAILING = {"fail_times": 1, "permanent": True}


class TestTenantScoping:
    async def test_a_tenant_sees_only_its_jobs_and_the_operator_sees_all(
        self, client: httpx.AsyncClient, acme: tuple[str, str], globex: tuple[str, str]
    ) -> None:
        delayed = {"delay_seconds": 600}
        mine = await submit(client, acme[1], "echo", {"message": "acme-job"}, delayed)
        theirs = await submit(client, globex[1], "echo", {"message": "globex-job"}, delayed)

        await sign_in(client, acme[1])
        listing = (await client.get("/ui/jobs")).text
        assert mine["id"][-12:].replace("-", "") in listing
        assert theirs["id"].replace("-", "")[-12:] not in listing
        assert (await client.get(f"/ui/jobs/{mine['id']}")).status_code == 200
        other = await client.get(f"/ui/jobs/{theirs['id']}")
        assert other.status_code == 404
        assert "globex-job" not in other.text
        assert (await client.get(f"/ui/jobs/{theirs['id']}/live")).status_code == 404
        token = await csrf_token(client)
        for action in ("cancel", "retry"):
            refused = await client.post(
                f"/ui/jobs/{theirs['id']}/{action}", data={"csrf_token": token}
            )
            assert refused.status_code == 404
        assert (await client.get(f"/jobs/{theirs['id']}", headers=auth(globex[1]))).json()[
            "status"
        ] == "scheduled"
        # Another tenant's id in the filter changes nothing for a tenant.
        filtered = await client.get("/ui/jobs", params={"tenant": globex[0]})
        assert theirs["id"].replace("-", "")[-12:] not in filtered.text

        client.cookies.clear()
        await sign_in(client, ADMIN_TOKEN)
        listing = (await client.get("/ui/jobs")).text
        for job in (mine, theirs):
            assert job["id"].replace("-", "")[-12:] in listing
        assert ">acme<" in listing and ">globex<" in listing  # the tenant column
        only_globex = (await client.get("/ui/jobs", params={"tenant": globex[0]})).text
        assert mine["id"].replace("-", "")[-12:] not in only_globex
        assert "globex-job" in (await client.get(f"/ui/jobs/{theirs['id']}")).text


class TestJobPage:
    async def test_the_job_page_lists_each_attempt(
        self,
        client: httpx.AsyncClient,
        acme: tuple[str, str],
        worker: Worker,
    ) -> None:
        job = await submit(client, acme[1], "flaky", {"fail_times": 1})
        await wait_for_status(client, acme[1], job["id"], "succeeded")

        await sign_in(client, acme[1])
        page = (await client.get(f"/ui/jobs/{job['id']}")).text

        rows = re.findall(r'<tr data-attempt="(\d)">(.*?)</tr>', page, re.S)
        assert [number for number, _ in rows] == ["1", "2"]
        (_, failed), (_, succeeded) = rows
        assert "status-retrying" in failed and "RetryableJobError" in failed
        assert "failing on purpose, attempt 1 of 1 to fail" in failed
        assert "status-succeeded" in succeeded
        assert worker_name() in failed and worker_name() in succeeded
        live = (await client.get(f"/ui/jobs/{job['id']}/live")).text
        assert 'data-testid="attempts"' in live  # the polled part keeps it up to date


class TestSubmitForm:
    async def test_form_is_generated_from_the_args_schema(
        self, client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        await sign_in(client, acme[1])
        page = (await client.get("/ui/submit/echo")).text
        assert 'name="message"' in page and 'name="repeat"' in page
        assert "How many times to repeat it." in page  # the field's schema description
        flaky = (await client.get("/ui/submit/flaky")).text
        assert 'type="checkbox" id="f-permanent" name="permanent"' in flaky
        email = (await client.get("/ui/submit/send_email")).text
        assert 'type="email"' in email and '<textarea id="f-body" name="body"' in email
        assert (await client.get("/ui/submit/purge_expired")).status_code == 404  # internal

    async def test_the_job_type_pages_show_a_rate_limit(
        self, make_client: ClientFactory, acme: tuple[str, str]
    ) -> None:
        with declared(*RATE_LIMITED_TYPES):
            client = await make_client()
            await sign_in(client, acme[1])
            index = (await client.get("/ui/submit")).text
            page = (await client.get("/ui/submit/stamp_per_customer")).text
            echo = (await client.get("/ui/submit/echo")).text
        assert "Rate limit: 10 per 1 s, burst 2." in index
        assert "Rate limit: 1 per 2 s, per tenant and customer_id." in index
        assert "Rate limit: 1 per 2 s, per tenant and customer_id." in page
        assert "data-rate-limit" not in echo

    async def test_validation_errors_are_shown_next_to_their_fields(
        self, client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        await sign_in(client, acme[1])
        token = await csrf_token(client, "/ui/submit/echo")
        form = {"csrf_token": token, "message": "", "repeat": "0", "options.labels": "oops"}
        response = await client.post("/ui/submit/echo", data=form)
        assert response.status_code == 422
        errors = dict(re.findall(r'data-error-for="([^"]+)">([^<]+)<', response.text))
        assert set(errors) == {"repeat", "options.labels"}
        assert "greater than or equal to 1" in errors["repeat"]
        assert 'value="0"' in response.text  # what was typed is kept
        listing = await client.get("/jobs", headers=auth(acme[1]))
        assert listing.json()["items"] == []

    async def test_a_valid_form_submits_the_job(
        self, client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        await sign_in(client, acme[1])
        token = await csrf_token(client, "/ui/submit/echo")
        form = {
            "csrf_token": token, "message": "from the form", "repeat": "2",
            "options.priority": "critical", "options.labels": "team:ops",
            "options.delay_seconds": "600",
        }  # fmt: skip
        response = await client.post("/ui/submit/echo", data=form)
        assert response.status_code == 303
        job_id = response.headers["location"].split("/")[-1].split("?")[0]
        job = (await client.get(f"/jobs/{job_id}", headers=auth(acme[1]))).json()
        assert job["args"] == {"message": "from the form", "repeat": 2}
        assert (job["priority"], job["labels"], job["status"]) == (
            "critical", {"team": "ops"}, "scheduled",
        )  # fmt: skip

    async def test_the_operator_cannot_submit_without_a_tenant(
        self, client: httpx.AsyncClient
    ) -> None:
        await sign_in(client, ADMIN_TOKEN)
        token = await csrf_token(client, "/ui/submit/echo")
        response = await client.post("/ui/submit/echo", data={"csrf_token": token, "message": "x"})
        assert response.status_code == 403
        assert "sign in with a tenant" in response.text


class TestSubmitFormQueues:
    @pytest.fixture
    async def client(self, make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
        """The dashboard of a gateway that knows `upstream_call` (queues `default`, `bulk`)."""
        with declared(UPSTREAM_CALL):
            yield await make_client()

    async def test_the_types_queues_are_shown_and_offered(
        self, client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        await sign_in(client, acme[1])
        index = (await client.get("/ui/submit")).text
        assert '<span class="muted" data-queues="upstream_call">(queues: default, bulk)' in index
        assert '<span class="muted" data-queues="echo">(queue: default)' in index
        form = (await client.get("/ui/submit/upstream_call")).text
        choices = re.findall(r'<option value="([^"]*)"', form.split('name="options.queue"')[1])
        assert choices[:2] == ["", "bulk"]  # empty: the type's own queue, `default`
        assert "default (the type's default)" in form
        assert 'name="options.queue"' not in (await client.get("/ui/submit/echo")).text

    async def test_the_chosen_queue_is_the_jobs(
        self, client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        await sign_in(client, acme[1])
        token = await csrf_token(client, "/ui/submit/upstream_call")
        form = {"csrf_token": token, "options.queue": "bulk", "options.delay_seconds": "30"}
        response = await client.post("/ui/submit/upstream_call", data=form)
        assert response.status_code == 303, response.text
        job_id = response.headers["location"].split("/")[-1].split("?")[0]
        job = (await client.get(f"/jobs/{job_id}", headers=auth(acme[1]))).json()
        assert (job["queue"], job["status"]) == ("bulk", "scheduled")

    @pytest.mark.parametrize(
        ("field", "value", "error"),
        [
            ("options.queue", "email", "may run on 'default', 'bulk', not on 'email'"),
            ("options.delay_seconds", "soon", "Enter a number of seconds."),
            ("options.delay_seconds", "-1", "greater than or equal to 0"),
        ],
    )
    async def test_a_refused_option_is_shown_next_to_its_field(
        self,
        client: httpx.AsyncClient,
        acme: tuple[str, str],
        field: str,
        value: str,
        error: str,
    ) -> None:
        await sign_in(client, acme[1])
        token = await csrf_token(client, "/ui/submit/upstream_call")
        response = await client.post(
            "/ui/submit/upstream_call", data={"csrf_token": token, field: value}
        )
        assert response.status_code == 422
        errors = dict(re.findall(r'data-error-for="([^"]+)">([^<]+)<', response.text))
        assert list(errors) == [field]
        assert error in errors[field].replace("&#39;", "'")
        assert (await client.get("/jobs", headers=auth(acme[1]))).json()["items"] == []


class TestSubmitFormRateLimit:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"rate_limit_per_second": 0.01, "rate_limit_burst": 1})

    async def test_the_tenants_rate_limit_applies_to_the_form(
        self, client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        await sign_in(client, acme[1])
        token = await csrf_token(client, "/ui/submit/echo")
        form = {"csrf_token": token, "message": "once"}
        assert (await client.post("/ui/submit/echo", data=form)).status_code == 303
        refused = await client.post("/ui/submit/echo", data=form)
        assert refused.status_code == 429
        assert "jobs per second" in refused.text
        assert len((await client.get("/jobs", headers=auth(acme[1]))).json()["items"]) == 1


class TestDeadLetters:
    async def test_failed_jobs_are_grouped_and_re_run_in_bulk(
        self, client: httpx.AsyncClient, worker: Worker, acme: tuple[str, str],
        globex: tuple[str, str],
    ) -> None:  # fmt: skip
        failing = FAILING
        failed = [await submit(client, acme[1], "flaky", failing) for _ in range(2)]
        foreign = await submit(client, globex[1], "flaky", failing)
        for job in failed:
            await wait_for_status(client, acme[1], job["id"], "failed")
        await wait_for_status(client, globex[1], foreign["id"], "failed")

        await sign_in(client, acme[1])
        page = (await client.get("/ui/dead-letters")).text
        group = re.search(
            r'data-group="flaky/([^"]+)".*?<td data-label="Jobs" class="num">(\d+)', page, re.S
        )
        assert group, page
        assert group.group(2) == "2"  # globex's failure is not counted
        token = await csrf_token(client, "/ui/dead-letters")
        response = await client.post(
            "/ui/dead-letters/retry",
            data={"csrf_token": token, "name": "flaky", "error_type": group.group(1)},
        )
        assert response.headers["location"] == "/ui/dead-letters?notice=retried-many&count=2"
        for job in failed:
            old = (await client.get(f"/jobs/{job['id']}", headers=auth(acme[1]))).json()
            assert old["retried_by"] is not None
        untouched = (await client.get(f"/jobs/{foreign['id']}", headers=auth(globex[1]))).json()
        assert untouched["retried_by"] is None

    async def test_re_runs_refused_by_redis_change_nothing(
        self,
        client: httpx.AsyncClient,
        make_client: ClientFactory,
        redis: Redis,
        settings: Settings,
        worker: Worker,
        acme: tuple[str, str],
    ) -> None:
        failed = [await submit(client, acme[1], "flaky", FAILING) for _ in range(2)]
        for job in failed:
            await wait_for_status(client, acme[1], job["id"], "failed")
        async with scripts_refused(redis, settings.require_redis_url()) as refusing_url:
            refusing = await make_client(redis_url=refusing_url)
            await sign_in(refusing, acme[1])
            token = await csrf_token(refusing, "/ui/dead-letters")
            one = await refusing.post(
                f"/ui/jobs/{failed[0]['id']}/retry", data={"csrf_token": token}
            )
            assert one.status_code == 303
            assert one.headers["location"] == f"/ui/jobs/{failed[0]['id']}?notice=unavailable"
            assert "queue is unavailable" in (await refusing.get(one.headers["location"])).text
            response = await refusing.post(
                "/ui/dead-letters/retry",
                data={"csrf_token": token, "name": "flaky", "error_type": "permanent"},
            )
            assert response.status_code == 303
            assert response.headers["location"] == ("/ui/dead-letters?notice=retried-some&count=0")
            page = (await refusing.get(response.headers["location"])).text
            assert "Re-runs submitted: 0; the queue is unavailable" in page
        for job in failed:
            old = (await client.get(f"/jobs/{job['id']}", headers=auth(acme[1]))).json()
            assert old["retried_by"] is None
        assert len((await client.get("/jobs", headers=auth(acme[1]))).json()["items"]) == 2

        # Redis takes the hand-off again: the whole group is still there to re-run.
        await sign_in(client, acme[1])
        token = await csrf_token(client, "/ui/dead-letters")
        response = await client.post(
            "/ui/dead-letters/retry",
            data={"csrf_token": token, "name": "flaky", "error_type": "permanent"},
        )
        assert response.headers["location"] == "/ui/dead-letters?notice=retried-many&count=2"

    async def test_re_runs_spend_the_tenants_tokens(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
        acme: tuple[str, str],
    ) -> None:
        failed = [await submit(client, acme[1], "flaky", FAILING) for _ in range(2)]
        for job in failed:
            await wait_for_status(client, acme[1], job["id"], "failed")
        await set_tenant_limits(
            sessionmaker, acme[0], rate_limit_per_second=0.01, rate_limit_burst=3
        )
        await submit(client, acme[1], "echo", {"message": "x"}, {"delay_seconds": 600})
        await submit(client, acme[1], "echo", {"message": "x"}, {"delay_seconds": 600})
        await sign_in(client, acme[1])
        token = await csrf_token(client, "/ui/dead-letters")
        group = {"csrf_token": token, "name": "flaky", "error_type": "permanent"}
        refused = await client.post("/ui/dead-letters/retry", data=group)  # two, one token left
        assert refused.headers["location"] == "/ui/dead-letters?notice=rate-limited"
        assert "rate limit" in (await client.get(refused.headers["location"])).text
        assert len((await client.get("/jobs", headers=auth(acme[1]))).json()["items"]) == 4

        one = await client.post(f"/ui/jobs/{failed[0]['id']}/retry", data={"csrf_token": token})
        new_id = (await client.get(f"/jobs/{failed[0]['id']}", headers=auth(acme[1]))).json()[
            "retried_by"
        ]
        assert one.headers["location"] == f"/ui/jobs/{new_id}?notice=retried"  # the last token
        again = await client.post(f"/ui/jobs/{failed[1]['id']}/retry", data={"csrf_token": token})
        assert again.headers["location"] == f"/ui/jobs/{failed[1]['id']}?notice=rate-limited"
        assert len((await client.get("/jobs", headers=auth(acme[1]))).json()["items"]) == 5


class TestOverview:
    async def test_queue_depth_by_priority_and_waiting_jobs(
        self, client: httpx.AsyncClient, acme: tuple[str, str]
    ) -> None:
        for priority in ("critical", "critical", "low"):
            await submit(client, acme[1], "echo", {"message": "x"}, {"priority": priority})
        await submit(client, acme[1], "echo", {"message": "x"}, {"delay_seconds": 600})
        await sign_in(client, ADMIN_TOKEN)
        page = (await client.get("/ui")).text
        depths = page.split('data-testid="queue-depths"')[1].split("</table>")[0]
        row = depths.split("<td>default</td>")[1].split("</tr>")[0]
        lines = dict(re.findall(r'data-priority="(\w+)">(\d+)<', row))
        assert lines == {"critical": "2", "default": "0", "low": "1"}
        assert "all queues: 1 waiting for their time" in page
        assert "upcoming" in page.lower() and "purge_expired" in page


class TestJobFilters:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("created_after", "0001-01-01T00:00:00+01:00"),  # year 0 in UTC
            ("created_before", "9999-12-31T23:30:00-01:00"),  # year 10000 in UTC
            ("created_after", "yesterday"),
        ],
    )
    async def test_a_time_outside_the_calendar_is_shown_next_to_the_filters(
        self, client: httpx.AsyncClient, acme: tuple[str, str], name: str, value: str
    ) -> None:
        job = await submit(client, acme[1], "echo", {"message": "still-listed"})
        await sign_in(client, acme[1])
        page = await client.get("/ui/jobs", params={name: value})
        assert page.status_code == 200
        assert re.search(r'role="alert">Created (after|before) is not a date and time', page.text)
        assert job["id"].replace("-", "")[-12:] in page.text  # the filter is ignored, not the page
        # The API refuses the same value with a 422 naming the parameter.
        api = await client.get("/jobs", params={name: value}, headers=auth(acme[1]))
        assert api.status_code == 422
        assert api.json()["errors"][0]["loc"] == ["query", name]


class TestJobPageConcurrencyKey:
    async def test_shows_the_concurrency_key(
        self, make_client: ClientFactory, acme: tuple[str, str]
    ) -> None:
        with declared(*KEYED_TYPES):
            client = await make_client()
            args = {"customer": {"id": "cust-42"}}
            keyed = await submit(client, acme[1], "keyed_queue", args, {"delay_seconds": 600})
            plain = await submit(client, acme[1], "echo", {"message": "hi"}, {"delay_seconds": 600})
            await sign_in(client, acme[1])
            keyed_page = (await client.get(f"/ui/jobs/{keyed['id']}")).text
            plain_page = (await client.get(f"/ui/jobs/{plain['id']}")).text
        assert '<code data-testid="concurrency-key">cust-42</code>' in keyed_page
        assert "Concurrency key" not in plain_page
