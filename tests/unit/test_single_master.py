"""A second master on the same SQLite file is refused at start, with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffleet.cli import app as cli
from ffleet.master.single_master import hold_sqlite_file


def test_a_second_holder_of_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ffleet.db'}"
    first = hold_sqlite_file(url)
    assert first is not None
    try:
        with pytest.raises(ValueError, match="another ffleet master already serves"):
            hold_sqlite_file(url)
        other = hold_sqlite_file(f"sqlite:///{tmp_path / 'other.db'}")
        assert other is not None
        other.close()
    finally:
        first.close()
    again = hold_sqlite_file(url)  # free once the first holder is gone
    assert again is not None
    again.close()
    assert hold_sqlite_file("memory") is None
    assert hold_sqlite_file("postgresql:///ffleet") is None


def test_ffleet_master_refuses_a_file_another_master_serves(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ffleet.db'}"
    held = hold_sqlite_file(url)
    assert held is not None
    try:
        outcome = CliRunner().invoke(cli, ["master", "--store", url, "--port", "1"])
    finally:
        held.close()
    assert outcome.exit_code == 2
    assert "another ffleet master already serves" in " ".join(outcome.output.split())
