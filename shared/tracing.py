"""OpenTelemetry tracing, off unless `JOBGATE_TRACING` is set.

Off, nothing here makes a span or reads a header: `current_traceparent()` answers None, the
gateway installs no middleware (`gateway.tracing`) and a job run only binds its log fields.

On, each process has one tracer provider, also installed as OpenTelemetry's global one so that
spans made by job code and by instrumented libraries land in the same traces. The exporter is
`JOBGATE_TRACING_EXPORTER` (`otlp`: the standard `OTEL_EXPORTER_OTLP_*` variables say where;
`console`; `none`: spans only give log lines and `traceparent`s their ids); `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES` and `OTEL_TRACES_SAMPLER` are honoured by the SDK itself.

A job's trace crosses the queue in its row: the submit stores the W3C `traceparent` of its
span (`job.traceparent`), and every attempt's run span is a child of it (`continue_trace`), also
after the reconciler re-enqueues the job, since the row is the source of truth.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from shared.settings import Settings

TRACER_NAME = "jobgate"
TRACEPARENT = "traceparent"
# The column holds exactly a W3C traceparent, whatever OTEL_PROPAGATORS says for HTTP.
_W3C = TraceContextTextMapPropagator()
_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()


@dataclass(frozen=True)
class _Pipeline:
    provider: TracerProvider
    exporter: str


_pipeline: _Pipeline | None = None
"""The provider made by the first `configure_tracing` with tracing on; kept for the process."""
_tracer: Tracer | None = None
"""None while tracing is off: the one thing every hot-path function here checks first."""


def configure_tracing(settings: Settings, *, service_name: str) -> None:
    """Turn tracing on or off for this process, as `settings` say; safe to call again.

    Gateway and worker call it at start; a worker process serving several queues calls it once
    per queue, and gets the same provider each time.
    """
    global _pipeline, _tracer
    if not settings.tracing:
        _tracer = None
        return
    if _pipeline is None or _pipeline.exporter != settings.tracing_exporter:
        provider = TracerProvider(resource=_resource(service_name))
        exporter = _exporter(settings.tracing_exporter)
        if exporter is not None:
            provider.add_span_processor(_processor(settings.tracing_exporter, exporter))
        if _pipeline is None:  # OpenTelemetry's global provider can be set once per process
            trace.set_tracer_provider(provider)
        _pipeline = _Pipeline(provider=provider, exporter=settings.tracing_exporter)
    _tracer = _pipeline.provider.get_tracer(TRACER_NAME)


def _resource(service_name: str) -> Resource:
    """The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), named if unnamed."""
    detected = Resource.create()
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return detected.merge(Resource({SERVICE_NAME: service_name}))
    return detected


def _exporter(name: str) -> SpanExporter | None:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        # Imported only when used: it pulls in protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_* variables
    return None


def _processor(name: str, exporter: SpanExporter) -> SimpleSpanProcessor | BatchSpanProcessor:
    # Console spans are for a developer watching: print each as it ends.
    return SimpleSpanProcessor(exporter) if name == "console" else BatchSpanProcessor(exporter)


def tracer() -> Tracer | None:
    """jobgate's tracer while tracing is on, else None."""
    return _tracer


def tracer_provider() -> TracerProvider | None:
    """The provider spans go through while tracing is on (tests add their exporters to it)."""
    return _pipeline.provider if _tracer is not None and _pipeline is not None else None


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, to store with a job; None if tracing is off."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get(TRACEPARENT)


def submit_span(job_name: str, *, count: int = 1) -> AbstractContextManager[object]:
    """The span of one submit, around storing and enqueueing its jobs (nothing if off)."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(
        f"submit {job_name}",
        kind=SpanKind.PRODUCER,
        attributes={"jobgate.job.name": job_name, "jobgate.job.count": count},
    )


@contextlib.contextmanager
def continue_trace(
    name: str,
    traceparent: str | None,
    *,
    kind: SpanKind,
    attributes: Mapping[str, AttributeValue],
) -> Iterator[Span | None]:
    """A current span, child of a stored `traceparent` (a new trace without one); None if off.

    Exceptions are recorded on it and re-raised; a cancellation (an abort, a shutdown) is not
    an error of the span, only an ending.
    """
    if _tracer is None:
        yield None
        return
    # No stored parent: a trace of its own, not a child of whatever happens to be current.
    parent = _W3C.extract({TRACEPARENT: traceparent}) if traceparent else Context()
    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
            raise


def add_trace_ids(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """structlog processor: the current span's `trace_id` and `span_id`, as tracers show them."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(context.span_id))
    return event_dict
