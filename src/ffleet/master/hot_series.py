"""Counters and histograms counted in plain Python numbers, turned into prometheus_client
families only when Prometheus scrapes.

A master moves four or five series per request on its event loop. prometheus_client's metrics
take a lock per value on every change and walk a histogram's buckets in Python; these add to
an int (a histogram: to one of a list of ints, found by `bisect`, and to a float sum) and build,
at each scrape, the very samples prometheus_client would: same names, HELP, TYPE, labels, `le`
bounds, cumulative buckets, _count, _sum and _created, series in the order they first moved.

No lock: every change is made on the event loop's thread, and a scrape (inline on SQLite, on
the store's threads on PostgreSQL) only reads. Under the GIL the copies a scrape takes of a
family's table and of a histogram's counts are single C calls, so a scrape never sees a table
change size while it walks it; it may see a histogram's sum one observation ahead of its
buckets, as it can with prometheus_client's locks (one per value, not per histogram).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

S = TypeVar("S", "CounterSeries", "HistogramSeries")


class CounterSeries:
    """One labelled counter's count (an int: exact, and printed as prometheus_client's float)."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0
        self.created = time.time()

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class HistogramSeries:
    """One labelled histogram's observations per bucket (not cumulative) and their sum."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        # the first bound >= amount, as prometheus_client's `amount <= bound` walk finds it
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount


class _Family(Generic[S]):
    """A metric's series by label values; an unlabelled metric's one series exists from the
    start (prometheus_client exports it, zero, before anything moves it)."""

    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.series: dict[tuple[str, ...], S] = {}
        if not self.labelnames:
            self.labels()

    def labels(self, *values: str) -> S:
        series = self.series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, not {values}")
            series = self.series[values] = self._new_series()
        return series

    def _new_series(self) -> S:
        raise NotImplementedError

    def collect(self) -> Metric:
        metric = Metric(self.name, self.documentation, self.kind)
        for values, series in self.series.copy().items():
            self._add_samples(metric, dict(zip(self.labelnames, values, strict=True)), series)
        return metric

    def _add_samples(self, metric: Metric, labels: dict[str, str], series: S) -> None:
        raise NotImplementedError


class CounterFamily(_Family[CounterSeries]):
    kind = "counter"

    def _new_series(self) -> CounterSeries:
        return CounterSeries()

    def _add_samples(self, metric: Metric, labels: dict[str, str], series: CounterSeries) -> None:
        metric.add_sample(self.name + "_total", labels, float(series.value))
        metric.add_sample(self.name + "_created", labels, series.created)


class HistogramFamily(_Family[HistogramSeries]):
    kind = "histogram"

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.bounds = [float(bound) for bound in buckets]
        if self.bounds[-1] != INF:
            self.bounds.append(INF)
        self.les = [floatToGoString(bound) for bound in self.bounds]  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames)

    def _new_series(self) -> HistogramSeries:
        return HistogramSeries(self.bounds)

    def _add_samples(self, metric: Metric, labels: dict[str, str], series: HistogramSeries) -> None:
        counts, total = list(series.counts), series.sum
        cumulative = 0.0
        for le, count in zip(self.les, counts, strict=True):
            cumulative += count
            metric.add_sample(self.name + "_bucket", {**labels, "le": le}, cumulative)
        metric.add_sample(self.name + "_count", labels, cumulative)
        metric.add_sample(self.name + "_sum", labels, total)
        metric.add_sample(self.name + "_created", labels, series.created)


class HotSeriesCollector(Collector):
    """Exposes families to a registry, in the order given."""

    def __init__(self, families: Sequence[CounterFamily | HistogramFamily]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.collect()
