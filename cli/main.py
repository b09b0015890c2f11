"""The `jobgate` command line: run the service, migrate, manage tenants and keys."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
import uvloop
from sqlalchemy.ext.asyncio import AsyncSession
from typer.core import TyperGroup

from cli.embedded import embedded_services
from cli.inspect_command import inspect
from cli.jobs_command import dlq, jobs
from cli.migrate import upgrade
from cli.queues_command import queues
from shared.db import create_engine, create_sessionmaker
from shared.errors import InvalidSettings, JobgateError, SettingNotSet
from shared.logs import configure_logging
from shared.settings import Settings, get_settings
from shared.tenants import tenancy
from shared.tenants.apikeys import ALL_SCOPES, Scope

T = TypeVar("T")
DEV_TENANT = "dev"
GATEWAY_SERVE_OPTIONS = ("--http", "gateway.main:HttpProtocol")
"""uvicorn options the gateway is served with (the image's CMD too): httptools with the request
head bounded, which plain httptools is not (`gateway.http_head`)."""


class _Commands(TyperGroup):
    """The root command: whichever subcommand runs, a configuration problem ends it in a line
    per problem (exit 2, like usage errors), not in a traceback.

    Settings are read lazily, wherever a command first needs them, so this is the one place
    that sees every command's settings errors.
    """

    # `Any`: the context's class lives in typer's private copy of click (`typer._click`).
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SettingNotSet as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except InvalidSettings as exc:
            for problem in exc.problems:
                typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(cls=_Commands, help="jobgate: a typed HTTP job gateway in front of ARQ workers.")
tenants = typer.Typer(help="Manage tenants.", no_args_is_help=True)
keys = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(tenants, name="tenants")
app.add_typer(keys, name="keys")
app.add_typer(jobs, name="jobs")
app.add_typer(dlq, name="dlq")
app.add_typer(queues, name="queues")
app.command("inspect")(inspect)


def _with_session(settings: Settings, action: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one database action from synchronous command-line code; errors exit with a message."""

    async def main() -> T:
        engine = create_engine(settings, application_name="jobgate-cli")
        try:
            async with create_sessionmaker(engine)() as session:
                return await action(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except JobgateError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


@app.command()
def migrate() -> None:
    """Apply database migrations (JOBGATE_DATABASE_URL)."""
    upgrade(get_settings().require_database_url())
    typer.echo("database is at the latest revision")


@tenants.command("create")
def tenants_create(name: str) -> None:
    """Create a tenant and print its first API key (shown once)."""
    tenant, first_key = _with_session(
        get_settings(), lambda session: tenancy.create_tenant(session, name=name)
    )
    typer.echo(f"tenant {tenant.name} ({tenant.id})")
    typer.echo(f"api key (shown once): {first_key.token}")
    typer.echo(f"webhook secret (shown once): {tenant.webhook_secret}")


@tenants.command("limits")
def tenants_limits(
    tenant: Annotated[str, typer.Argument(help="Tenant id or name.")],
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="Jobs it may submit per second.")
    ] = None,
    burst: Annotated[int | None, typer.Option(min=1, help="Jobs it may submit at once.")] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Its jobs running at once, over all workers.")
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="First reset all three to the configured defaults.")
    ] = False,
) -> None:
    """Set a tenant's rate limit and concurrency quota; options left out stay as they are."""

    async def action(session: AsyncSession) -> tenancy.TenantLimits:
        found = await tenancy.find_tenant(session, tenant=tenant)
        current = tenancy.TenantLimits() if clear else tenancy.TenantLimits.of(found)
        wanted = tenancy.TenantLimits(
            rate_limit_per_second=current.rate_limit_per_second if rate is None else rate,
            rate_limit_burst=current.rate_limit_burst if burst is None else burst,
            max_concurrent_jobs=current.max_concurrent_jobs if concurrency is None else concurrency,
        )
        return tenancy.TenantLimits.of(
            await tenancy.set_limits(session, tenant_id=found.id, limits=wanted)
        )

    limits = _with_session(get_settings(), action)

    def shown(value: float | None, unit: str = "") -> str:
        return "default" if value is None else f"{value:g}{unit}"

    typer.echo(
        f"tenant {tenant}: rate {shown(limits.rate_limit_per_second, '/s')},"
        f" burst {shown(limits.rate_limit_burst)},"
        f" concurrency {shown(limits.max_concurrent_jobs)}"
    )


@keys.command("create")
def keys_create(
    tenant: Annotated[str, typer.Argument(help="Tenant id or name.")],
    scope: Annotated[list[Scope] | None, typer.Option(help="Repeat for several.")] = None,
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
) -> None:
    """Issue another API key for a tenant and print it (shown once)."""

    async def action(session: AsyncSession) -> tenancy.NewKey:
        found = await tenancy.find_tenant(session, tenant=tenant)
        return await tenancy.create_api_key(
            session, tenant_id=found.id, name=name, scopes=scope or ALL_SCOPES
        )

    new_key = _with_session(get_settings(), action)
    typer.echo(f"key id {new_key.key.id} scopes {','.join(new_key.key.scopes)}")
    typer.echo(f"api key (shown once): {new_key.token}")


@keys.command("revoke")
def keys_revoke(key_id: uuid.UUID) -> None:
    """Revoke an API key; it stops working at once."""
    key = _with_session(
        get_settings(), lambda session: tenancy.revoke_api_key(session, key_id=key_id)
    )
    typer.echo(f"revoked key {key.id}")


