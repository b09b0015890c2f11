"""The one settings class. Every tunable of jobgate lives here, read from `JOBGATE_*` variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.errors import SettingNotSet
from shared.settings.groups import CircuitSettings, WebhookSettings
from shared.token_strength import admin_token_problem

DATABASE_URL_EXAMPLE = "postgresql+asyncpg://user@host/db"
REDIS_URL_EXAMPLE = "redis://host:6379/0"
REDIS_SCHEMES = ("redis", "rediss", "unix")
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*)://")


class Settings(BaseSettings):
    """jobgate configuration; `JOBGATE_<FIELD>` in the environment sets each field."""

    model_config = SettingsConfigDict(
        env_prefix="JOBGATE_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    env: Literal["dev", "test", "prod"] = Field(
        "prod", description="`dev` relaxes the secret checks; `test` and `prod` refuse weak ones."
    )
    database_url: str | None = Field(
        None, description="postgresql+asyncpg:// URL. Unset: `jobgate dev` starts an embedded one."
    )
    redis_url: str | None = Field(
        None, description="redis:// or unix:// URL. Unset: `jobgate dev` starts an embedded one."
    )
    admin_token: SecretStr | None = Field(
        None, description="Operator token for /admin routes. Unset: the admin API answers 401."
    )
    data_dir: Path = Field(Path(".jobgate"), description="Where embedded servers keep their data.")
    contract_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated modules declaring extra job types, imported at start-up.",
    )
    job_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated modules implementing them (`@implements`), for workers.",
    )

    # HTTP
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted.")
    max_header_count: int = Field(
        100, ge=10, description="Most header fields a request may carry (431 beyond)."
    )
    max_header_bytes: int = Field(
        16_384,
        ge=1024,
        description="Largest request head, request line and header fields (431 beyond).",
    )
    max_wait_seconds: float = Field(60.0, gt=0, description="Cap of `GET /jobs/{id}?wait=`.")
    wait_recheck_seconds: float = Field(
        2.0, gt=0, description="Long-poll re-reads the row this often even without a notification."
    )
    retry_after_seconds: int = Field(5, ge=1, description="`Retry-After` sent with 503 answers.")
    list_default_limit: int = Field(50, ge=1, le=200)

    # Tenant limits: defaults for tenants without their own (`PUT /admin/tenants/{t}/limits`).
    rate_limit_per_second: float | None = Field(
        None, gt=0, description="Jobs a tenant may submit per second, sustained. Unset: no limit."
    )
    rate_limit_burst: int | None = Field(
        None, ge=1, description="Jobs a tenant may submit at once. Unset: one second's worth."
    )
    tenant_max_concurrent_jobs: int | None = Field(
        None, ge=1, description="Jobs of one tenant running at once, over all workers. Unset: any."
    )

    # Jobs
    result_ttl_seconds: int = Field(
        3600, ge=0, description="How long a terminal job stays readable, unless its type says."
    )

    # Connections: every call out has a bound, so a hung dependency cannot hang every request.
    # One pool per process (a worker's queues share it). Its `db_pool_size` connections stay
    # open once opened (pools open lazily); up to `db_max_overflow` more open for a burst and
    # close as they are handed back to a pool that already has `db_pool_size` idle, so a burst
    # pins nothing. A process holds at most pool + overflow + 1 (the gateway's LISTEN, the
    # worker's health probe): 21, so a gateway and two worker processes stay at 63, well under
    # a stock PostgreSQL's 100 (docs/deployment.md "Production notes" has the formula).
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout_seconds: float = Field(5.0, gt=0)
    db_connect_timeout_seconds: float = Field(5.0, gt=0)
    db_statement_timeout_seconds: float = Field(15.0, gt=0)
    redis_timeout_seconds: float = Field(5.0, gt=0)
    redis_max_connections: int = Field(100, ge=1)

    # Worker
    worker_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Queues this worker consumes; empty means all of them."
    )
    worker_max_jobs: int = Field(100, ge=1, description="Jobs one worker runs at once, per queue.")
    worker_queue_concurrency: dict[str, int] = Field(
        default_factory=dict,
        description='Per-queue override of worker_max_jobs, as JSON: `{"email": 5}`.',
    )
    worker_poll_delay_seconds: float = Field(0.5, gt=0)
    worker_lease_seconds: float = Field(
        30.0, ge=1, description="A killed worker's jobs run again within this long."
    )
    reconcile_interval_seconds: float = Field(
        10.0, gt=0, description="How often PostgreSQL's unfinished jobs are checked in Redis."
    )
    reconcile_grace_seconds: float = Field(
        5.0, ge=0, description="Jobs younger than this are left to the submit enqueueing them."
    )
    worker_run_schedules: bool = Field(
        True, description="Run the cron schedules (every worker may; each tick runs once)."
    )
    worker_read_ahead_rounds: int = Field(
        5,
        ge=1,
        description=(
            "Each poll reads this many rounds of max_jobs job ids. Fewer: a job that lands at the"
            " front (another tenant's, a critical one) starts sooner; more: short jobs keep"
            " flowing at a long poll delay."
        ),
    )
    worker_quota_defer_seconds: float = Field(
        0.5, gt=0, description="A job over its tenant's concurrency quota waits this long."
    )
    worker_tenant_limits_cache_seconds: float = Field(
        5.0, ge=0, description="How long a worker trusts a tenant's quota it has read."
    )
    worker_shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="On SIGTERM, running jobs get this long to finish."
    )
    worker_max_jobs_per_process: int | None = Field(
        None,
        ge=1,
        description="After starting this many jobs, drain and exit 0 for the supervisor to "
        "restart the process (like Celery's max_tasks_per_child). Unset: never.",
    )
    worker_max_rss_mb: float | None = Field(
        None,
        gt=0,
        description="Above this resident memory, drain and exit 0 likewise. Unset: never.",
    )
    worker_lost_attempts_allowed: int = Field(
        2,
        ge=0,
        description="Attempts beyond `max_tries` a job may get when its worker dies mid-attempt "
        "(killed, or cut off at shutdown); past them it fails as `worker_lost`.",
    )
    worker_health_interval_seconds: float = Field(
        1.0,
        gt=0,
        description="How often a worker checks PostgreSQL (each check bounded by this too); "
        "it takes no jobs while PostgreSQL does not answer.",
    )
    worker_metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="Port `jobgate worker` serves its Prometheus metrics on (`/metrics`); 0: none. "
        "Not the gateway's 8000 nor node_exporter's 9100; a second worker on one host finds it "
        "taken and runs without metrics (give each its own port).",
    )
    worker_announce_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="How often a worker process announces itself in Redis (workers alive, jobs "
        "in flight, `jobgate inspect`); it counts as dead three intervals after its last one.",
    )
    worker_heartbeat_file: Path | None = Field(
        None,
        description="Touched every `worker_health_interval_seconds` while the worker runs, for "
        "liveness probes (`jobgate worker-health`, `python -m worker.heartbeat PATH`). "
        "Unset: no heartbeat.",
    )

    # Email (the `send_email` job type)
    smtp_host: str = Field("localhost", description="SMTP server that `send_email` delivers to.")
    smtp_port: int = Field(25, ge=1, le=65535, description="Its port (25, 587, 465, ...).")
    smtp_username: SecretStr | None = Field(
        None, description="SMTP AUTH user name. Unset: no authentication."
    )
    smtp_password: SecretStr | None = Field(None, description="SMTP AUTH password.")
    smtp_starttls: bool = Field(
        False, description="Upgrade the connection with STARTTLS (typically port 587)."
    )
    smtp_use_tls: bool = Field(
        False, description="Connect over TLS from the start (implicit TLS, typically port 465)."
    )
    smtp_timeout_seconds: float = Field(
        10.0, gt=0, description="Bound on connecting and on each SMTP command."
    )
    email_from: str = Field(
        "jobgate@localhost", description="Sender address (`From` and envelope sender)."
    )

    # Webhooks
    webhooks: WebhookSettings = Field(
        default_factory=WebhookSettings, description="Delivery of `webhook_url` calls."
    )
    circuits: CircuitSettings = Field(
        default_factory=CircuitSettings, description="Circuit breakers job code calls through."
    )

    # Logging
    log_level: str = "INFO"
    log_json: bool = Field(False, description="Render logs as JSON lines instead of console text.")

    # Tracing (OpenTelemetry; see `shared.tracing`)
    tracing: bool = Field(
        False,
        description="Record OpenTelemetry spans: each request, submit and job attempt, one trace "
        "from the caller's `traceparent` to the worker. Off: no tracing work at all.",
    )
    tracing_exporter: Literal["otlp", "console", "none"] = Field(
        "otlp",
        description="Where spans go: `otlp` (OTLP/HTTP, configured by the standard "
        "`OTEL_EXPORTER_OTLP_*` variables), `console`, or `none` (ids in logs only).",
    )

    @field_validator("contract_modules", "job_modules", "worker_queues", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    # Checked here, not left to the drivers: their errors are tracebacks, and some print the
    # whole URL, password included.
    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: str | None) -> str | None:
        if value and _scheme_of(value) != "postgresql+asyncpg":
            raise ValueError(f"must be a URL like {DATABASE_URL_EXAMPLE}{_got(value)}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and _scheme_of(value) not in REDIS_SCHEMES:
            raise ValueError(
                f"must be a redis://, rediss:// or unix:// URL like {REDIS_URL_EXAMPLE}"
                f"{_got(value)}"
            )
        return value

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> Settings:
        # Everywhere but `dev`: a `test` or staging gateway reachable by others is as exposed.
        if self.env == "dev" or self.admin_token is None:
            return self
        problem = admin_token_problem(self.admin_token.get_secret_value())
        if problem is not None:
            raise ValueError(f"JOBGATE_ADMIN_TOKEN {problem}")
        return self

    @model_validator(mode="after")
    def _one_tls_mode(self) -> Settings:
        if self.smtp_starttls and self.smtp_use_tls:
            raise ValueError("set JOBGATE_SMTP_STARTTLS or JOBGATE_SMTP_USE_TLS, not both")
        return self

    def require_database_url(self) -> str:
        """The database URL, or a clear error naming the variable to set."""
        if not self.database_url:
            raise SettingNotSet(
                "JOBGATE_DATABASE_URL is not set: point it at your PostgreSQL"
                f" ({DATABASE_URL_EXAMPLE}), or run `jobgate dev` for embedded servers"
            )
        return self.database_url

    def require_redis_url(self) -> str:
        """The Redis URL, or a clear error naming the variable to set."""
        if not self.redis_url:
            raise SettingNotSet(
                "JOBGATE_REDIS_URL is not set: point it at your Redis"
                f" ({REDIS_URL_EXAMPLE}), or run `jobgate dev` for embedded servers"
            )
        return self.redis_url


def _scheme_of(url: str) -> str | None:
    found = _SCHEME.match(url)
    return found.group(1) if found else None


def _got(url: str) -> str:
    # The scheme alone: the rest of a URL may hold a password, and a value without a scheme
    # may be anything (a password pasted into the wrong variable).
    scheme = _scheme_of(url)
    return f" (it starts with {scheme}://)" if scheme else ""
