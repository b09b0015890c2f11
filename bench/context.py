"""What every stage of the bench gets: where the servers are, who submits, how big the loads are."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import Sizes
from bench.load import LoadSpec

ECHO_ARGS = {"message": "hello", "repeat": 1}
ECHO_BODY = json.dumps({"args": ECHO_ARGS}).encode()


@dataclass(frozen=True)
class Context:
    """Shared by the stages: servers, the bench tenant's key, sizes, a folder for child logs."""

    database_url: str
    redis_url: str
    tenant_id: str
    token: str
    sizes: Sizes
    log_dir: Path
    skip_celery: str | None = None
    """Why the Celery baseline is skipped, or None to run it."""

    def auth_headers(self) -> dict[str, str]:
        """Headers of an authenticated JSON request."""
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def jobgate_env(self, **extra: str) -> dict[str, str]:
        """Environment of jobgate's gateway and workers: defaults, as the images run them (JSON
        log lines), plus the bench job type."""
        return {
            **os.environ,
            "JOBGATE_ENV": "prod",
            "JOBGATE_LOG_JSON": "1",
            "JOBGATE_DATABASE_URL": self.database_url,
            "JOBGATE_REDIS_URL": self.redis_url,
            "JOBGATE_CONTRACT_MODULES": "bench.contracts",
            "JOBGATE_JOB_MODULES": "bench.jobs",
            **extra,
        }


def single_submit_load(
    context: Context, port: int, *, path: str, headers: dict[str, str], seconds: float
) -> LoadSpec:
    """The single-submit load, the same for jobgate and the bare endpoint: the echo body at
    `submit_connections`, measured for `seconds` after the warm-up."""
    return LoadSpec(
        port=port,
        path=path,
        body=ECHO_BODY,
        headers=headers,
        connections=context.sizes.submit_connections,
        seconds=seconds,
        warmup_seconds=context.sizes.warmup_seconds,
    )


def batch_body(size: int) -> bytes:
    """A batch submit of `size` echo jobs."""
    return json.dumps({"jobs": [{"args": ECHO_ARGS}] * size}).encode()


def check_load(summary: dict[str, Any], expected_status: int, what: str) -> None:
    """Fail the stage if the load saw errors or unexpected statuses (figures would lie)."""
    statuses = {int(status): count for status, count in summary["statuses"].items()}
    unexpected = {status: n for status, n in statuses.items() if status != expected_status}
    if summary["errors"] or unexpected or not statuses:
        raise RuntimeError(
            f"{what}: statuses {statuses}, errors {summary['errors']} (expected {expected_status})"
        )
