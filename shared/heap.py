"""The cyclic garbage collector, set for a long-running service process (gateway, worker)."""

from __future__ import annotations

import gc

YOUNG_COLLECTION_THRESHOLD = 10_000
"""Allocations between two young collections (CPython's default: 700)."""


def freeze_startup_heap() -> None:
    """Collect, then freeze what the process has built so far; collect the young less often.

    Call it once the process is set up. Everything built by then (modules, routes, pydantic
    validators, job bindings: over 100,000 objects) lives as long as the process; frozen, the
    collector stops walking it on every full collection, work that would grow with the process
    and not with its load. Collected first, so no garbage is pinned. Young collections walk the
    objects of the requests and jobs in flight, and one submit or job allocates enough to start
    one every few: the larger threshold runs them about 14 times less often (10,000 against 700),
    while what they walk stays bounded by the work in flight.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, 10, 10)
