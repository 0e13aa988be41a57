"""`ffleet demo`: the whole system on one machine, with nothing to install or configure.

It runs the real pieces as real processes — `ffleet master` on SQLite and `ffleet agent`s in
explicitly acknowledged master-as-worker development mode — submits a small benchmark matrix,
shows live progress, and writes the results. What it prints is measured, not staged.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ffleet import report
from ffleet.client import FleetClient, MasterUnavailable
from ffleet.comparison_report import write_report
from ffleet.matrix import expand
from ffleet.states import FINISHED

MATRIX = {"resolutions": ["360p", "720p"], "codecs": ["h264", "h265", "vp9"]}
START_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 600.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "ffleet", *argv],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def _wait_for(what: str, check: Any, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.2)


def _progress_table(jobs: list[dict[str, Any]], started: float) -> Table:
    shown = Table(title=f"ffleet demo — {time.monotonic() - started:.0f} s")
    for column in ("scenario", "status", "node", "progress", "fps"):
        shown.add_column(column)
    for job in jobs:
        progress = job.get("progress") or {}
        percent, fps = progress.get("percent"), progress.get("fps")
        if job["status"] == "completed":
            percent = 100.0
        shown.add_row(
            job["scenario"],
            job["status"],
            (job.get("node_id") or "-")[:8],
            "-" if percent is None else f"{percent:.0f}%",
            "-" if fps is None else f"{fps:.0f}",
        )
    return shown


def run_demo(out: Path, *, agents: int, duration: float) -> int:
    """Returns the exit code: 0 when every job completed."""
    console = report.console()
    out.mkdir(parents=True, exist_ok=True)
    database = out / "demo.db"
    for stale in out.glob("demo.db*"):
        stale.unlink()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []
    client = FleetClient(url)
    console.print(f"[bold]master[/] {url} (store {database}); logs in {out}/")
    console.print(f"[bold]dashboard[/] {url}/ui while the demo runs")
    try:
        processes.append(
            _spawn(
                [
                    "master",
                    "--port",
                    str(port),
                    "--store",
                    f"sqlite:///{database}",
                    "--log-level",
                    "warning",
                ],
                out / "master.log",
            )
        )
        _wait_for("the master starting", lambda: _healthy(client))
        console.print(
            f"[yellow]starting {agents} local agent(s) on the master's machine "
            "(development mode: --allow-master-as-worker --yes)[/]"
        )
        for index in range(agents):
            processes.append(
                _spawn(
                    [
                        "agent",
                        "--register",
                        "--master",
                        url,
                        "--allow-master-as-worker",
                        "--yes",
                        "--heartbeat-interval",
                        "1s",
                        "--work-dir",
                        str(out / f"agent-{index}"),
                        "--label",
                        f"demo_agent={index}",
                    ],
                    out / f"agent-{index}.log",
                )
            )
        _wait_for(
            f"{agents} agent(s) registering",
            lambda: sum(n.status == "available" for n in client.nodes()) >= agents,
        )
        requests = expand({**MATRIX, "parameters": {"duration": duration}})
        submitted = [job.id for job in client.submit(requests)]
        console.print(f"submitted {len(submitted)} jobs: {', '.join(r.scenario for r in requests)}")
        details = _follow(client, submitted, console)
        rows = [report.row_for(detail) for detail in details]
        console.print(report.table(rows, title="Demo results (measured on this machine)"))
        report.write_csv(rows, out / "results.csv")
        report.write_json(details, out / "results.json")
        page = write_report(details, out / "report", title="ffleet demo (this machine)")
        console.print(f"wrote {out / 'results.csv'}, {out / 'results.json'} and {page}")
        return 0 if all(d["status"] == "completed" for d in details) else 1
    except (RuntimeError, MasterUnavailable) as exc:
        console.print(f"[red]demo failed: {exc}[/] (see the logs in {out}/)")
        return 2
    finally:
        _stop(processes)
        client.close()


def _healthy(client: FleetClient) -> bool:
    try:
        client.nodes()
    except MasterUnavailable:
        return False
    return True


def _follow(client: FleetClient, job_ids: list[str], console: Console) -> list[dict[str, Any]]:
    started = time.monotonic()
    details = [client.job(job_id) for job_id in job_ids]
    with Live(_progress_table(details, started), console=console, refresh_per_second=4) as live:
        while not all(d["status"] in FINISHED for d in details):
            if time.monotonic() - started > RUN_TIMEOUT_S:
                raise RuntimeError(f"jobs still unfinished after {RUN_TIMEOUT_S:g} s")
            time.sleep(0.5)
            details = [client.job(job_id) for job_id in job_ids]
            live.update(_progress_table(details, started))
    return details


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Agents first (they hand back unfinished work), then the master."""
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
