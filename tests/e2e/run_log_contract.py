"""`record_run`: a test job type whose every run leaves a line on disk, to count runs per job.

Gateways and workers started by `tests/e2e/test_scale_out.py` load it through
`JOBGATE_CONTRACT_MODULES=tests.e2e.run_log_contract` (and workers the implementation, through
`JOBGATE_JOB_MODULES=tests.e2e.run_log_job`), as a deployment loads its own types. The test
process itself never imports it: the registry is global, and other tests list its types.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.contracts import Contract, job_type


class RecordRunArgs(Contract):
    log_dir: Annotated[str, Field(description="Directory the run appends its job id to.")]
    sleep_ms: Annotated[int, Field(ge=0, le=1000, description="How long the run takes.")] = 0


class RecordRunResult(Contract):
    pid: Annotated[int, Field(description="Process id of the worker that ran it.")]


RECORD_RUN = job_type(
    "record_run",
    args=RecordRunArgs,
    result=RecordRunResult,
    description="Append the job id to `<log_dir>/<worker pid>.log`; for tests.",
    timeout_seconds=10.0,
    max_tries=1,
)
