"""`purge_expired`: delete finished jobs whose retention has passed (run by a schedule)."""

from shared.contracts import PURGE_EXPIRED, PurgeExpiredArgs, PurgeExpiredResult
from shared.errors import PermanentJobError
from worker.binding import implements
from worker.context import JobContext


@implements(PURGE_EXPIRED)
async def purge_expired(job: JobContext, args: PurgeExpiredArgs) -> PurgeExpiredResult:
    """Delete expired jobs in batches."""
    if job.maintenance is None:
        raise PermanentJobError("only jobgate's own schedules may run purge_expired")
    return PurgeExpiredResult(
        deleted=await job.maintenance.purge_expired(batch_size=args.batch_size)
    )
