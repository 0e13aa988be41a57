"""Results as a table: the same rows for the terminal, CSV and JSON, so what a user sees and
what they load into a spreadsheet never disagree."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ffleet.escaping import csv_cell, printable

# (column, where it comes from in metrics / analyzer_output, how to show it)
COLUMNS: list[tuple[str, str, str]] = [
    ("scenario", "job.scenario", "{}"),
    ("status", "job.status", "{}"),
    ("node", "job.node_id", "{:.8}"),
    ("wall_s", "metrics.wall_seconds", "{:.2f}"),
    ("fps", "metrics.fps", "{:.1f}"),
    ("speed", "metrics.speed", "{:.2f}"),
    ("cpu_s", "cpu_seconds", "{:.2f}"),
    ("cpu_pct", "metrics.cpu_utilization_percent", "{:.0f}"),
    ("rss_mib", "rss_mib", "{:.0f}"),
    ("output_kib", "output_kib", "{:.0f}"),
    ("kbps", "kbps", "{:.0f}"),
    ("realtime_x", "analysis.efficiency.realtime_factor", "{:.2f}"),
    ("quality", "quality", "{}"),
    ("energy_j", "metrics.energy_joules", "{:.1f}"),
    ("encoder", "metrics.encoder", "{}"),
    ("runs", "metrics.summary.wall_seconds.n", "{}"),
    ("wall_cv", "metrics.summary.wall_seconds.cv", "{:.1%}"),
    ("flags", "flags", "{}"),
    ("ffmpeg_sha256", "metrics.ffmpeg_sha256", "{:.12}"),
    ("error", "job.error", "{}"),
]
# The terminal shows the figures people compare; the files keep every column.
SHOWN = (
    "scenario",
    "status",
    "node",
    "wall_s",
    "fps",
    "speed",
    "cpu_s",
    "rss_mib",
    "kbps",
    "realtime_x",
    "quality",
    "energy_j",
    "wall_cv",
    "flags",
)


def console() -> Console:
    """A console that keeps the table readable when output goes to a file or pipe."""
    import sys

    return Console() if sys.stdout.isatty() else Console(width=160)


def _dig(value: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def row_for(job: Mapping[str, Any]) -> dict[str, Any]:
    """One flat row from a job detail (GET /jobs/{id}); unmeasured figures stay None."""
    result = job.get("result") or {}
    metrics = result.get("metrics") or {}
    source = {"job": job, "metrics": metrics, "analysis": result.get("analyzer_output") or {}}
    user, system = metrics.get("cpu_user_seconds"), metrics.get("cpu_system_seconds")
    rss, size, rate = (
        metrics.get("peak_rss_bytes"),
        metrics.get("output_bytes"),
        metrics.get("bitrate_bps"),
    )
    score = metrics.get("quality_score")
    flags = source["analysis"].get("flags")
    source.update(
        flags=",".join(flags) if flags else None,
        cpu_seconds=None if user is None or system is None else user + system,
        rss_mib=None if rss is None else rss / 2**20,
        output_kib=None if size is None else size / 1024,
        kbps=None if rate is None else rate / 1000,
        quality=None if score is None else f"{metrics.get('quality_metric')} {score:.3f}",
    )
    row = {"job_id": job.get("id")}
    for column, path, _ in COLUMNS:
        row[column] = _dig(source, path)
    return row


def table(rows: Sequence[Mapping[str, Any]], title: str = "Results") -> Table:
    shown = Table(title=title)
    styles = {column: style for column, _, style in COLUMNS if column in SHOWN}
    for column in styles:
        shown.add_column(column, overflow="fold")
    for row in rows:
        cells = []
        for column, style in styles.items():
            value = row.get(column)
            cells.append(Text("-" if value is None else printable(style.format(value))))
        shown.add_row(*cells)
    return shown


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["job_id", *(c for c, _, _ in COLUMNS)])
        writer.writeheader()
        writer.writerows({key: csv_cell(value) for key, value in row.items()} for row in rows)


def write_json(jobs: Sequence[Mapping[str, Any]], path: Path) -> None:
    """The full job details (every metric, attempts, analyzer output), not just the table."""
    path.write_text(json.dumps(list(jobs), indent=2) + "\n")
