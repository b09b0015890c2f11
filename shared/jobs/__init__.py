"""Job persistence: every statement that creates, changes or reads jobs, and their hand-off to ARQ.

Where to look:

- `submit.py`: `create_jobs`, the one way a job comes into being (single, batch, idempotent,
  re-run, dead-letter retry, workflow step, cron): store, commit, enqueue, undo on a refused
  hand-off. Its INSERT statements and the undo are in `submit_sql.py`.
- `status_changes.py`: every statement that changes an existing job (claim, success, retry,
  failure, cancel, purge, progress, re-run links).
- `store.py`: reads (find, get, list, count). `operator_queries.py`: the operators' cross-tenant
  reads and the retention purge; `queue_stats.py`: queue depths from Redis.
- `control.py`: cancel, re-run and purge as a caller asks for them (a status change, then Redis).
- `enqueue.py`: the hand-off to ARQ; `rows.py`: the shapes a job row takes in code.

One style, two ways to run it. Statements are SQLAlchemy Core (no ORM unit of work on any
write), built once and cached, run in a session when they belong to a larger transaction (a
workflow, a re-run's link, a cancel). Only the hot paths run raw SQL on asyncpg, through
`raw_sql.fetch` on a connection of the engine's own pool: the API's submit (key check and
insert fused into one statement, `submit_sql.check_key_and_store`) and the worker's batched
claim and success (`status_changes.claim_jobs`, `record_successes`), where a session's greenlet
hops, BEGIN/COMMIT and ORM objects would cost more than the statement. Those build their text
from the table definitions (names only; every value is a bound parameter) and take one row as
plain parameters, several as arrays (`raw_sql.row_source`).
"""
