"""The gateway's `/metrics`: HTTP metrics, job counters, and the job system's state at scrape time.

Counted here: jobs accepted (`jobgate_jobs_submitted_total`) and waiting jobs cancelled through
the API (`jobgate_jobs_cancelled_total`; workers count the running jobs they stop, under the
same name, so the sum over both is every cancellation, each once). Read from Redis at each
scrape, in four round trips and never per job: queue depths by priority and the age of each
line's head (`shared.jobs.queue_stats`), the workers alive with their jobs in flight
(`shared.presence`), the paused queues as workers see them (`shared.jobs.queue_pauses`), and
the jobs waiting for a concurrency key by type (`shared.jobs.key_waits`). The
gateway exposes these because it is the one process Prometheus always scrapes; workers expose
only what happens inside them.

Labels name job types, queues and priorities, never tenants or jobs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import structlog
from arq.connections import ArqRedis
from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Metric,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.types import ASGIApp

from gateway.deps import ResourcesDep
from shared.jobs.key_waits import waiting_counts
from shared.jobs.queue_pauses import mirrored_pauses
from shared.jobs.queue_stats import QueueStats, read_queue_stats
from shared.presence import WorkerPresence, alive_workers

log = structlog.get_logger("jobgate.gateway")


class GatewayMetrics:
    """The app's own registry (one per app, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs_submitted = Counter(
            "jobgate_jobs_submitted_total",
            "Jobs accepted, by job type.",
            ["job_type", "queue"],
            registry=self.registry,
        )
        self.jobs_cancelled = Counter(
            "jobgate_jobs_cancelled_total",
            "Jobs cancelled (the gateway counts waiting ones, workers running ones).",
            ["job_type", "queue"],
            registry=self.registry,
        )

    def install(
        self, app: FastAPI, queues: Sequence[str], *, keyed_types: Sequence[str] = ()
    ) -> None:
        """Instrument every route and serve `/metrics` (not in the OpenAPI document).

        `keyed_types`: the job types with a concurrency limit (their gauge reads 0, not absent).
        """
        # What `Instrumentator(registry=..., excluded_handlers=[...]).instrument(app)` adds,
        # with the route lookup remembered (see `_RouteMetricsMiddleware`).
        app.add_middleware(
            _RouteMetricsMiddleware, registry=self.registry, excluded_handlers=["/metrics"]
        )
        registry = self.registry

        @app.get("/metrics", include_in_schema=False)
        async def metrics(resources: ResourcesDep) -> Response:
            state = await _read_state(resources.redis, queues, keyed_types)
            body = generate_latest(registry) + generate_latest(state)
            return Response(body, media_type=CONTENT_TYPE_LATEST)


class _RouteMetricsMiddleware(PrometheusInstrumentatorMiddleware):
    """The instrumentator's middleware, remembering the handler of paths without parameters.

    It names each request's handler (the route template) by matching the path against every
    route in turn, on every request, the submits included. A path that is its own template
    (`/jobs/echo`, `/healthz`) gets the same answer every time, so that answer is kept; paths
    with parameters (`/jobs/{job_id}`) are matched each time, as keeping them would grow
    without bound.
    """

    def __init__(
        self, app: ASGIApp, *, registry: CollectorRegistry, excluded_handlers: Sequence[str]
    ) -> None:
        super().__init__(app, registry=registry, excluded_handlers=excluded_handlers)
        self._static_handlers: dict[tuple[str, str, str], tuple[str, bool]] = {}

    def _get_handler(self, request: Request) -> tuple[str, bool]:
        scope = request.scope
        key = (scope["method"], scope.get("root_path", ""), scope["path"])
        known = self._static_handlers.get(key)
        if known is not None:
            return known
        handler, is_templated = super()._get_handler(request)
        if is_templated and handler == scope["path"]:  # at most one entry per route and method
            self._static_handlers[key] = (handler, is_templated)
        return handler, is_templated


