"""`python -m cli`: the `jobgate` command, run from a checkout or by a process jobgate spawns."""

from cli.main import app

app(prog_name="jobgate")
