"""Registers `tests.choice_jobs`'s job type in worker processes (`JOBGATE_CONTRACT_MODULES`);
the test process itself registers it per test (`declared`), never by importing this."""

from shared.contracts import REGISTRY
from tests.choice_jobs import UPSTREAM_CALL

REGISTRY.register(UPSTREAM_CALL)
