"""Untrusted text shown safely: one log record is one line, a terminal gets no escapes, a
spreadsheet gets no formulas, and secrets in URLs are hidden."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ffleet import report
from ffleet.escaping import EscapingFilter, csv_cell, printable
from ffleet.redaction import redact_stream_key, redact_url


def test_control_characters_and_bidi_overrides_are_shown_escaped() -> None:
    assert printable("a\nb\x1b[31mc\x07\u202e") == "a\\x0ab\\x1b[31mc\\x07\\u202e"
    assert printable("plain text, ünïcode") == "plain text, ünïcode"


def test_a_log_record_with_a_newline_stays_one_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(EscapingFilter())
    logger = logging.getLogger("ffleet.test.escaping")
    logger.addHandler(handler)
    try:
        logger.warning("node %s registered", "evil\n2026-01-01 INFO forged line")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().count("\n") == 1 and "\\x0a2026" in stream.getvalue()


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x")', "+1", "-1+2", "@SUM(A1)"])
def test_csv_cells_that_a_spreadsheet_would_run_start_with_a_quote(cell: str) -> None:
    shown = csv_cell(cell)
    assert isinstance(shown, str) and shown.startswith("'")
    assert csv_cell(-1.5) == -1.5 and csv_cell("1080p-h264") == "1080p-h264"


def test_results_csv_holds_no_formula(tmp_path: Path) -> None:
    rows = [{"job_id": "j", "scenario": "=cmd|' /C calc'!A0", "error": "a\nb"}]
    path = tmp_path / "r.csv"
    report.write_csv(rows, path)
    with path.open() as handle:
        [row] = list(csv.DictReader(handle))
    assert row["scenario"].startswith("'=") and row["error"] == "a\\x0ab"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgress://u:p@ss@h/db", "postgress://u:***@h/db"),  # a mistyped scheme
        ("postgresql:/u:pw@h/db", "postgresql:***@h/db"),  # a mistyped //
        (
            "postgresql://h/db?password=pw&sslmode=require",
            "postgresql://h/db?password=***&sslmode=require",
        ),
        ("http://agent:pw@master:8080", "http://agent:***@master:8080"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///var/lib/ffleet.db", "sqlite:///var/lib/ffleet.db"),
    ],
)
def test_url_passwords_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_stream_key_is_redacted() -> None:
    assert redact_stream_key("rtmp://u:p@live.example/app/KEY") == "rtmp://live.example/app/***"
    assert redact_stream_key("null") == "null"


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """`ffleet master` configures logging onto the runner's stream, which closes after it."""
    handlers = list(logging.root.handlers)
    yield
    logging.root.handlers = handlers


@pytest.mark.usefixtures("cli_logging")
def test_a_mistyped_store_url_is_refused_without_its_password() -> None:
    from typer.testing import CliRunner

    from ffleet.cli import app

    outcome = CliRunner().invoke(app, ["master", "--store", "postgress://u:SECRET@h/db"])
    assert outcome.exit_code == 2 and "postgress://u:***@h/db" in outcome.output
    assert "SECRET" not in outcome.output


@pytest.mark.usefixtures("cli_logging")
def test_the_store_url_can_come_from_a_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ffleet.cli import app

    secret = tmp_path / "store"
    secret.write_text("postgress://u:SECRET@h/db\n")
    outcome = CliRunner().invoke(app, ["master", "--store-file", str(secret)])
    assert outcome.exit_code == 2 and "postgress://u:***@h/db" in outcome.output
    assert "SECRET" not in outcome.output


def test_tables_show_what_a_node_sent_without_its_escapes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`ffleet nodes` and `ffleet jobs` print what nodes and clients sent: no colour, cursor
    move or hyperlink in it may reach the terminal."""
    from ffleet.cli_support import show_table

    show_table("nodes", ("id", "cpu"), [("n1", "Xeon\x1b]8;;http://evil\x07[red]x[/red]\x1b[2J")])
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b]8;;http://evil\\x07[red]x[/red]\\x1b[2J" in shown.replace("\n", "")


def test_the_master_logs_its_store_url_without_the_password(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    import ffleet.master.app
    from ffleet.cli import app

    def run(server: uvicorn.Server, sockets: object = None) -> None:
        server.started = True

    monkeypatch.setattr(ffleet.master.app, "create_app", lambda settings: object())
    monkeypatch.setattr(uvicorn.Server, "run", run)
    store = "postgresql://u:SECRET@h/db?password=SECRET2"
    with caplog.at_level(logging.INFO, logger="ffleet.master"):
        outcome = CliRunner().invoke(app, ["master", "--store", store])
    assert outcome.exit_code == 0, outcome.output
    assert "(store postgresql://u:***@h/db?password=***)" in caplog.text
    assert "SECRET" not in caplog.text + outcome.output


def test_the_agent_logs_its_master_url_without_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ffleet.agent.master_link import Reachability

    link = Reachability("http://agent:SECRET@127.0.0.1:9/")
    with caplog.at_level(logging.INFO, logger="ffleet.agent.master_link"):
        link.failed(ConnectionError("refused"))
        link.ok()
    assert "http://agent:***@127.0.0.1:9/" in caplog.text and "SECRET" not in caplog.text
