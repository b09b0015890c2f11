"""The dashboard in a real Chromium (Debian's, driven by Playwright) against a real gateway
(uvicorn on a free port) and a real `jobgate worker` process.

Screenshots of every page land in `tests/ui/artifacts/` (not committed). Chromium comes from
`make browser` (`make test` runs it); without it these tests skip and say so.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    async_playwright,
    expect,
)
from redis import Redis

from gateway.app import create_app
from shared.keys import WORKERS_SET
from shared.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.factories import auth, submit, wait_for_status

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
PHONE = {"width": 375, "height": 812}
WAIT_MS = 10_000
expect.set_options(timeout=WAIT_MS)
WORKER_START_SECONDS = 45
ContextFactory = Callable[..., Awaitable[BrowserContext]]
ANSWERED = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no {CHROMIUM}: run `make browser` (as root: apt-get install chromium)",
    ),
    # The first test also waits for the worker process to start (seconds on a busy machine).
    pytest.mark.timeout(WORKER_START_SECONDS + 60),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def worker_process(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """`jobgate worker` on the default queue, as deployed, announcing itself every second."""
    log_path = tmp_path_factory.mktemp("ui-worker") / "worker.log"
    env = {
        **os.environ,
        "JOBGATE_ENV": "test",
        "JOBGATE_DATABASE_URL": database_url,
        "JOBGATE_REDIS_URL": redis_url,
        "JOBGATE_WORKER_POLL_DELAY_SECONDS": "0.05",
        "JOBGATE_WORKER_RUN_SCHEDULES": "false",
        "JOBGATE_WORKER_ANNOUNCE_INTERVAL_SECONDS": "1",
        "JOBGATE_LOG_LEVEL": "WARNING",
        "JOBGATE_WORKER_METRICS_PORT": "0",  # no metrics server: nothing to collide with
    }
    jobgate = Path(sys.executable).parent / "jobgate"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our own console script, argument list)
            [str(jobgate), "worker", "--queue", "default"], env=env, stdout=log, stderr=log
        )
    try:
        _wait_until_announced(redis_url, process, log_path)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode in (0, -signal.SIGKILL), log_path.read_text()[-2000:]


def _wait_until_announced(redis_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Block until the worker says it is alive (its start-up takes seconds on a busy machine)."""
    client = Redis.from_url(redis_url)
    deadline = time.monotonic() + WORKER_START_SECONDS
    try:
        while not client.scard(WORKERS_SET):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
    finally:
        client.close()


@pytest.fixture
async def base_url(settings: Settings, worker_process: None) -> AsyncIterator[str]:
    """The gateway served by uvicorn on a free loopback port, in this event loop."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=_free_port(), log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if serving.done() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    await serving


@pytest.fixture
async def api(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The same gateway's HTTP API, for setting the scene and checking outcomes."""
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
        yield client


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        await chromium.close()


@pytest.fixture
async def new_context(browser: Browser, base_url: str) -> AsyncIterator[ContextFactory]:
    """Open isolated browser profiles (own cookies) on the gateway; closed at the end."""
    opened: list[BrowserContext] = []
    problems: list[str] = []

    def note_console(message: ConsoleMessage) -> None:
        # A 404 or 422 page is an answer, not a fault (Chromium still logs its status); anything
        # else (a script error, a CSP refusal) means the page is broken for real users.
        if message.type == "error" and not ANSWERED.match(message.text):
            problems.append(message.text)

    async def open_context(**options: object) -> BrowserContext:
        context = await browser.new_context(base_url=base_url, **options)  # type: ignore[arg-type]
        context.set_default_timeout(WAIT_MS)
        context.on("console", note_console)
        context.on("weberror", lambda error: problems.append(str(error.error)))
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        await context.close()
    assert problems == [], "the browser reported errors"


async def _signed_in(context: BrowserContext, token: str) -> Page:
    """A page of `context`, signed in through the login form using the keyboard only."""
    page = await context.new_page()
    await page.goto("/ui")
    await expect(page).to_have_url(f"{_origin(page)}/ui/login")
    await _shot(page, "login")
    await page.get_by_label("API key or operator token").fill(token)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


def _origin(page: Page) -> str:
    return page.url.split("/ui", 1)[0]


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


async def test_submit_from_the_form_and_watch_it_finish_live(
    new_context: ContextFactory, api: httpx.AsyncClient, acme: tuple[str, str]
) -> None:
    page = await _signed_in(await new_context(), acme[1])
    await page.get_by_role("navigation").get_by_role("link", name="Submit").click()
    await page.get_by_role("link", name="sleep", exact=True).click()
    await page.get_by_role("textbox", name="Seconds", exact=True).fill("-1")
    await page.get_by_role("button", name="Submit job").click()
    error = page.locator('[data-error-for="seconds"]')
    await expect(error).to_contain_text("greater than or equal to 0")
    await expect(page.get_by_role("textbox", name="Seconds", exact=True)).to_have_attribute(
        "aria-invalid", "true"
    )
    await _shot(page, "submit-form-errors")

    await page.get_by_role("textbox", name="Seconds", exact=True).fill("2")
    await page.get_by_role("textbox", name="Steps", exact=True).fill("4")
    await page.get_by_role("textbox", name="Labels", exact=True).fill("source:browser")
    await page.get_by_role("button", name="Submit job").click()
    status = page.get_by_test_id("job-status")
    await expect(page.get_by_test_id("notice")).to_have_text("Submitted.")
    # The page was rendered before the job ran; it updates itself without a reload.
    await expect(page.locator("progress#job-progress")).to_be_visible(timeout=WAIT_MS)
    await _shot(page, "job-running")
    await expect(status).to_contain_text("succeeded", timeout=WAIT_MS)
    await expect(page.get_by_test_id("result")).to_contain_text('"slept"')
    await _shot(page, "job-succeeded")
    job_id = page.url.rsplit("/", 1)[1].split("?")[0]
    job = (await api.get(f"/jobs/{job_id}", headers=auth(acme[1]))).json()
    assert (job["status"], job["labels"]) == ("succeeded", {"source": "browser"})

    # The jobs list picks up a job submitted elsewhere, with no reload either.
    await page.get_by_role("navigation").get_by_role("link", name="Jobs").click()
    await expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_be_visible()
    other = await submit(api, acme[1], "echo", {"message": "from the API"})
    await expect(page.locator(f'tr[data-job-id="{other["id"]}"]')).to_be_visible(timeout=WAIT_MS)
    await _shot(page, "jobs")
    await page.get_by_label("Label").fill("source:browser")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator(f'tr[data-job-id="{other["id"]}"]')).to_have_count(0)
    await expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_be_visible()


