"""`send_email`: deliver one plain-text message over SMTP."""

from shared.contracts import SEND_EMAIL, SendEmailArgs, SendEmailResult
from worker.binding import implements
from worker.context import JobContext
from worker.mail import SMTP_CIRCUIT


@implements(SEND_EMAIL)
async def send_email(job: JobContext, args: SendEmailArgs) -> SendEmailResult:
    """Send the message; SMTP failures come out as retryable or permanent job errors.

    While the SMTP server keeps failing, the breaker refuses at once (`CircuitOpenError`, retried
    after its recovery time) rather than let every job wait for its connection to time out.
    """
    async with job.circuit(SMTP_CIRCUIT.name):
        message_id = await job.mail.send(to=args.to, subject=args.subject, body=args.body)
    return SendEmailResult(message_id=message_id)
