"""Baselines measured in the same run: a bare endpoint, raw ARQ and Celery."""
