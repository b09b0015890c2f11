"""`RetryableJobError(delay_seconds=...)`: the delay job code chooses, checked where it is made."""

from __future__ import annotations

import math

import pytest

from shared.delays import MAX_DELAY_SECONDS
from shared.errors import CircuitOpenError, RetryableJobError


class TestDelaySeconds:
    def test_none_by_default_so_the_backoff_applies(self) -> None:
        error = RetryableJobError("busy")
        assert (error.message, error.delay_seconds) == ("busy", None)
        assert (
            RetryableJobError().message
            == "The job failed in a way that may succeed if tried again."
        )

    @pytest.mark.parametrize("given", [0, 30, 2.5, MAX_DELAY_SECONDS])
    def test_a_delay_in_range_is_kept_as_float_seconds(self, given: float) -> None:
        error = RetryableJobError("busy", delay_seconds=given)
        assert error.delay_seconds == float(given)
        assert isinstance(error.delay_seconds, float)

    @pytest.mark.parametrize(
        "given", [-1, -0.001, MAX_DELAY_SECONDS + 1, math.inf, -math.inf, math.nan]
    )
    def test_a_delay_out_of_range_or_not_finite_is_refused(self, given: float) -> None:
        with pytest.raises(ValueError, match=r"delay_seconds must be from 0 to 31622400"):
            RetryableJobError("busy", delay_seconds=given)

    @pytest.mark.parametrize("given", [True, False, "30", [30]])
    def test_a_delay_that_is_not_a_number_is_refused(self, given: object) -> None:
        with pytest.raises(TypeError, match="delay_seconds must be a number of seconds"):
            RetryableJobError("busy", delay_seconds=given)  # type: ignore[arg-type]

    def test_a_circuit_breakers_refusal_chooses_no_delay(self) -> None:
        """Its wait is a floor under the backoff (`retry_after_seconds`), not a chosen delay."""
        error = CircuitOpenError("open", retry_after_seconds=5)
        assert (error.delay_seconds, error.retry_after_seconds) == (None, 5)
