"""Registers `tests.keyed_jobs`'s types: for worker processes only (`JOBGATE_CONTRACT_MODULES`).

The test process itself never imports it: the registry is global, and other tests list its
types (they use `declared(*KEYED_TYPES)` for one test instead).
"""

from __future__ import annotations

from shared.contracts import REGISTRY
from tests.keyed_jobs import KEYED_TYPES

for _job_type in KEYED_TYPES:
    REGISTRY.register(_job_type)
