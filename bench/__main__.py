"""`python -m bench`: measure jobgate against its baselines and print one table.

    python -m bench                 # the full run, a few minutes on 2 cores
    python -m bench --quick         # tiny sizes: a smoke run, targets not meaningful
    python -m bench --skip-celery --drain-jobs 5000 --results bench/RESULTS.md

Servers: JOBGATE_BENCH_DATABASE_URL (a PostgreSQL server; the bench creates and drops its own
database there) and JOBGATE_BENCH_REDIS_URL (a Redis database it flushes); unset, the local
defaults, else embedded servers. Exit status: 0, or 2 if a stage failed, or 1 with `--strict`
when a target was missed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from bench.config import QUICK, Sizes, describe, size_fields, with_overrides
from bench.report import DOCS_PAGE, render_table, update_table_copy, verdicts, write_results
from bench.suite import run_suite

REPOSITORY_RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="Tiny sizes (a smoke run).")
    parser.add_argument("--skip-celery", action="store_true", help="Leave out the Celery baseline.")
    parser.add_argument("--database-name", default="jobgate_bench", help="Created, then dropped.")
    parser.add_argument("--results", type=Path, help="Also write the table here (RESULTS.md).")
    parser.add_argument("--strict", action="store_true", help="Exit 1 if a target is missed.")
    sizes = parser.add_argument_group("sizes (defaults: the full run, or --quick)")
    for name, kind in size_fields():
        sizes.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, metavar="N")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the bench; returns the exit status."""
    arguments = sys.argv[1:] if argv is None else argv
    options = _parser().parse_args(arguments)
    base = QUICK if options.quick else Sizes()
    sizes = with_overrides(base, {name: getattr(options, name) for name, _ in size_fields()})
    results = uvloop.run(
        run_suite(
            sizes,
            database_name=options.database_name,
            skip_celery="--skip-celery" if options.skip_celery else None,
        )
    )
    table = render_table(results)
    print(table, flush=True)
    if options.results:
        command = shlex.join(["python", "-m", "bench", *arguments])
        write_results(options.results, table, command=command, sizes=describe(sizes))
        if options.results.resolve() == REPOSITORY_RESULTS:  # not a smoke run's scratch file
            when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            update_table_copy(DOCS_PAGE, table, when=when)
    if any(reason.startswith("error") for reason in results.missing.values()):
        return 2
    return 1 if options.strict and "missed" in verdicts(results) else 0


if __name__ == "__main__":
    sys.exit(main())
