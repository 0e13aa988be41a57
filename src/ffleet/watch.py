"""`ffleet watch`: a live table of the nodes and their running jobs, redrawn every interval.

Read through the same two calls as `ffleet nodes` and `ffleet jobs --status running`; the ETA is
the job's elapsed time scaled by the progress still to go, so it needs nothing the master does
not already store. Ctrl-C ends it cleanly (exit 0, the terminal restored).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table

from ffleet.client import FleetClient
from ffleet.durations import format_duration
from ffleet.models import Job, Node

RUNNING_LIMIT = 500  # running jobs shown at most (every slot of a large fleet)


def eta_s(job: Job, now: float) -> float | None:
    """Seconds left, from the elapsed time and the progress so far; None before any."""
    percent = job.progress.percent if job.progress is not None else None
    if not percent or job.started_at is None:
        return None
    elapsed = max(0.0, now - job.started_at)
    return elapsed * (100.0 - min(percent, 100.0)) / percent


def render(nodes: Sequence[Node], running: Sequence[Job], now: float) -> Group:
    fleet = Table(title=f"{len(nodes)} node(s)", expand=True)
    for column in ("node", "status", "running", "heartbeat", "labels"):
        fleet.add_column(column)
    for node in nodes:
        beat = node.last_heartbeat
        age = "-" if beat is None else format_duration(round(max(0.0, now - beat)))
        labels = ",".join(f"{key}={value}" for key, value in sorted(node.labels.items()))
        fleet.add_row(node.id[:8], node.status, str(len(node.running_job_ids)), age, labels)
    jobs = Table(title=f"{len(running)} running job(s)", expand=True)
    for column in ("job", "scenario", "node", "progress", "%", "fps", "eta"):
        jobs.add_column(column)
    for job in running:
        progress = job.progress
        percent = progress.percent if progress is not None else None
        fps = progress.fps if progress is not None else None
        left = eta_s(job, now)
        jobs.add_row(
            job.id[:8],
            job.scenario,
            (job.node_id or "-")[:8],
            ProgressBar(total=100, completed=percent or 0, width=30),
            "-" if percent is None else f"{percent:.0f}",
            "-" if fps is None else f"{fps:.1f}",
            "-" if left is None else format_duration(round(left)),
        )
    return Group(fleet, jobs)


def watch(client: FleetClient, interval_s: float) -> None:
    """Redraw until Ctrl-C."""
    from rich.live import Live

    from ffleet.report import console

    try:
        with Live(console=console(), auto_refresh=False, screen=False) as live:
            while True:
                running, _ = client.jobs("running", RUNNING_LIMIT, 0)
                live.update(render(client.nodes(), running, time.time()), refresh=True)
                time.sleep(interval_s)
    except KeyboardInterrupt:
        return
