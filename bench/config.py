"""How big each load is: the defaults (a few minutes on 2 cores) and `--quick` (a smoke run)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Sizes:
    """Every size and duration the bench uses; `--<name>` on the command line overrides one."""

    submit_seconds: float = 10.0
    """Measured seconds of single submits, per system, split over `submit_rounds`."""
    submit_rounds: int = 3
    """Bare endpoint and jobgate take turns this many times (each load after a warm-up), so a
    drift in the machine's speed weighs on both alike."""
    warmup_seconds: float = 1.0
    submit_connections: int = 50
    batch_seconds: float = 5.0
    batch_connections: int = 8
    batch_size: int = 100
    scale_small_rows: int = 1_000
    scale_large_rows: int = 100_000
    scale_seconds: float = 5.0
    list_seconds: float = 3.0
    drain_jobs: int = 20_000
    """Jobs in each end-to-end drain (jobgate, raw ARQ tuned)."""
    drain_untuned_jobs: int = 1_000
    """Jobs for raw ARQ at its default poll delay, where it drains slowly: keep it small."""
    drain_deadline_seconds: float = 60.0
    """A drain still running then is reported from the jobs done so far."""
    enqueue_jobs: int = 10_000
    celery_enqueue_jobs: int = 3_000
    celery_drain_jobs: int = 5_000
    pickup_samples: int = 100
    """jobgate's pickup samples: enough for a steady median and a p99 that is not the maximum."""
    baseline_pickup_samples: int = 25
    """Raw ARQ's and Celery's (at ARQ's default poll delay a sample costs about half a second)."""
    longpoll_samples: int = 25


QUICK = Sizes(
    submit_seconds=1.0,
    submit_rounds=1,
    warmup_seconds=0.3,
    submit_connections=10,
    batch_seconds=1.0,
    batch_connections=2,
    batch_size=20,
    scale_small_rows=100,
    scale_large_rows=1_000,
    scale_seconds=0.5,
    list_seconds=0.5,
    drain_jobs=100,
    drain_untuned_jobs=20,
    drain_deadline_seconds=20.0,
    enqueue_jobs=200,
    celery_enqueue_jobs=100,
    celery_drain_jobs=200,
    pickup_samples=3,
    baseline_pickup_samples=3,
    longpoll_samples=3,
)


def size_fields() -> list[tuple[str, type]]:
    """(name, type) of every size, for the command line."""
    return [(field.name, type(getattr(Sizes(), field.name))) for field in fields(Sizes)]


def with_overrides(sizes: Sizes, overrides: dict[str, Any]) -> Sizes:
    """`sizes` with the given fields replaced (None values are ignored)."""
    return replace(sizes, **{name: value for name, value in overrides.items() if value is not None})


def describe(sizes: Sizes) -> str:
    """The sizes that shape the figures, in one line."""
    return (
        f"submit {sizes.submit_seconds:g} s at {sizes.submit_connections} connections in "
        f"{sizes.submit_rounds} alternating rounds; "
        f"batches of {sizes.batch_size} at {sizes.batch_connections} connections; "
        f"scaling {sizes.scale_small_rows:,} vs {sizes.scale_large_rows:,} rows; "
        f"drain {sizes.drain_jobs:,} jobs (raw ARQ untuned {sizes.drain_untuned_jobs:,}, "
        f"Celery {sizes.celery_drain_jobs:,}); {sizes.pickup_samples} pickup samples "
        f"({sizes.baseline_pickup_samples} for each baseline) and "
        f"{sizes.longpoll_samples} long-poll samples"
    )
