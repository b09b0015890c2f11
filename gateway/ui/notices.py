"""One-line notices shown after an action, named in the redirect's query string.

Only these fixed texts (and a count) are ever shown: a crafted link cannot make the
dashboard display words of its choosing.
"""

from __future__ import annotations

from starlette.datastructures import QueryParams

NOTICES = {
    "cancelled": "Cancelled: the job will not run.",
    "cancel-requested": "Cancel requested: the worker stops the job within a moment.",
    "retried": "Re-run submitted as a new job.",
    "retried-many": "Re-runs submitted: {count}.",
    "retried-some": "Re-runs submitted: {count}; the queue is unavailable, the rest were not"
    " re-run. Try again shortly.",
    "conflict": "Nothing done: the job changed meanwhile (see its status).",
    "unavailable": "Nothing done: the queue is unavailable. Try again shortly.",
    "forbidden": "Your key lacks the scope this needs.",
    "rate-limited": "Nothing done: this would create jobs faster than your rate limit allows"
    " (a re-run counts as a submit). Try again shortly.",
    "submitted": "Submitted.",
    "queue-paused": "Queue paused: workers start none of its jobs until it is resumed.",
    "queue-resumed": "Queue resumed: its waiting jobs start now.",
    "unknown-queue": "Nothing done: no job type runs on that queue.",
}


def notice_of(params: QueryParams) -> str | None:
    """The notice a redirect asked for, if any."""
    template = NOTICES.get(params.get("notice", ""))
    if template is None:
        return None
    count = params.get("count", "0")
    return template.format(count=int(count) if count.isdigit() else 0)
