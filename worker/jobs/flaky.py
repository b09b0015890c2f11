"""`flaky`: fail the first attempts, then succeed; exercises retries end to end."""

from shared.contracts import FLAKY, FlakyArgs, FlakyResult
from shared.errors import PermanentJobError, RetryableJobError
from worker.binding import implements
from worker.context import JobContext


@implements(FLAKY)
async def flaky(job: JobContext, args: FlakyArgs) -> FlakyResult:
    """Raise on attempts 1..fail_times (non-retryable if `permanent`), then succeed."""
    if job.attempt <= args.fail_times:
        message = f"failing on purpose, attempt {job.attempt} of {args.fail_times} to fail"
        if args.permanent:
            raise PermanentJobError(message)
        raise RetryableJobError(message)
    return FlakyResult(attempts=job.attempt)
