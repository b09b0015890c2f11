"""`send_email`: deliver one plain-text message over SMTP."""

from shared.contracts import SEND_EMAIL, SendEmailArgs, SendEmailResult
from worker.binding import implements
from worker.context import JobContext


@implements(SEND_EMAIL)
async def send_email(job: JobContext, args: SendEmailArgs) -> SendEmailResult:
    """Send the message; SMTP failures come out as retryable or permanent job errors."""
    message_id = await job.mail.send(to=args.to, subject=args.subject, body=args.body)
    return SendEmailResult(message_id=message_id)
