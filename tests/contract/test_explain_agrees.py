"""Explain and placement agree, on every backend: for each situation, the nodes `explain` says
"would claim it next" are exactly the nodes whose claim gets the job, and every other node is
given the rule placement really applies to it.

Each claim changes the situation, so it is rebuilt in a fresh store for every node asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ffleet.models import (
    Heartbeat,
    JobRequest,
    NodeRegistration,
    Requirements,
    ResultSubmission,
    rfc3339,
)
from ffleet.scheduling import PREFERENCE_WINDOW_S
from ffleet.store import SchedulingPolicy, Store, open_store
from ffleet.store.placement import CLAIM_MAX_EXAMINED
from tests.conftest import reset_postgres

T0 = 1_800_000_000.0
NOW = T0 + 1


@dataclass
class Built:
    job: str
    nodes: dict[str, str]  # hostname -> node id
    now: float = NOW


def _node(store: Store, name: str, now: float = T0, **fields: object) -> str:
    fields.setdefault("cpu_threads", 8)
    fields.setdefault("ram_bytes", 16 << 30)
    fields.setdefault("slots", 1)
    fields.setdefault("encoders", ["libx264"])
    registration = NodeRegistration(hostname=name, **fields)  # type: ignore[arg-type]
    return store.register_node(registration, now).id


def _job(store: Store, now: float = T0, scenario: str = "360p-h264", **fields: object) -> str:
    (created,) = store.create_jobs([JobRequest(scenario=scenario, **fields)], now)  # type: ignore[arg-type]
    return created.id


def _ran(store: Store, node_id: str, fps: float) -> None:
    """A completed 720p H.264 job on `node_id` measured at `fps`."""
    job = _job(store, scenario="720p-h264")
    claimed = store.claim(node_id, T0)
    assert claimed is not None and claimed.id == job
    metrics = {"encoder": "libx264", "frames": 150, "fps": fps}
    done = ResultSubmission(
        job_id=job, node_id=node_id, status="completed", attempt=1, metrics=metrics
    )
    store.submit_result(done, T0)


def plain(store: Store) -> Built:
    nodes = {name: _node(store, name) for name in ("a", "b")}
    return Built(_job(store), nodes)


def behind_higher_priority(store: Store) -> Built:
    nodes = {"a": _node(store, "a")}
    _job(store, priority="high")
    return Built(_job(store, priority="low"), nodes)


def lacking_and_draining_and_busy(store: Store) -> Built:
    nodes = {
        "small": _node(store, "small", ram_bytes=1 << 30),
        "draining": _node(store, "draining"),
        "busy": _node(store, "busy"),
        "free": _node(store, "free"),
    }
    store.set_draining(nodes["draining"], True)
    _job(store, requirements=Requirements(encoders=["libx265"]))  # only "busy" gets this one
    store.register_node(  # "busy" gains libx265 and takes that job
        NodeRegistration(
            id=nodes["busy"],
            hostname="busy",
            cpu_threads=8,
            ram_bytes=16 << 30,
            slots=1,
            encoders=["libx264", "libx265"],
        ),
        T0,
    )
    assert store.claim(nodes["busy"], T0) is not None
    return Built(_job(store, requirements=Requirements(min_ram_bytes=8 << 30)), nodes)


def refused_by_one(store: Store) -> Built:
    nodes = {name: _node(store, name) for name in ("wrong", "right")}
    store.set_draining(nodes["right"], True)
    job = _job(store)
    assert store.claim(nodes["wrong"], T0) is not None
    refusal = ResultSubmission(
        job_id=job,
        node_id=nodes["wrong"],
        status="failed",
        attempt=1,
        error="input differs from the pinned SHA-256",
        wrong_node=True,
    )
    store.submit_result(refusal, T0)
    store.set_draining(nodes["right"], False)
    return Built(job, nodes)


def gpu_node_kept_for_gpu_work(store: Store) -> Built:
    nodes = {"cpu": _node(store, "cpu"), "gpu": _node(store, "gpu", has_gpu=True)}
    return Built(_job(store), nodes)


def affinity(store: Store) -> Built:
    nodes = {
        "a": _node(store, "a", labels={"rack": "a"}),
        "b": _node(store, "b", labels={"rack": "b"}),
    }
    return Built(_job(store, affinity={"rack": "b"}), nodes)


def preference_lapsed(store: Store) -> Built:
    built = affinity(store)
    later = T0 + PREFERENCE_WINDOW_S + 1
    for node_id in built.nodes.values():
        store.heartbeat(node_id, Heartbeat(), later)
    return Built(built.job, built.nodes, later)


def measured_faster(store: Store) -> Built:
    nodes = {"slow": _node(store, "slow"), "fast": _node(store, "fast")}
    _ran(store, nodes["slow"], fps=40.0)
    _ran(store, nodes["fast"], fps=160.0)
    return Built(_job(store, scenario="720p-h264", placement="fastest"), nodes)


def gpu_work_first(store: Store) -> Built:
    nodes = {"gpu": _node(store, "gpu", has_gpu=True, encoders=["libx264", "h264_nvenc"])}
    _job(store, priority="low", requirements=Requirements(gpu=True))
    return Built(_job(store, priority="high"), nodes)


def backoff(store: Store) -> Built:
    nodes = {"a": _node(store, "a")}
    return Built(_job(store, not_before=rfc3339(T0 + 600)), nodes)


def silent(store: Store) -> Built:
    nodes = {"gone": _node(store, "gone", now=T0 - 60), "here": _node(store, "here")}
    return Built(_job(store), nodes)


def past_the_claim_bound(store: Store) -> Built:
    """More jobs ahead that only another node can run than one claim reads in a pass."""
    nodes = {
        "plain": _node(store, "plain"),
        "labelled": _node(store, "labelled", labels={"x": "1"}),
    }
    store.set_draining(nodes["labelled"], True)
    only_x = JobRequest(scenario="360p-h264", requirements=Requirements(labels={"x": "1"}))
    store.create_jobs([only_x] * (CLAIM_MAX_EXAMINED + 8), T0)
    return Built(_job(store), nodes)


# Situation -> the verdict explain must give each node; "next" nodes are checked by claiming.
SITUATIONS: dict[Callable[[Store], Built], dict[str, str]] = {
    plain: {"a": "next", "b": "next"},
    behind_higher_priority: {"a": "eligible"},
    lacking_and_draining_and_busy: {
        "small": "lacks",
        "draining": "draining",
        "busy": "busy",
        "free": "next",
    },
    refused_by_one: {"wrong": "refused", "right": "next"},
    gpu_node_kept_for_gpu_work: {"cpu": "next", "gpu": "deferred"},
    affinity: {"a": "deferred", "b": "next"},
    preference_lapsed: {"a": "next", "b": "next"},
    measured_faster: {"slow": "deferred", "fast": "next"},
    gpu_work_first: {"gpu": "eligible"},
    backoff: {"a": "backoff"},
    silent: {"gone": "offline", "here": "next"},
    past_the_claim_bound: {"plain": "eligible", "labelled": "draining"},
}


@pytest.fixture
def fresh(
    backend_url: str, policy: SchedulingPolicy, tmp_path: Path
) -> Iterator[Callable[[], Store]]:
    """Opens an empty store of the test's backend, closing the one opened before."""
    opened: list[Store] = []

    def make() -> Store:
        while opened:
            opened.pop().close()
        url = backend_url
        if url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path / f'store-{len(list(tmp_path.iterdir()))}.db'}"
        elif url.startswith("postgres"):
            reset_postgres()
        opened.append(open_store(url, policy))
        return opened[0]

    yield make
    while opened:
        opened.pop().close()


@pytest.mark.parametrize("situation", list(SITUATIONS), ids=[f.__name__ for f in SITUATIONS])
def test_explain_says_what_the_claim_does(
    fresh: Callable[[], Store], situation: Callable[[Store], Built]
) -> None:
    store = fresh()
    built = situation(store)
    explained = store.explain(built.job, built.now)
    said = {v.hostname: v.verdict for v in explained.nodes}
    assert said == SITUATIONS[situation], explained
    for name in built.nodes:
        if said[name] == "offline":
            continue  # a node without heartbeats does not claim
        store = fresh()
        again = situation(store)
        claimed = store.claim(again.nodes[name], again.now)
        took_it = claimed is not None and claimed.id == again.job
        assert took_it == (said[name] == "next"), (name, explained, claimed)
