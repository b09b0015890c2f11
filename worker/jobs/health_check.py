"""`health_check`: proves a worker is consuming."""

from shared.contracts import HEALTH_CHECK, HealthCheckResult, NoArgs
from worker.binding import implements
from worker.context import JobContext


@implements(HEALTH_CHECK)
async def health_check(job: JobContext, args: NoArgs) -> HealthCheckResult:
    """Answer with this worker's identity."""
    return HealthCheckResult(status="ok", worker=job.worker_name)
