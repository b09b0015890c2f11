"""`jobgate-client` against a live gateway and worker, over real HTTP, as an outside caller."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from jobgate_client import AsyncJobgateClient, JobgateClient, JobgateError, JobWaitTimeout
from jobgate_client.errors import parse_retry_after
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_tenant, set_tenant_limits
from tests.live_gateway import LiveGateway


@pytest.fixture
def jobgate(live_gateway: LiveGateway, api_key: str) -> Iterator[JobgateClient]:
    with JobgateClient(live_gateway.url, api_key, timeout=5) as client:
        yield client


class TestSubmitAndWait:
    def test_sync_client_submits_and_waits_for_the_result(self, jobgate: JobgateClient) -> None:
        job = jobgate.submit("echo", {"message": "ab", "repeat": 3}, labels={"order": "42"})
        assert job.status == "queued"
        assert job.name == "echo" and job.labels == {"order": "42"}
        assert job.created_at.tzinfo is not None

        done = jobgate.wait(job.id, timeout=10)

        assert done.id == job.id
        assert done.status == "succeeded" and done.is_terminal
        assert done.result == {"message": "ababab"}
        assert done.error is None and done.attempts == 1
        assert done.finished_at is not None and done.finished_at >= done.created_at

    async def test_async_client_submits_and_waits_for_the_result(
        self, live_gateway: LiveGateway, api_key: str
    ) -> None:
        async with AsyncJobgateClient(live_gateway.url, api_key, timeout=5) as jobgate:
            job = await jobgate.submit("echo", {"message": "hi"})
            done = await jobgate.wait(job.id, timeout=10)
            assert done.status == "succeeded"
            assert done.result == {"message": "hi"}
            assert (await jobgate.get(job.id)).result == {"message": "hi"}

    def test_options_reach_the_job(self, jobgate: JobgateClient) -> None:
        run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        job = jobgate.submit(
            "echo",
            {"message": "later"},
            priority="low",
            max_tries=2,
            run_at=run_at,
            queue="default",
        )
        assert job.status == "scheduled"
        assert (job.priority, job.max_tries, job.scheduled_at) == ("low", 2, run_at)
        assert job.queue == "default"
        deadline = run_at + timedelta(minutes=5)
        bounded = jobgate.submit("echo", {"message": "soon"}, run_at=run_at, start_by=deadline)
        assert bounded.start_by == deadline
        assert job.start_by is None

    def test_wait_gives_up_at_its_timeout_with_the_job_as_last_seen(
        self, jobgate: JobgateClient
    ) -> None:
        job = jobgate.submit("echo", {"message": "later"}, delay_seconds=60)
        with pytest.raises(JobWaitTimeout) as caught:
            jobgate.wait(job.id, timeout=0.3)
        assert caught.value.job.id == job.id
        assert caught.value.job.status == "scheduled"

    def test_batch_submits_every_job_and_list_finds_them(self, jobgate: JobgateClient) -> None:
        jobs = jobgate.submit_batch(
            "echo",
            [
                {"args": {"message": str(n)}, "options": {"labels": {"batch": "b1"}}}
                for n in range(3)
            ],
        )
        assert len({job.id for job in jobs}) == 3
        for job in jobs:
            jobgate.wait(job.id, timeout=10)

        page = jobgate.list(labels={"batch": "b1"}, status=["succeeded"], limit=2)
        assert [job.id for job in page.items] == [job.id for job in reversed(jobs)][:2]
        assert page.next_cursor is not None
        rest = jobgate.list(labels={"batch": "b1"}, limit=2, cursor=page.next_cursor)
        assert [job.id for job in rest.items] == [jobs[0].id]
        assert rest.next_cursor is None


class TestAttempts:
    def test_sync_client_lists_a_flaky_jobs_attempts(self, jobgate: JobgateClient) -> None:
        job = jobgate.submit("flaky", {"fail_times": 1})
        done = jobgate.wait(job.id, timeout=10)

        failed, succeeded = jobgate.attempts(job.id)

        assert (failed.number, failed.outcome) == (1, "retrying")
        assert failed.error is not None and failed.error.type == "RetryableJobError"
        assert (succeeded.number, succeeded.outcome, succeeded.error) == (2, "succeeded", None)
        assert succeeded.started_at == done.started_at
        assert succeeded.finished_at == done.finished_at
        assert succeeded.worker is not None and ":" in succeeded.worker
        assert succeeded.duration_seconds is not None and succeeded.duration_seconds >= 0

    async def test_async_client_lists_attempts_and_404s_for_an_unknown_job(
        self, live_gateway: LiveGateway, api_key: str
    ) -> None:
        async with AsyncJobgateClient(live_gateway.url, api_key, timeout=5) as jobgate:
            job = await jobgate.submit("echo", {"message": "later"}, delay_seconds=60)
            assert await jobgate.attempts(job.id) == []
            with pytest.raises(JobgateError) as caught:
                await jobgate.attempts(str(uuid.uuid4()))
        assert (caught.value.status, caught.value.code) == (404, "job-not-found")


class TestConfiguration:
    def test_a_callers_http_client_is_used_and_left_open(
        self, live_gateway: LiveGateway, api_key: str
    ) -> None:
        with httpx.Client(headers={"X-Request-ID": "from-the-caller"}) as http:
            with (
                JobgateClient(live_gateway.url + "/", api_key, http_client=http) as jobgate,
                pytest.raises(JobgateError) as caught,
            ):
                jobgate.get(str(uuid.uuid4()))
            assert caught.value.request_id == "from-the-caller"
            assert http.get(f"{live_gateway.url}/healthz").status_code == 200

    def test_without_url_or_key_it_says_which_is_missing(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("JOBGATE_URL", raising=False)
        monkeypatch.delenv("JOBGATE_API_KEY", raising=False)
        with pytest.raises(ValueError, match="JOBGATE_URL"):
            JobgateClient()
        with pytest.raises(ValueError, match="JOBGATE_API_KEY"):
            AsyncJobgateClient("http://127.0.0.1:1")


class TestProblems:
    def test_invalid_args_raise_422_with_the_problem_fields(self, jobgate: JobgateClient) -> None:
        with pytest.raises(JobgateError) as caught:
            jobgate.submit("echo", {"message": "hi", "repeat": 0})
        error = caught.value
        assert error.status == 422
        assert error.type == "/problems/validation-error" and error.code == "validation-error"
        assert error.title and error.detail
        assert error.instance == "/jobs/echo"
        assert [issue.loc for issue in error.errors] == [("body", "args", "repeat")]
        assert error.errors[0].type == "greater_than_equal"
        assert error.request_id
        assert "422" in str(error)

    def test_unknown_job_raises_404(self, jobgate: JobgateClient) -> None:
        missing = str(uuid.uuid4())
        with pytest.raises(JobgateError) as caught:
            jobgate.get(missing)
        assert caught.value.status == 404
        assert caught.value.code == "job-not-found"
        assert caught.value.instance == f"/jobs/{missing}"
        assert caught.value.errors == ()

    def test_unknown_job_type_raises_404(self, jobgate: JobgateClient) -> None:
        with pytest.raises(JobgateError) as caught:
            jobgate.submit("no_such_type", {})
        assert (caught.value.status, caught.value.code) == (404, "unknown-job-type")

    def test_wrong_key_raises_401(self, live_gateway: LiveGateway) -> None:
        with (
            JobgateClient(live_gateway.url, "not-a-key") as stranger,
            pytest.raises(JobgateError) as caught,
        ):
            stranger.list()
        assert caught.value.status == 401

    async def test_rate_limited_submit_carries_retry_after(
        self, live_gateway: LiveGateway, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker, "limited")
        await set_tenant_limits(
            sessionmaker, tenant_id, rate_limit_per_second=0.1, rate_limit_burst=1
        )
        async with AsyncJobgateClient(live_gateway.url, token) as jobgate:
            await jobgate.submit("echo", {"message": "first"})
            with pytest.raises(JobgateError) as caught:
                await jobgate.submit("echo", {"message": "second"})
        assert (caught.value.status, caught.value.code) == (429, "rate-limited")
        assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 10

    def test_retry_after_as_an_http_date(self) -> None:
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
        assert parse_retry_after("7") == 7.0
        assert parse_retry_after("soon") is None


class TestCancelRetryIdempotency:
    def test_cancel_then_retry(self, jobgate: JobgateClient) -> None:
        job = jobgate.submit("echo", {"message": "never"}, delay_seconds=60)

        cancelled = jobgate.cancel(job.id)
        assert cancelled.status == "cancelled"
        with pytest.raises(JobgateError) as caught:
            jobgate.cancel(job.id)
        assert (caught.value.status, caught.value.code) == (409, "job-state-conflict")

        again = jobgate.retry(job.id)
        assert again.id != job.id and again.retry_of == job.id
        assert jobgate.get(job.id).retried_by == again.id

    def test_idempotency_key_replays_the_original_job(self, jobgate: JobgateClient) -> None:
        first = jobgate.submit("echo", {"message": "once"}, idempotency_key="order-42")
        replay = jobgate.submit("echo", {"message": "once"}, idempotency_key="order-42")
        assert replay.id == first.id
        assert replay.idempotency_key == "order-42"
        with pytest.raises(JobgateError) as caught:
            jobgate.submit("echo", {"message": "other"}, idempotency_key="order-42")
        assert (caught.value.status, caught.value.code) == (409, "idempotency-conflict")
        assert len(jobgate.list().items) == 1
