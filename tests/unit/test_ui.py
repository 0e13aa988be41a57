"""The dashboard in-process: every page renders from the store, escapes user input, sends a
strict Content-Security-Policy, and its event stream pushes a region only when it changed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from ffleet.comparison import compare
from ffleet.master.app import create_app
from ffleet.master.settings import MasterSettings
from ffleet.master.ui import live
from ffleet.master.ui.views import history
from ffleet.models import Attempt, Job, NodeRegistration, Timestamp
from ffleet.store import NotFound, open_store

EVIL = "<script>alert(1)</script>"


@pytest.fixture
def client() -> Iterator[TestClient]:
    store = open_store("memory")
    with TestClient(create_app(MasterSettings(), store)) as test_client:
        yield test_client
    store.close()


def register(client: TestClient, **fields: Any) -> str:
    body = {"cpu_threads": 4, "ram_bytes": 8 << 30, "slots": 1, **fields}
    node_id: str = client.post("/nodes/register", json=body).json()["id"]
    return node_id


def test_every_page_renders_with_a_strict_policy_and_escapes_user_input(
    client: TestClient,
) -> None:
    node_id = register(client, hostname="host" + EVIL, labels={"note": EVIL})
    waiting = client.post(
        "/jobs", json={"scenario": "360p-h264", "requirements": {"gpu": True}}
    ).json()["id"]
    running = client.post("/jobs", json={"scenario": "360p-h264", "affinity": {"x": EVIL}})
    client.get(f"/jobs/next?node_id={node_id}")

    for path in ["/ui", "/ui/jobs", f"/ui/jobs/{waiting}", f"/ui/jobs/{running.json()['id']}"]:
        page = client.get(path)
        assert page.status_code == 200, path
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "<script>alert" not in page.text, path
        assert "<script" not in page.text.replace('<script src="/ui/static/ui.js', ""), path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/ui").text
    # The API refuses such an id (ids are letters, digits and ._:-); one a store already holds
    # must still not retarget an action.
    store = client.app.state.master.store  # type: ignore[attr-defined]
    store.register_node(
        NodeRegistration(id="../../jobs/x", cpu_threads=4, ram_bytes=8 << 30), time.time()
    )
    assert 'data-action="/nodes/..%2F..%2Fjobs%2Fx/drain"' in client.get("/ui").text
    assert client.get("/ui/results").status_code == 200


def test_the_job_page_says_why_a_job_is_pending(client: TestClient) -> None:
    register(client, hostname="cpu-box")
    job_id = client.post(
        "/jobs", json={"scenario": "360p-h264", "requirements": {"gpu": True}}
    ).json()["id"]
    page = client.get(f"/ui/jobs/{job_id}").text
    assert "Why is it pending?" in page
    assert "no registered node can run it" in page and "needs a GPU" in page
    assert f'data-action="/jobs/{job_id}/cancel"' in page


def test_jobs_filter_and_paginate(client: TestClient) -> None:
    client.post("/jobs/batch", json={"jobs": [{"scenario": "360p-h264"}] * 51})
    client.post("/jobs", json={"scenario": "720p-h264"})
    first = client.get("/ui/jobs").text
    assert "52 job(s)" in first and "page 1 of 2" in first and "next →" in first
    assert "page 2 of 2" in client.get("/ui/jobs?page=2").text
    only = client.get("/ui/jobs?scenario=720p-h264").text
    assert "1 job(s)" in only
    assert "unknown status" in client.get("/ui/jobs?status=nope").text


def test_an_unknown_job_is_a_page_that_says_so(client: TestClient) -> None:
    page = client.get("/ui/jobs/no-such-job")
    assert page.status_code == 404 and "job no-such-job not found" in page.text


@pytest.mark.parametrize(
    ("role", "submits", "drains", "acts_on_others"),
    [
        ("admin", True, True, True),
        ("submitter", True, False, False),  # cancels and retries only its own jobs
        ("reader", False, False, False),
    ],
)
def test_the_role_decides_which_action_buttons_show(
    role: str, submits: bool, drains: bool, acts_on_others: bool, tmp_path: Path
) -> None:
    store = open_store("memory")
    _, admin = store.create_credential("admin", "admin", time.time())
    _, viewer = store.create_credential(role, "viewer", time.time())
    settings = MasterSettings(auth="required", admin_token_file=tmp_path / "admin-token")
    with TestClient(create_app(settings, store)) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        register(client)
        others = client.post("/jobs", json={"scenario": "360p-h264"}).json()["id"]
        client.headers["Authorization"] = f"Bearer {viewer}"
        own = client.post("/jobs", json={"scenario": "360p-h264"})
        fleet, jobs, other_job = (
            client.get(path).text for path in ["/ui", "/ui/jobs", f"/ui/jobs/{others}"]
        )
        own_job = client.get(f"/ui/jobs/{own.json()['id']}").text if submits else ""
    store.close()
    assert ("/drain" in fleet) == drains
    assert ('id="submit-form"' in jobs) == submits
    assert ('id="cancel"' in other_job) == acts_on_others
    assert ('id="cancel"' in own_job) == submits
    if role == "reader":
        assert "data-action=" not in fleet + other_job  # no action button at all


def test_the_stream_sends_the_region_only_when_it_changed() -> None:
    frames = iter(["a", "a", "b\nc"])

    def render() -> str:
        return next(frames)

    async def first_events() -> list[bytes]:
        stream = live.stream(render, "41")
        return [await anext(stream) for _ in range(3)]

    retry, one, two = asyncio.run(first_events())
    assert retry == b"retry: 1000\n\n"
    assert one == b"id: 42\nevent: region\ndata: a\n\n"
    assert two == b"id: 43\nevent: region\ndata: b\ndata: c\n\n"


def test_a_stream_whose_job_is_gone_says_so_and_ends() -> None:
    def render() -> str:
        raise NotFound("job x not found")

    async def events() -> list[bytes]:
        return [chunk async for chunk in live.stream(render, None)]

    assert asyncio.run(events())[1:] == [b"id: 1\nevent: gone\ndata: job x not found\n\n"]


def test_history_is_rebuilt_from_the_attempts() -> None:
    job = Job(
        id="j",
        scenario="360p-h264",
        confidence="auto",
        parameters={},
        status="completed",
        node_id="n",
        created_at=Timestamp(1.0),
        started_at=Timestamp(5.0),
        completed_at=Timestamp(9.0),
        retry_count=1,
        error=None,
    )
    attempts = [
        Attempt(
            attempt=1,
            node_id="n",
            started_at=Timestamp(2.0),
            ended_at=Timestamp(3.0),
            outcome="failed",
            error="boom",
        ),
        Attempt(
            attempt=2,
            node_id="n",
            started_at=Timestamp(5.0),
            ended_at=Timestamp(9.0),
            outcome="completed",
            error=None,
        ),
    ]
    assert [(when, status) for when, status, _ in history(job, attempts)] == [
        (1.0, "pending"),
        (2.0, "running"),
        (3.0, "failed"),
        (5.0, "running"),
        (9.0, "completed"),
    ]


def test_comparison_gives_mean_and_spread_over_repeats() -> None:
    runs = [
        (
            "n1",
            "360p-h264",
            {
                "fps": 100.0,
                "frames": 10,
                "cpu_user_seconds": 1.0,
                "cpu_system_seconds": 1.0,
                "bitrate_bps": 8000,
            },
        ),
        (
            "n1",
            "360p-h264",
            {
                "fps": 120.0,
                "frames": 10,
                "cpu_user_seconds": 2.0,
                "cpu_system_seconds": 2.0,
                "bitrate_bps": 8000,
            },
        ),
        ("n2", "360p-h264", {"fps": 50.0, "frames": 0}),
    ]
    first, second = compare(runs)
    assert (first.node_id, first.runs) == ("n1", 2)
    fps = first.figures["fps"]
    assert fps is not None and fps.mean == 110.0 and round(fps.spread, 3) == 14.142
    per_frame = first.figures["cpu_s_per_frame"]
    assert per_frame is not None and per_frame.mean == pytest.approx(0.3)
    assert first.figures["energy_j_per_frame"] is None
    assert second.figures["cpu_s_per_frame"] is None
    only = second.figures["fps"]
    assert only is not None and only.spread == 0.0


def test_a_stream_ends_by_itself_so_a_stopping_master_is_not_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "STREAM_LIFETIME_S", 0.0)

    async def events() -> list[bytes]:
        return [chunk async for chunk in live.stream(lambda: "x", None)]

    assert asyncio.run(events()) == [b"retry: 1000\n\n"]
