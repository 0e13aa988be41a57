"""Chart geometry for the results page, drawn as inline SVG by the templates.

Computed here so the templates only place numbers, and drawn on the server so the page needs
no chart library and no script (nothing for a Content-Security-Policy to allow).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ffleet.comparison import FIGURES, ComparisonRow

WIDTH = 640
LABEL_W = 200  # the row labels' column; bars start after it
PLOT_W = WIDTH - LABEL_W - 160  # room on the right for the value text
ROW_H = 22
SCATTER_H = 260
MARGIN = 40


@dataclass(frozen=True)
class Bar:
    label: str
    y: float
    width: float
    low: float  # the whisker: mean - spread .. mean + spread, in pixels from the plot's left
    high: float
    text: str


@dataclass(frozen=True)
class BarChart:
    figure: str
    unit: str
    height: float
    plot_x: float
    bars: list[Bar]


@dataclass(frozen=True)
class Point:
    label: str
    x: float
    y: float
    text: str

    @property
    def anchor(self) -> str:
        """Labels of points in the right half read leftwards, so they stay inside the chart."""
        return "end" if self.x > WIDTH / 2 else "start"


@dataclass(frozen=True)
class Scatter:
    height: float
    width: float
    points: list[Point]
    x_max: float
    y_min: float
    y_max: float


def row_label(row: ComparisonRow, names: dict[str, str]) -> str:
    return f"{row.scenario} @ {names.get(row.node_id, row.node_id[:8])}"


def bar_chart(figure: str, rows: Sequence[ComparisonRow], names: dict[str, str]) -> BarChart | None:
    """One bar per node x scenario with a whisker of ± one spread; None if nothing measured."""
    measured = [(row, row.figures[figure]) for row in rows if row.figures[figure] is not None]
    if not measured:
        return None
    top = max(s.mean + s.spread for _, s in measured if s is not None) or 1.0
    scale = PLOT_W / top
    bars = []
    for index, (row, value) in enumerate(measured):
        assert value is not None
        bars.append(
            Bar(
                label=row_label(row, names),
                y=index * ROW_H + 4,
                width=value.mean * scale,
                low=max(0.0, value.mean - value.spread) * scale,
                high=(value.mean + value.spread) * scale,
                text=f"{value.mean:.4g} ± {value.spread:.2g} (n={value.count})",
            )
        )
    return BarChart(figure, FIGURES[figure], len(bars) * ROW_H + 8, LABEL_W, bars)


def quality_vs_bitrate(rows: Sequence[ComparisonRow], names: dict[str, str]) -> Scatter | None:
    """Mean quality against mean bitrate, one point per node x scenario that measured both."""
    pairs = [
        (row, row.figures["kbps"], row.figures["quality"])
        for row in rows
        if row.figures["kbps"] is not None and row.figures["quality"] is not None
    ]
    if not pairs:
        return None
    x_max = max(k.mean for _, k, _ in pairs if k is not None) or 1.0
    scores = [q.mean for _, _, q in pairs if q is not None]
    y_min, y_max = min(scores), max(scores)
    if y_max == y_min:
        y_min, y_max = y_min - 1, y_max + 1
    plot_w, plot_h = WIDTH - 2 * MARGIN, SCATTER_H - 2 * MARGIN
    points = []
    for row, kbps, quality in pairs:
        assert kbps is not None and quality is not None
        points.append(
            Point(
                label=row_label(row, names),
                x=MARGIN + kbps.mean / x_max * plot_w,
                y=MARGIN + (1 - (quality.mean - y_min) / (y_max - y_min)) * plot_h,
                text=f"{kbps.mean:.0f} kbit/s, {quality.mean:.3f}",
            )
        )
    return Scatter(SCATTER_H, WIDTH, points, x_max, y_min, y_max)


@dataclass(frozen=True)
class Span:
    attempt: int
    node_id: str
    outcome: str  # running while it has not ended
    x: float
    y: float
    width: float


@dataclass(frozen=True)
class Timeline:
    height: float
    plot_x: float
    plot_w: float
    spans: list[Span]
    seconds: float  # what the plot's width stands for, from submission


def attempt_timeline(
    created_at: float,
    attempts: Sequence[tuple[int, str, float, float | None, str | None]],
    now: float,
) -> Timeline | None:
    """Attempts `(number, node, started, ended, outcome)` on one time axis from submission."""
    if not attempts:
        return None
    end = max([now if ended is None else ended for _, _, _, ended, _ in attempts] + [created_at])
    seconds = max(end - created_at, 1e-3)
    plot_x, plot_w = 110.0, WIDTH - 130.0
    spans = []
    for index, (number, node_id, started, ended, outcome) in enumerate(attempts):
        stop = now if ended is None else ended
        spans.append(
            Span(
                attempt=number,
                node_id=node_id,
                outcome=outcome or "running",
                x=plot_x + (started - created_at) / seconds * plot_w,
                y=index * ROW_H + 4,
                width=max(2.0, (stop - started) / seconds * plot_w),
            )
        )
    return Timeline(len(spans) * ROW_H + 24, plot_x, plot_w, spans, seconds)
