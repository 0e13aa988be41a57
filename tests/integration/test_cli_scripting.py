"""The CLI a scripting user expects: --version, --json wherever a command prints, ids as unique
prefixes (what the tables print), and `ffleet watch` leaving cleanly on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ffleet.results_export import read_export
from tests.integration.conftest import Fleet, MasterProcess, ffleet_executable, wait_until
from tests.integration.test_cli import ffleet

pytestmark = pytest.mark.integration


def finished_job(master: MasterProcess) -> tuple[str, str]:
    """A job completed through the API alone (a node claims it and reports a result)."""
    node = master.api.post("/nodes/register", json={"cpu_threads": 4, "slots": 1}).json()["id"]
    job = master.submit("360p-h264")["id"]
    claimed = master.api.get("/jobs/next", params={"node_id": node}).json()
    metrics = {"fps": 250.0, "wall_seconds": 1.5, "encoder": "libx264"}
    result = {"job_id": job, "node_id": node, "attempt": claimed["attempt"]}
    reply = master.api.post("/results", json={**result, "status": "completed", "metrics": metrics})
    assert reply.status_code == 200, reply.text
    return node, job


def node_lists(master: MasterProcess) -> float:
    """GET /nodes requests the master served (each redraw of `watch` makes one)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(master.api.get("/metrics").text)
        for sample in family.samples
        if sample.name == "ffleet_http_requests_total" and sample.labels["route"] == "/nodes"
    )


def as_json(code: int, out: str) -> Any:
    assert code == 0, out
    return json.loads(out)


def test_version_and_the_hardware_as_json() -> None:
    code, out = ffleet(None, "--version")
    assert code == 0 and out.startswith("ffleet ")
    hardware = as_json(*ffleet(None, "agent", "--json"))
    assert hardware["cpu_threads"] >= 1 and "libx264" in hardware["encoders"]


def test_every_printing_command_speaks_json_and_takes_short_ids(fleet: Fleet) -> None:
    master = fleet.master()
    node, job = finished_job(master)
    (row,) = as_json(*ffleet(master, "results", "--json"))
    assert row["job_id"] == job and row["fps"] == 250.0 and row["status"] == "completed"
    assert as_json(*ffleet(master, "job", job[:8]))["id"] == job
    assert as_json(*ffleet(master, "drain", node[:8], "--json"))["draining"] is True
    assert as_json(*ffleet(master, "drain", node[:8], "--undo", "--json"))["draining"] is False
    pending = master.submit("360p-h264")["id"]
    assert as_json(*ffleet(master, "cancel", pending[:8], "--json"))["status"] == "canceled"
    assert as_json(*ffleet(master, "retry", pending[:8], "--json"))["status"] == "pending"


def test_watch_shows_the_fleet_and_leaves_cleanly_on_ctrl_c(fleet: Fleet) -> None:
    master = fleet.master()
    node = master.api.post("/nodes/register", json={"cpu_threads": 4, "slots": 1}).json()["id"]
    job = master.submit("360p-h264")["id"]
    master.api.get("/jobs/next", params={"node_id": node})
    progress = {"job_id": job, "attempt": 1, "progress": {"percent": 40.0, "fps": 90.0}}
    master.api.post(f"/nodes/{node}/heartbeat", json={"jobs": [progress]}).raise_for_status()
    watching = subprocess.Popen(
        [ffleet_executable(), "watch", "--master", master.url, "--interval", "200ms"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_until(lambda: node_lists(master) >= 2, timeout=30, message="watch redrawing")
    watching.send_signal(signal.SIGINT)
    out, _ = watching.communicate(timeout=10)
    assert watching.returncode == 0, out
    assert "Traceback" not in out
    assert job[:8] in out and node[:8] in out and "360p-h264" in out and "40" in out


def test_report_compares_the_stored_results(fleet: Fleet, tmp_path: Path) -> None:
    master = fleet.master()
    finished_job(master)
    code, out = ffleet(master, "report", "--out", str(tmp_path / "report"), "--scenario", "360p")
    assert code == 0 and "report.html" in out, out
    shown = as_json(*ffleet(master, "report", "--out", str(tmp_path / "report"), "--json"))
    assert shown == {"report": str(tmp_path / "report" / "report.html"), "jobs": 1}
    page = (tmp_path / "report" / "report.html").read_text()
    assert "360p-h264" in page and "250" in page


def test_results_export_round_trips_and_deletes_only_what_it_exported(
    fleet: Fleet, tmp_path: Path
) -> None:
    master = fleet.master()
    _, first = finished_job(master)
    _, second = finished_job(master)
    waiting = master.submit("360p-h264")["id"]
    archive = tmp_path / "results.jsonl.gz"
    code, out = ffleet(master, "results", "export", "--out", str(archive), "--since", "2999-01-01")
    assert code == 0 and "exported 0" in out, out

    code, out = ffleet(master, "results", "export", "--out", str(archive), "--delete-exported")
    assert code == 0 and "exported 2" in out and "removed 2" in out, out
    assert [master.api.get(f"/jobs/{job}").status_code for job in (first, second)] == [404, 404]
    exported = list(read_export(archive))
    assert [detail["id"] for detail in exported] == [first, second]
    assert exported[0]["result"]["metrics"]["fps"] == 250.0
    assert exported[0]["attempts"][0]["outcome"] == "completed"
    assert master.job(waiting)["status"] == "pending"


def test_results_export_keeps_every_field_of_the_job_detail(fleet: Fleet, tmp_path: Path) -> None:
    master = fleet.master()
    _, job = finished_job(master)
    before = master.job(job)
    archive = tmp_path / "kept.jsonl.gz"
    code, out = ffleet(master, "results", "export", "--out", str(archive))
    assert code == 0, out
    assert list(read_export(archive)) == [before]
    summary = as_json(*ffleet(master, "results", "export", "--out", str(archive), "--json"))
    assert summary == {"file": str(archive), "exported": 1, "deleted": 0}
    code, out = ffleet(master, "results", "export", "--out", str(archive), "--format", "parquet")
    assert code != 0 and "pyarrow" in out
