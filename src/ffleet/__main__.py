"""`python -m ffleet` is the `ffleet` command."""

from ffleet.cli import app

app(prog_name="ffleet")
