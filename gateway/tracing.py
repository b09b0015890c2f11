"""The gateway's request spans: FastAPI's own telemetry, on only while jobgate's tracing is on.

FastAPI makes one SERVER span per request (named `METHOD /route/{template}`), continuing the
caller's context read with OpenTelemetry's global propagator (W3C `traceparent`/`tracestate`
and baggage unless `OTEL_PROPAGATORS` says otherwise). It is the outermost layer, so the span
is current for everything inside, the submit span and every log line included.

It is configured explicitly either way: left to its defaults, FastAPI would trace as soon as
anything in the process set a global tracer provider, and would add exporters of its own from
`FASTAPI_OTEL_AUTO_CONFIGURE`. Off, it costs one boolean test per request.
"""

from __future__ import annotations

from fastapi.telemetry import TelemetryConfig

from shared import tracing

# HTTP metrics are Prometheus's (`/metrics`); logs are structlog's.
_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "auto_configure": False,
}


def telemetry_config() -> TelemetryConfig:
    """`FastAPI(telemetry=...)`: request spans through jobgate's provider, or nothing."""
    provider = tracing.tracer_provider()
    if provider is None:
        return _OFF
    return {**_OFF, "tracing": True, "tracer_provider": provider}