async def test_cancel_a_running_job_and_re_run_a_failed_one(
    new_context: ContextFactory, api: httpx.AsyncClient, acme: tuple[str, str]
) -> None:
    slow = await submit(api, acme[1], "sleep", {"seconds": 30, "steps": 30})
    failed = await submit(api, acme[1], "flaky", {"fail_times": 1, "permanent": True})
    page = await _signed_in(await new_context(), acme[1])

    await page.goto(f"/ui/jobs/{slow['id']}")
    await expect(page.get_by_test_id("job-status")).to_contain_text("running", timeout=WAIT_MS)
    await page.get_by_role("button", name="Cancel job").click()
    await expect(page.get_by_test_id("job-status")).to_contain_text("cancelled", timeout=WAIT_MS)
    await expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    await _shot(page, "job-cancelled")

    await wait_for_status(api, acme[1], failed["id"], "failed")
    await page.goto("/ui/dead-letters")
    await expect(page.locator('tr[data-group="flaky/permanent"]')).to_be_visible()
    await _shot(page, "dead-letters")
    await page.goto(f"/ui/jobs/{failed['id']}")
    await expect(page.get_by_test_id("error")).to_contain_text("permanent")
    await page.get_by_role("button", name="Re-run job").click()
    await expect(page.get_by_test_id("notice")).to_have_text("Re-run submitted as a new job.")
    await expect(page.get_by_test_id("retry-of")).to_have_text(failed["id"])
    await page.get_by_test_id("retry-of").click()  # and back, through the link the other way
    await expect(page.get_by_test_id("retried-by")).to_be_visible()


async def test_tenants_see_only_their_jobs_and_the_operator_sees_all(
    new_context: ContextFactory,
    api: httpx.AsyncClient,
    acme: tuple[str, str],
    globex: tuple[str, str],
) -> None:
    mine = await submit(api, acme[1], "echo", {"message": "acme's"})
    theirs = await submit(api, globex[1], "flaky", {"fail_times": 1, "permanent": True})
    await wait_for_status(api, acme[1], mine["id"], "succeeded")
    await wait_for_status(api, globex[1], theirs["id"], "failed")

    page = await _signed_in(await new_context(), globex[1])
    await page.goto("/ui/jobs")
    await expect(page.locator(f'tr[data-job-id="{theirs["id"]}"]')).to_be_visible()
    await expect(page.locator(f'tr[data-job-id="{mine["id"]}"]')).to_have_count(0)
    await page.goto(f"/ui/jobs/{mine['id']}")
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    await expect(page.get_by_text("acme's")).to_have_count(0)

    admin = await _signed_in(await new_context(), ADMIN_TOKEN)
    await expect(admin.get_by_test_id("who")).to_have_text("Operator (all tenants)")
    await expect(admin.get_by_test_id("workers")).to_contain_text("default")
    await expect(admin.get_by_test_id("throughput-summary")).to_contain_text("2 finished")
    await _shot(admin, "overview")
    await admin.get_by_role("navigation").get_by_role("link", name="Jobs").click()
    for job, tenant in ((mine, "acme"), (theirs, "globex")):
        row = admin.locator(f'tr[data-job-id="{job["id"]}"]')
        await expect(row.locator('td[data-label="Tenant"]')).to_have_text(tenant)
    await admin.get_by_label("Tenant").select_option(label="acme")
    await admin.get_by_role("button", name="Filter").click()
    await expect(admin.locator(f'tr[data-job-id="{theirs["id"]}"]')).to_have_count(0)
    await expect(admin.locator(f'tr[data-job-id="{mine["id"]}"]')).to_be_visible()
    await _shot(admin, "jobs-operator")


async def test_usable_at_phone_width(
    new_context: ContextFactory, api: httpx.AsyncClient, acme: tuple[str, str]
) -> None:
    job = await submit(api, acme[1], "echo", {"message": "small screen"})
    await wait_for_status(api, acme[1], job["id"], "succeeded")
    context = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await _signed_in(context, acme[1])
    pages = {
        "phone-overview": "/ui",
        "phone-jobs": "/ui/jobs",
        "phone-job": f"/ui/jobs/{job['id']}",
        "phone-submit": "/ui/submit/echo",
    }
    for name, path in pages.items():
        await page.goto(path)
        overflow = await page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= PHONE["width"], f"{path} scrolls sideways ({overflow} px)"
        await _shot(page, name)
    await page.goto("/ui/jobs")
    await expect(page.locator(f'tr[data-job-id="{job["id"]}"] a')).to_be_visible()
