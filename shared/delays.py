"""How far ahead a job may be set to run, whoever sets it: a submit's delay or `run_at`, or the
retry delay job code chooses (`RetryableJobError(delay_seconds=...)`)."""

MAX_DELAY_SECONDS = 366 * 24 * 3600
"""A year, leap day included. Further ahead is a mistake of units (milliseconds given as
seconds), not a plan, and would hold a job row and its queue entry for nothing."""
