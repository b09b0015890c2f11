"""Charts as inline SVG, laid out here and drawn by the template: no chart library, no script.

The overview's one chart is a stacked bar per time bucket; a server that already has the
counts can place a dozen rectangles more cheaply than a browser can download a chart library,
and the page stays readable without JavaScript and to screen readers (the numbers are in the
SVG's title and a table beside it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.ui.queries import ThroughputBucket

WIDTH = 360
HEIGHT = 150
AXIS_HEIGHT = 18
GAP = 4


@dataclass(frozen=True)
class Segment:
    """One outcome's part of a bar."""

    outcome: str
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    label: str
    title: str
    segments: list[Segment]
    bucket: ThroughputBucket


@dataclass(frozen=True)
class ThroughputChart:
    width: int
    height: int
    plot_height: int
    bars: list[Bar]
    peak: int
    finished: int
    failed: int

    @property
    def failure_rate(self) -> float | None:
        """Failed among the jobs that finished (None when none did)."""
        return None if self.finished == 0 else self.failed / self.finished


def throughput_chart(buckets: Sequence[ThroughputBucket]) -> ThroughputChart:
    """Stacked bars (succeeded, failed, cancelled, expired) per bucket, scaled to the busiest."""
    plot_height = HEIGHT - AXIS_HEIGHT
    peak = max((bucket.total for bucket in buckets), default=0)
    slot = WIDTH / max(len(buckets), 1)
    bars = []
    for index, bucket in enumerate(buckets):
        bottom = float(plot_height)
        segments = []
        for outcome, count in (
            ("succeeded", bucket.succeeded),
            ("failed", bucket.failed),
            ("cancelled", bucket.cancelled),
            ("expired", bucket.expired),
        ):
            height = 0.0 if peak == 0 else count / peak * (plot_height - 4)
            bottom -= height
            if count:
                segments.append(Segment(outcome, round(bottom, 1), round(height, 1)))
        label = bucket.start.strftime("%H:%M")
        title = (
            f"{label} UTC: {bucket.succeeded} succeeded, {bucket.failed} failed,"
            f" {bucket.cancelled} cancelled, {bucket.expired} expired"
        )
        bars.append(
            Bar(
                x=round(index * slot + GAP / 2, 1),
                width=round(slot - GAP, 1),
                label=label,
                title=title,
                segments=segments,
                bucket=bucket,
            )
        )
    return ThroughputChart(
        width=WIDTH,
        height=HEIGHT,
        plot_height=plot_height,
        bars=bars,
        peak=peak,
        finished=sum(bucket.total for bucket in buckets),
        failed=sum(bucket.failed for bucket in buckets),
    )
