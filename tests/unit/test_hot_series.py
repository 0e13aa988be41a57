"""hot_series.py's families export what prometheus_client's own Counter and Histogram would,
fed the same changes: every line of both expositions, _created's timestamps aside."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from ffleet.master.hot_series import CounterFamily, HistogramFamily, HotSeriesCollector

Exposition = Callable[[CollectorRegistry], bytes]

BUCKETS = (0.001, 0.01, 0.5, 1, 10)
# on every bound, either side of one, zero, past the last bound
AMOUNTS = [0.0, 0.001, 0.0011, 0.0099, 0.01, 0.3, 0.5, 0.5000001, 1.0, 9.99, 10.0, 10.01, 1e6]
ROUTES = [("/results", "POST"), ("/nodes/{node_id}/heartbeat", "POST"), ("/jobs", "GET")]


@pytest.fixture(params=[generate_latest, generate_openmetrics], ids=["text", "openmetrics"])
def expose(request: pytest.FixtureRequest) -> Exposition:
    exposition: Exposition = request.param
    return exposition


def without_created_times(text: bytes) -> str:
    return re.sub(r"^(\w+_created\b.*) \S+$", r"\1 T", text.decode(), flags=re.MULTILINE)


def assert_same(
    expose: Exposition, ours: list[CounterFamily | HistogramFamily], theirs: CollectorRegistry
) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HotSeriesCollector(ours))
    mine = without_created_times(expose(registry))
    assert mine == without_created_times(expose(theirs))


def test_labelled_counters_and_histograms_export_as_prometheus_clients(
    expose: Exposition,
) -> None:
    theirs = CollectorRegistry()
    their_requests = Counter("t_requests", "Requests.", ["route", "method"], registry=theirs)
    their_latency = Histogram(
        "t_latency_seconds", "Latency.", ["route", "method"], buckets=BUCKETS, registry=theirs
    )
    our_requests = CounterFamily("t_requests", "Requests.", ["route", "method"])
    our_latency = HistogramFamily("t_latency_seconds", "Latency.", ["route", "method"], BUCKETS)
    for n, amount in enumerate(AMOUNTS * 3):
        route = ROUTES[n * 7 % len(ROUTES)]
        their_requests.labels(*route).inc()
        their_latency.labels(*route).observe(amount)
        our_requests.labels(*route).inc()
        our_latency.labels(*route).observe(amount)
    their_requests.labels("/jobs", "GET").inc(5)
    our_requests.labels("/jobs", "GET").inc(5)
    assert_same(expose, [our_requests, our_latency], theirs)


def test_unlabelled_series_export_before_and_after_they_move(expose: Exposition) -> None:
    theirs = CollectorRegistry()
    their_refused = Counter("t_refused", "Refused.", registry=theirs)
    their_claim = Histogram("t_claim_seconds", "Claims.", buckets=BUCKETS, registry=theirs)
    our_refused = CounterFamily("t_refused", "Refused.", [])
    our_claim = HistogramFamily("t_claim_seconds", "Claims.", [], BUCKETS)
    labelled = CounterFamily("t_outcomes", "Outcomes.", ["outcome"])
    Counter("t_outcomes", "Outcomes.", ["outcome"], registry=theirs)  # none yet: HELP and TYPE
    ours: list[CounterFamily | HistogramFamily] = [our_refused, our_claim, labelled]
    assert_same(expose, ours, theirs)
    for amount in AMOUNTS:
        their_claim.observe(amount)
        our_claim.labels().observe(amount)
    their_refused.inc()
    our_refused.labels().inc()
    assert_same(expose, ours, theirs)


def test_a_label_or_a_bucket_off_shows() -> None:
    theirs = CollectorRegistry()
    Histogram("t_h", "H.", ["codec"], buckets=BUCKETS, registry=theirs).labels("vp9").observe(0.5)
    off_by_a_bucket = HistogramFamily("t_h", "H.", ["codec"], BUCKETS)
    off_by_a_bucket.labels("vp9").observe(0.5000001)
    other_label = HistogramFamily("t_h", "H.", ["codec"], BUCKETS)
    other_label.labels("h264").observe(0.5)
    for ours in (off_by_a_bucket, other_label):
        with pytest.raises(AssertionError):
            assert_same(generate_latest, [ours], theirs)


def test_label_values_must_match_the_label_names() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        CounterFamily("t_c", "C.", ["outcome", "reason"]).labels("completed")