@app.command()
def openapi(
    check: Annotated[bool, typer.Option(help="Fail if the committed file differs.")] = False,
) -> None:
    """Write openapi/openapi.json from the code (or check it is current)."""
    from gateway.openapi import OPENAPI_PATH, render_openapi, write_openapi

    if check:
        current = OPENAPI_PATH.read_text() if OPENAPI_PATH.exists() else ""
        if current != render_openapi():
            typer.echo("openapi/openapi.json is stale: run `jobgate openapi`", err=True)
            raise typer.Exit(1)
        typer.echo("openapi/openapi.json is current")
        return
    typer.echo(f"wrote {write_openapi()}")


@app.command()
def worker(
    queue: Annotated[list[str] | None, typer.Option(help="Queue to serve; repeatable.")] = None,
    processes: Annotated[
        int,
        typer.Option(min=1, help="Worker processes under one supervisor (one per core)."),
    ] = 1,
) -> None:
    """Run workers for the given queues (default: JOBGATE_WORKER_QUEUES, else all)."""
    from worker.process import run_workers
    from worker.supervisor import supervise

    settings = get_settings()
    configure_logging(settings)
    if processes > 1:
        if not asyncio.run(supervise(settings, queue, processes)):
            raise typer.Exit(1)
        return
    # uvloop, as uvicorn uses for the gateway: the worker's event loop is its hot path.
    if not uvloop.run(run_workers(settings, queue)):
        raise typer.Exit(1)  # a worker died by itself: let the supervisor restart us


@app.command("worker-health")
def worker_health() -> None:
    """Exit 0 if this machine's worker is alive (JOBGATE_WORKER_HEARTBEAT_FILE is fresh)."""
    from worker.heartbeat import check

    path = get_settings().worker_heartbeat_file
    if path is None:
        typer.echo("error: JOBGATE_WORKER_HEARTBEAT_FILE is not set", err=True)
        raise typer.Exit(2)
    problem = check(path)
    if problem is not None:
        typer.echo(problem, err=True)
        raise typer.Exit(1)
    typer.echo("worker is alive")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run the benchmark suite from a checkout: `python -m bench` (see bench/README.md)."""
    from bench.__main__ import main as run_bench

    raise typer.Exit(run_bench(ctx.args))


async def _dev_key(session: AsyncSession) -> str:
    """A fresh key for the `dev` tenant, creating the tenant on first use."""
    with contextlib.suppress(JobgateError):
        found = await tenancy.find_tenant(session, tenant=DEV_TENANT)
        new_key = await tenancy.create_api_key(session, tenant_id=found.id, name="jobgate dev")
        return new_key.token
    _tenant, first_key = await tenancy.create_tenant(session, name=DEV_TENANT)
    return first_key.token


def _print_welcome(base_url: str, token: str) -> None:
    auth = f'-H "Authorization: Bearer {token}"'
    typer.echo(
        f"\njobgate is serving on {base_url} (docs: {base_url}/docs)\n"
        f"dev tenant API key: {token}\n\n"
        "Submit an echo job, then read its result (paste the id from the first answer):\n"
        f"  curl -s -X POST {base_url}/jobs/echo {auth} -H 'Content-Type: application/json' "
        """-d '{"args": {"message": "hello"}}'\n"""
        f'  curl -s "{base_url}/jobs/<id>?wait=10" {auth}\n\n'
        "Ctrl-C stops everything.\n"
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _supervise(processes: list[subprocess.Popen[bytes]]) -> None:
    """Wait until a child exits or Ctrl-C (or SIGTERM, see `dev`)."""
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop the children still running: politely, then, after 15 s, not."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@app.command()
def dev(
    host: Annotated[str, typer.Option(help="Interface the gateway listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the gateway listens on.")] = 8000,
) -> None:
    """Run gateway and worker together; embedded PostgreSQL/Redis unless URLs are set."""
    # SIGTERM (`kill`, a process manager, an IDE's stop button) is taken as Ctrl-C, from the
    # start: its default action would end this process at once, leaving the embedded
    # PostgreSQL and Redis running with nobody to stop them.
    signal.signal(signal.SIGTERM, _interrupt)
    settings = get_settings()
    data_dir: Path = settings.data_dir
    with embedded_services(
        data_dir,
        need_database=settings.database_url is None,
        need_redis=settings.redis_url is None,
    ) as embedded:
        database_url = settings.database_url or embedded.database_url
        redis_url = settings.redis_url or embedded.redis_url
        assert database_url and redis_url  # noqa: S101 (embedded_services filled the gaps)
        upgrade(database_url)
        dev_settings = settings.model_copy(
            update={"database_url": database_url, "redis_url": redis_url}
        )
        token = _with_session(dev_settings, _dev_key)
        env = {
            **os.environ,
            "JOBGATE_DATABASE_URL": database_url,
            "JOBGATE_REDIS_URL": redis_url,
            "JOBGATE_ENV": os.environ.get("JOBGATE_ENV", "dev"),
        }
        gateway = [
            sys.executable,
            "-m",
            "uvicorn",
            "gateway.main:app",
            *GATEWAY_SERVE_OPTIONS,
            "--host",
            host,
        ]
        processes: list[subprocess.Popen[bytes]] = []
        try:
            # Our own interpreter and modules, arguments as a list: no shell, nothing untrusted.
            worker = [sys.executable, "-m", "cli", "worker"]
            processes.append(
                subprocess.Popen([*gateway, "--port", str(port), "--no-access-log"], env=env)  # noqa: S603
            )
            processes.append(subprocess.Popen(worker, env=env))  # noqa: S603
            _print_welcome(f"http://{host}:{port}", token)
            _supervise(processes)
        except KeyboardInterrupt:
            pass  # Ctrl-C or SIGTERM while the children were starting
        finally:
            _stop(processes)


if __name__ == "__main__":
    app()
