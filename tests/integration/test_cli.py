"""The user's commands against a real master process, and the demo end to end."""

from __future__ import annotations

import csv
import http.client
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from ffleet.cli import app
from ffleet.cli_support import Seconds
from tests.integration.conftest import Fleet, MasterProcess, ffleet_executable, free_port

pytestmark = pytest.mark.integration
runner = CliRunner()


def ffleet(master: MasterProcess | None, *args: str) -> tuple[int, str]:
    extra = ["--master", master.url] if master is not None else []
    outcome = runner.invoke(app, [*args, *extra])
    return outcome.exit_code, outcome.output


def test_submit_list_show_cancel_retry(fleet: Fleet) -> None:
    master = fleet.master()
    code, out = ffleet(master, "submit", "720p-h265", "--param", "duration=3", "--count", "2")
    assert code == 0, out
    ids = [line.split()[0] for line in out.splitlines() if "pending" in line]
    assert len(ids) == 2
    detail = master.job(ids[0])
    assert detail["parameters"] == {"duration": 3} and detail["scenario"] == "720p-h265"

    code, out = ffleet(master, "jobs", "--status", "pending", "--json")
    assert code == 0 and {job["id"] for job in json.loads(out)} == set(ids)
    code, out = ffleet(master, "job", ids[0])
    assert code == 0 and json.loads(out)["attempts"] == []
    code, out = ffleet(master, "cancel", ids[0])
    assert code == 0 and "canceled" in out
    code, out = ffleet(master, "retry", ids[0])
    assert code == 0 and "pending" in out
    assert master.job(ids[0])["status"] == "pending"


def test_submit_matrix_and_requirements(fleet: Fleet, tmp_path: Path) -> None:
    master = fleet.master()
    matrix = tmp_path / "bench.yaml"
    matrix.write_text("resolutions: [360p, 720p]\ncodecs: [h264, vp9]\nparameters: {duration: 1}\n")
    code, out = ffleet(master, "submit", "--matrix", str(matrix))
    assert code == 0, out
    assert master.api.get("/jobs").json()["count"] == 4

    code, out = ffleet(master, "submit", "1080p-h264", "--require-gpu")
    assert code == 0 and "no node is registered yet" in out
    gpu_job = master.api.get("/jobs").json()["jobs"][-1]["id"]
    code, out = ffleet(master, "explain", gpu_job[:8])
    assert code == 0 and "pending: no node is registered yet" in out, out
    code, out = ffleet(master, "explain", gpu_job, "--json")
    assert code == 0 and json.loads(out)["nodes"] == [], out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "720p-h264-vp9"], "codec"),
        (["submit", "720p", "--param", "duration"], "KEY=VALUE"),
        (["submit", "720p", "--param", "duration=-1"], "duration"),
        (["submit"], "SCENARIO or --matrix"),
        (["job", "no-such-job"], "not found"),
        (["cancel", "no-such-job"], "not found"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(
    fleet: Fleet, args: list[str], message: str
) -> None:
    master = fleet.master()
    code, out = ffleet(master, *args)
    assert code != 0 and message in out, out
    assert master.api.get("/jobs").json()["count"] == 0


def test_unreachable_master_is_reported() -> None:
    outcome = runner.invoke(app, ["jobs", "--master", f"http://127.0.0.1:{free_port()}"])
    assert outcome.exit_code == 2 and "cannot reach the master" in outcome.output


def test_nodes_and_drain(fleet: Fleet) -> None:
    master = fleet.master()
    node_id = master.api.post("/nodes/register", json={"cpu_threads": 4}).json()["id"]
    code, out = ffleet(master, "nodes", "--json")
    assert code == 0 and json.loads(out)[0]["id"] == node_id
    code, out = ffleet(master, "drain", node_id)
    assert code == 0 and "draining" in out
    code, out = ffleet(master, "drain", node_id, "--undo")
    assert code == 0 and "available" in out


def every_option() -> list[tuple[str, TyperOption]]:
    """(command, option) for every option of every command, read from the app itself."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    return [
        (name, param)
        for name, command in sorted(group.commands.items())
        for param in command.params
        if isinstance(param, TyperOption) and param.name != "help"
    ]


def twin_of(option: TyperOption) -> str:
    """--heartbeat-interval has FFLEET_HEARTBEAT_INTERVAL: one name, whichever command uses it."""
    flag = max(option.opts, key=len)
    return "FFLEET_" + flag.removeprefix("--").replace("-", "_").upper()


def test_every_flag_of_every_command_has_its_twin_in_help() -> None:
    options = every_option()
    assert {"--keep-alive", "--long-poll", "--max-wait", "--priority"} <= {
        opt for _, option in options for opt in option.opts
    }
    helps: dict[str, str] = {}
    for command, option in options:
        if command not in helps:
            outcome = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"})
            assert outcome.exit_code == 0, outcome.output
            helps[command] = outcome.output
        twin = twin_of(option)
        assert option.envvar == twin, f"{command} {option.opts}: {option.envvar!r}"
        assert twin in helps[command], f"{command} --help does not show {twin}"
        assert max(option.opts, key=len) in helps[command]


def test_readme_documents_every_master_and_agent_flag_with_its_default() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `--")]
    for command, option in every_option():
        if command not in ("master", "agent"):
            continue
        flag = max(option.opts, key=len)
        # The flag's whole name: `--ca` is not `--cache-bytes`.
        named = re.compile(rf"`{re.escape(flag)}[` ]")
        [row] = [row for row in rows if named.search(row.split("|")[1])]
        if isinstance(option.default, Seconds):
            assert str(option.default) in row.split("|")[2], f"{flag}: README says {row!r}"


def test_a_connection_idle_past_five_seconds_still_serves(fleet: Fleet) -> None:
    """uvicorn closes an idle connection after 5 s by default, and a client that reuses it
    at that moment gets a reset; the master keeps idle connections far longer."""
    master = fleet.master()
    connection = http.client.HTTPConnection("127.0.0.1", master.port, timeout=10)

    def healthy() -> tuple[str, int]:
        """Asks once; returns the client end of the connection that answered."""
        connection.request("GET", "/health")
        response = connection.getresponse()
        assert response.status == 200 and b"healthy" in response.read()
        assert connection.sock is not None
        end: tuple[str, int] = connection.sock.getsockname()
        return end

    try:
        first = healthy()
        time.sleep(5.5)
        assert healthy() == first  # answered on the same connection, not a new one
    finally:
        connection.close()


def test_demo_runs_a_real_matrix_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    completed = subprocess.run(
        [ffleet_executable(), "demo", "--out", str(out), "--agents", "1", "--duration", "0.5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {row["status"] for row in rows} == {"completed"}
    assert all(float(row["fps"]) > 0 and float(row["cpu_s"]) > 0 for row in rows)
    details = json.loads((out / "results.json").read_text())
    assert all(d["result"]["metrics"]["frames"] == 15 for d in details)
    page = (out / "report" / "report.html").read_text()
    assert all(d["scenario"] in page for d in details) and (out / "report" / "fps.png").exists()