async def _read_state(
    redis: ArqRedis, queues: Sequence[str], keyed_types: Sequence[str]
) -> CollectorRegistry:
    """The job system's state as a throwaway registry; `jobgate_redis_up 0` if Redis failed."""
    state = CollectorRegistry(auto_describe=False)
    try:
        workers = await alive_workers(redis)
        served = {queue for worker in workers for queue in worker.queues}
        stats = await read_queue_stats(redis, sorted(set(queues) | served))
        paused = await mirrored_pauses(redis)
        waiting = await waiting_counts(redis)
    except (RedisError, OSError) as exc:
        log.warning("metrics.redis_unavailable", error=type(exc).__name__)
        state.register(_Families([_gauge("jobgate_redis_up", _REDIS_UP_HELP, 0)]))
        return state
    families = [
        _gauge("jobgate_redis_up", _REDIS_UP_HELP, 1),
        *_queue_families(stats),
        *_worker_families(workers, [depth.queue for depth in stats.depths]),
        _paused_family(paused, [depth.queue for depth in stats.depths]),
        _key_waiting_family(waiting, keyed_types),
    ]
    state.register(_Families(families))
    return state


_REDIS_UP_HELP = "1 if this scrape read queues and workers from Redis, else 0."


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _queue_families(stats: QueueStats) -> list[Metric]:
    depth = GaugeMetricFamily(
        "jobgate_queue_depth",
        "Jobs due and waiting on a queue, by priority (delayed jobs and retries not included).",
        labels=["queue", "priority"],
    )
    oldest = GaugeMetricFamily(
        "jobgate_queue_oldest_job_age_seconds",
        "How long the first job in line (queue, priority) has been due; 0 when empty.",
        labels=["queue", "priority"],
    )
    for line in stats.depths:
        depth.add_metric([line.queue, line.priority], line.depth)
        oldest.add_metric([line.queue, line.priority], line.oldest_age_seconds or 0.0)
    scheduled = GaugeMetricFamily(
        "jobgate_scheduled_jobs",
        "Delayed jobs and retries: `waiting` for their time, or `overdue` (due, not yet moved "
        "onto their queue; lasting only while no worker runs).",
        labels=["state"],
    )
    scheduled.add_metric(["waiting"], stats.scheduled_waiting)
    scheduled.add_metric(["overdue"], stats.scheduled_overdue)
    return [depth, oldest, scheduled]


def _worker_families(workers: list[WorkerPresence], queues: list[str]) -> list[Metric]:
    consumers = GaugeMetricFamily(
        "jobgate_queue_workers",
        "Live worker processes serving a queue.",
        labels=["queue"],
    )
    in_flight = GaugeMetricFamily(
        "jobgate_jobs_in_flight",
        "Jobs running now, by queue, as the live workers last announced.",
        labels=["queue"],
    )
    for queue in dict.fromkeys(queues):
        consumers.add_metric([queue], sum(queue in worker.queues for worker in workers))
        in_flight.add_metric([queue], sum(worker.in_flight.get(queue, 0) for worker in workers))
    alive = _gauge(
        "jobgate_workers_alive",
        "Worker processes whose announcement has not expired (see JOBGATE_WORKER_ANNOUNCE_*).",
        len(workers),
    )
    return [alive, consumers, in_flight]


def _key_waiting_family(waiting: dict[str, int], keyed_types: Sequence[str]) -> Metric:
    family = GaugeMetricFamily(
        "jobgate_concurrency_waiting",
        "Jobs waiting for a slot of their concurrency key (off their queue), by job type.",
        labels=["job_type"],
    )
    for job_type in sorted({*keyed_types, *waiting}):
        family.add_metric([job_type], waiting.get(job_type, 0))
    return family


def _paused_family(paused: set[str], queues: list[str]) -> Metric:
    family = GaugeMetricFamily(
        "jobgate_queue_paused",
        "1 while a queue is paused (workers start none of its jobs), else 0.",
        labels=["queue"],
    )
    for queue in dict.fromkeys([*queues, *sorted(paused)]):
        family.add_metric([queue], 1 if queue in paused else 0)
    return family
