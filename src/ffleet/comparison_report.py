"""`ffleet report --out DIR`: an HTML page and PNG charts comparing nodes x scenarios.

Built from stored job details only (what `GET /jobs/{id}` returns), so a report can be made at
any time after the runs. Repeats of one scenario on one node are one cell: its mean, its spread
(the sample standard deviation) and how many runs it holds, so a difference between nodes can be
told from run-to-run noise. The page embeds its charts, so the one file reads offline; the PNG
files are written beside it too. Every text it shows is escaped (scenarios and labels are input).
"""

from __future__ import annotations

import base64
import html
import io
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Detail = Mapping[str, Any]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _per_frame(metrics: Mapping[str, Any], *keys: str) -> float | None:
    frames = _number(metrics.get("frames"))
    parts = [_number(metrics.get(key)) for key in keys]
    if not frames or any(part is None for part in parts):
        return None
    return sum(part for part in parts if part is not None) / frames


# (key, heading, unit, how it is read from a result's metrics)
FIGURES: list[tuple[str, str, str, Callable[[Mapping[str, Any]], float | None]]] = [
    ("fps", "fps", "frames/s", lambda m: _number(m.get("fps"))),
    (
        "cpu_per_frame",
        "CPU-seconds per frame",
        "ms",
        lambda m: (
            None
            if (v := _per_frame(m, "cpu_user_seconds", "cpu_system_seconds")) is None
            else v * 1000
        ),
    ),
    (
        "energy_per_frame",
        "energy per frame",
        "J",
        lambda m: _per_frame(m, "energy_joules"),
    ),
    ("quality", "quality score", "", lambda m: _number(m.get("quality_score"))),
    (
        "kbps",
        "bitrate",
        "kbit/s",
        lambda m: None if (v := _number(m.get("bitrate_bps"))) is None else v / 1000,
    ),
]


@dataclass
class Cell:
    """Every completed run of one scenario on one node."""

    scenario: str
    node: str
    values: dict[str, list[float]] = field(default_factory=dict)
    builds: set[str] = field(default_factory=set)
    encoders: set[str] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)

    @property
    def runs(self) -> int:
        return max((len(v) for v in self.values.values()), default=0)

    def mean(self, key: str) -> float | None:
        values = self.values.get(key)
        return statistics.fmean(values) if values else None

    def spread(self, key: str) -> float | None:
        values = self.values.get(key) or []
        return statistics.stdev(values) if len(values) > 1 else None


def _inputs(job: Detail) -> str:
    parameters = job.get("parameters") or {}
    shown = {k: v for k, v in sorted(parameters.items()) if k not in ("quality", "output")}
    return ", ".join(f"{key}={value}" for key, value in shown.items()) or "defaults"


def cells(details: Sequence[Detail]) -> list[Cell]:
    """Completed jobs grouped by (scenario, node), in scenario then node order."""
    grouped: dict[tuple[str, str], Cell] = {}
    for job in details:
        result = job.get("result") or {}
        if job.get("status") != "completed" or result.get("status") != "completed":
            continue
        metrics = result.get("metrics") or {}
        node = str(job.get("node_id") or result.get("node_id") or "?")
        cell = grouped.setdefault((job["scenario"], node), Cell(job["scenario"], node))
        for key, _, _, read in FIGURES:
            value = read(metrics)
            if value is not None:
                cell.values.setdefault(key, []).append(value)
        cell.builds.add(str(metrics.get("ffmpeg_version") or "unknown"))
        cell.encoders.add(str(metrics.get("encoder") or "unknown"))
        cell.inputs.add(_inputs(job))
    return [grouped[key] for key in sorted(grouped)]


def _chart(found: Sequence[Cell], key: str, heading: str, unit: str) -> bytes | None:
    """Grouped bars: one group per scenario, one bar per node, the spread as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    scenarios = sorted({c.scenario for c in found})
    nodes = sorted({c.node for c in found})
    by_key = {(c.scenario, c.node): c for c in found}
    if not any(c.mean(key) is not None for c in found):
        return None
    figure, axes = pyplot.subplots(figsize=(max(6.0, 1.2 * len(scenarios) * len(nodes)), 4))
    width = 0.8 / len(nodes)
    for index, node in enumerate(nodes):
        cells_of_node = [by_key.get((scenario, node)) for scenario in scenarios]
        means = [(c.mean(key) if c else None) or 0.0 for c in cells_of_node]
        errors = [(c.spread(key) if c else None) or 0.0 for c in cells_of_node]
        positions = [s + index * width for s in range(len(scenarios))]
        axes.bar(positions, means, width, yerr=errors, capsize=3, label=node[:8])
    axes.set_xticks([s + 0.4 - width / 2 for s in range(len(scenarios))], scenarios, rotation=20)
    axes.set_ylabel(f"{heading} ({unit})" if unit else heading)
    axes.set_title(f"{heading} by scenario and node (mean, spread over repeats)")
    axes.legend(title="node")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue()


def _format(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _table(found: Sequence[Cell]) -> str:
    heads = ["scenario", "node", "runs"] + [f"{h} ({u})" if u else h for _, h, u, _ in FIGURES]
    heads += ["encoder", "FFmpeg build", "inputs"]
    rows = []
    for cell in found:
        figures = []
        for key, _, _, _ in FIGURES:
            mean, spread = cell.mean(key), cell.spread(key)
            shown = _format(mean) + ("" if spread is None else f" ± {_format(spread)}")
            figures.append(shown)
        texts = [cell.scenario, cell.node[:8], str(cell.runs), *figures]
        texts += [", ".join(sorted(s)) for s in (cell.encoders, cell.builds, cell.inputs)]
        rows.append("<tr>" + "".join(f"<td>{html.escape(t)}</td>" for t in texts) + "</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;font-size:90%}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    "th{background:#f0f0f0}img{max-width:100%;margin:1em 0}"
)


def write_report(details: Sequence[Detail], out: Path, title: str = "ffleet results") -> Path:
    """Write DIR/report.html and one PNG per figure measured; returns the HTML's path."""
    out.mkdir(parents=True, exist_ok=True)
    found = cells(details)
    charts = []
    for key, heading, unit, _ in FIGURES:
        png = _chart(found, key, heading, unit) if found else None
        if png is None:
            continue
        (out / f"{key}.png").write_bytes(png)
        data = base64.b64encode(png).decode()
        charts.append(f'<img alt="{html.escape(heading)}" src="data:image/png;base64,{data}">')
    runs = sum(cell.runs for cell in found)
    body = (
        f"<h1>{html.escape(title)}</h1>"
        f"<p>{runs} completed run(s) of {len({c.scenario for c in found})} scenario(s) on "
        f"{len({c.node for c in found})} node(s). Each cell: mean ± sample standard deviation "
        "over its repeats.</p>"
        + (_table(found) if found else "<p>No completed result matches.</p>")
        + "".join(charts)
    )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
