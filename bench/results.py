"""Every figure the bench measures, by name, and what became of each (a value or a reason)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Figure(StrEnum):
    """One measured number; the unit is in the name."""

    BARE_RPS = "bare_rps"
    BARE_P50_MS = "bare_p50_ms"
    BARE_P99_MS = "bare_p99_ms"
    BARE_RSS_MB = "bare_rss_mb"
    SUBMIT_RPS = "submit_rps"
    SUBMIT_P50_MS = "submit_p50_ms"
    SUBMIT_P99_MS = "submit_p99_ms"
    BATCH_JOBS_S = "batch_jobs_s"
    SCALE_SMALL_COST_MS = "scale_small_cost_ms"
    SCALE_LARGE_COST_MS = "scale_large_cost_ms"
    LIST_P50_MS = "list_p50_ms"
    DRAIN_JOBS_S = "drain_jobs_s"
    DRAIN_2PROC_JOBS_S = "drain_2proc_jobs_s"
    PICKUP_P50_MS = "pickup_p50_ms"
    PICKUP_P99_MS = "pickup_p99_ms"
    LONGPOLL_P50_MS = "longpoll_p50_ms"
    GATEWAY_RSS_MB = "gateway_rss_mb"
    WORKER_RSS_MB = "worker_rss_mb"
    ARQ_ENQUEUE_JOBS_S = "arq_enqueue_jobs_s"
    ARQ_DRAIN_SAME_JOBS_S = "arq_drain_same_jobs_s"
    ARQ_DRAIN_TUNED_JOBS_S = "arq_drain_tuned_jobs_s"
    ARQ_PICKUP_DEFAULT_P50_MS = "arq_pickup_default_p50_ms"
    ARQ_PICKUP_DEFAULT_P99_MS = "arq_pickup_default_p99_ms"
    ARQ_PICKUP_TUNED_P50_MS = "arq_pickup_tuned_p50_ms"
    ARQ_WORKER_RSS_MB = "arq_worker_rss_mb"
    CELERY_ENQUEUE_JOBS_S = "celery_enqueue_jobs_s"
    CELERY_DRAIN_JOBS_S = "celery_drain_jobs_s"
    CELERY_PICKUP_P50_MS = "celery_pickup_p50_ms"


@dataclass
class Results:
    """Figures measured so far, reasons for the ones that could not be, and footnotes."""

    values: dict[Figure, float] = field(default_factory=dict)
    missing: dict[Figure, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def record(self, figure: Figure, value: float) -> None:
        """Keep a measured value."""
        self.values[figure] = value
        self.missing.pop(figure, None)

    def miss(self, figures: Iterable[Figure], reason: str) -> None:
        """Say why these figures have no value (those already measured keep theirs)."""
        for figure in figures:
            if figure not in self.values:
                self.missing[figure] = reason

    def note(self, text: str) -> None:
        """A footnote printed under the table."""
        self.notes.append(text)
