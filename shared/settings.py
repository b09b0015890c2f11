"""The one settings class. Every tunable of jobgate lives here, read from `JOBGATE_*` variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_ADMIN_TOKEN_CHARS = 24


class WebhookSettings(BaseModel):
    """Outbound webhooks; `JOBGATE_WEBHOOKS__<FIELD>` sets each field."""

    timeout_seconds: float = Field(
        10.0, gt=0, description="Bound on one delivery attempt (connect, send, response headers)."
    )
    max_attempts: int = Field(
        8, ge=1, le=50, description="Attempts before a delivery is given up as `failed`."
    )
    backoff_base_seconds: float = Field(
        5.0, gt=0, description="Wait after the first failed attempt; doubles after each next one."
    )
    backoff_max_seconds: float = Field(3600.0, gt=0, description="Longest wait between attempts.")
    poll_interval_seconds: float = Field(
        1.0, gt=0, description="How often each worker looks for due deliveries."
    )
    batch_size: int = Field(
        20, ge=1, le=500, description="Deliveries one worker claims and sends at once."
    )


class Settings(BaseSettings):
    """jobgate configuration; `JOBGATE_<FIELD>` in the environment sets each field."""

    model_config = SettingsConfigDict(
        env_prefix="JOBGATE_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    env: Literal["dev", "test", "prod"] = Field(
        "prod", description="`dev` relaxes the secret checks; `prod` refuses weak secrets."
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
    max_wait_seconds: float = Field(60.0, gt=0, description="Cap of `GET /jobs/{id}?wait=`.")
    wait_recheck_seconds: float = Field(
        2.0, gt=0, description="Long-poll re-reads the row this often even without a notification."
    )
    retry_after_seconds: int = Field(5, ge=1, description="`Retry-After` sent with 503 answers.")
    list_default_limit: int = Field(50, ge=1, le=200)

    # Jobs
    result_ttl_seconds: int = Field(
        3600, ge=0, description="How long a terminal job stays readable, unless its type says."
    )

    # Connections: every call out has a bound, so a hung dependency cannot hang every request.
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
    worker_max_jobs: int = Field(50, ge=1, description="Jobs one worker runs at once, per queue.")
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
    worker_shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="On SIGTERM, running jobs get this long to finish."
    )
    worker_metrics_port: int | None = Field(
        None, description="Serve the worker's Prometheus metrics on this port."
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

    # Logging
    log_level: str = "INFO"
    log_json: bool = Field(False, description="Render logs as JSON lines instead of console text.")

    @field_validator("contract_modules", "job_modules", "worker_queues", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> Settings:
        token = self.admin_token.get_secret_value() if self.admin_token else None
        if self.env == "prod" and token is not None and len(token) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"JOBGATE_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters"
            )
        return self

    @model_validator(mode="after")
    def _one_tls_mode(self) -> Settings:
        if self.smtp_starttls and self.smtp_use_tls:
            raise ValueError("set JOBGATE_SMTP_STARTTLS or JOBGATE_SMTP_USE_TLS, not both")
        return self

    def require_database_url(self) -> str:
        """The database URL, or a clear error naming the variable to set."""
        if not self.database_url:
            raise RuntimeError("JOBGATE_DATABASE_URL is not set (or run `jobgate dev`)")
        return self.database_url

    def require_redis_url(self) -> str:
        """The Redis URL, or a clear error naming the variable to set."""
        if not self.redis_url:
            raise RuntimeError("JOBGATE_REDIS_URL is not set (or run `jobgate dev`)")
        return self.redis_url


@lru_cache
def get_settings() -> Settings:
    """Settings of this process, read once."""
    return Settings()
