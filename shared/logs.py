"""structlog set-up: console lines in development, JSON lines in production.

Context is bound with structlog's contextvars, so it reaches every line, the standard library's
too (job code using `logging`): `request_id` for the whole of a request (`gateway.middleware`),
`job_id`, `tenant_id`, `job_name`, `attempt` for the whole of a job's run, hooks included
(`worker.job_observation`); with tracing on, also the current span's `trace_id` and `span_id`.
Job args, keys and tokens are never logged.
"""

from __future__ import annotations

import logging

import structlog

from shared.settings import Settings
from shared.tracing import add_trace_ids


def configure_logging(settings: Settings) -> None:
    """Route structlog and the standard library's loggers through one renderer."""
    level = logging.getLevelName(settings.log_level.upper())
    # Tracebacks without locals: Rich's, the console default, prints every frame's variables,
    # and those hold API keys, tokens and job args.
    renderers: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if settings.log_json
        else [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Trace ids are added at format time, in the emitting task (the span is current there), and
    # in the formatter rather than the chain above, which loggers cache on first use.
    trace_ids: list[structlog.types.Processor] = [add_trace_ids] if settings.tracing else []
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *trace_ids,
                *renderers,
            ],
        )
    )
    # What no renderer here prints, records need not gather: the caller's frame, the thread
    # and the process (the Python docs' "Optimization" settings). That halves a line's cost,
    # and a busy worker writes one per job.
    logging._srcfile = None  # a documented switch, with no public setter
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn prints its own lines (start-up, an app's crash) through a handler of its own: send
    # them through this one, so a JSON deployment writes only JSON. (Its access log is left as
    # `--no-access-log` or `--access-log` set it.)
    uvicorn = logging.getLogger("uvicorn")
    uvicorn.handlers.clear()
    uvicorn.propagate = True
    # ARQ logs each job's repr (its kwargs) at INFO; jobgate logs its own lines without args.
    # ARQ's command line gives its logger a handler of its own: one handler, one copy a line.
    arq = logging.getLogger("arq")
    arq.handlers.clear()
    arq.propagate = True
    arq.setLevel(max(level, logging.WARNING))
