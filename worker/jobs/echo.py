"""`echo`: return the message, repeated."""

from shared.contracts import ECHO, EchoArgs, EchoResult
from worker.binding import implements
from worker.context import JobContext


@implements(ECHO)
async def echo(job: JobContext, args: EchoArgs) -> EchoResult:
    """Repeat the message `repeat` times, no separator."""
    return EchoResult(message=args.message * args.repeat)
