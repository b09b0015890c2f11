"""`tenant_report`: the tenant's jobs of the last days, counted by type and status."""

from datetime import UTC, datetime, timedelta

from shared.contracts import TENANT_REPORT, JobCountEntry, TenantReportArgs, TenantReportResult
from shared.status import JobStatus
from worker.binding import implements
from worker.context import JobContext


@implements(TENANT_REPORT)
async def tenant_report(job: JobContext, args: TenantReportArgs) -> TenantReportResult:
    """Count the jobs of this job's tenant created in the last `days` days."""
    since = datetime.now(UTC) - timedelta(days=args.days)
    counts = [
        JobCountEntry(name=row.name, status=JobStatus(row.status), count=row.count)
        for row in await job.data.job_counts(since)
    ]
    return TenantReportResult(
        days=args.days, since=since, counts=counts, total=sum(entry.count for entry in counts)
    )
