"""rows.job_from_row sets part of a Job after building it: every column must still land."""

from __future__ import annotations

from ffleet.models import Job, Progress, Requirements, Timestamp
from ffleet.store.rows import job_from_row

ROW = {
    "id": "j1",
    "scenario": "1080p30-h264",
    "confidence": "high",
    "parameters": '{"duration":10}',
    "status": "running",
    "node_id": "n1",
    "created_at": 1_800_000_000.0,
    "started_at": 1_800_000_001.0,
    "completed_at": 1_800_000_002.0,
    "retry_count": 2,
    "error": "boom",
    "priority": 7,
    "requirements": '{"gpu":true,"min_cpu_threads":4}',
    "affinity": '{"rack":"a"}',
    "anti_affinity": '{"rack":"b"}',
    "timeout_s": 60.0,
    "max_attempts": 5,
    "attempt": 3,
    "not_before": 1_800_000_003.0,
    "progress": '{"percent":50.0,"updated_at":1800000004.0}',
    "cancel_requested": 1,
    "unschedulable_reason": "none fits",
    "stall_timeout_s": 30.0,
    "placement": "fastest",
    "avoid_nodes": '["n2"]',
}


def test_every_column_of_a_row_lands_in_the_job() -> None:
    job = job_from_row(ROW)
    assert job == Job(
        id="j1",
        scenario="1080p30-h264",
        confidence="high",
        parameters={"duration": 10},
        status="running",
        node_id="n1",
        created_at=Timestamp(1_800_000_000.0),
        started_at=Timestamp(1_800_000_001.0),
        completed_at=Timestamp(1_800_000_002.0),
        retry_count=2,
        error="boom",
        priority=7,
        requirements=Requirements(gpu=True, min_cpu_threads=4),
        affinity={"rack": "a"},
        anti_affinity={"rack": "b"},
        timeout_s=60.0,
        max_attempts=5,
        attempt=3,
        not_before=Timestamp(1_800_000_003.0),
        progress=Progress(percent=50.0, updated_at=Timestamp(1_800_000_004.0)),
        cancel_requested=True,
        unschedulable_reason="none fits",
        understood=job.understood,
        stall_timeout_s=30.0,
        placement="fastest",
        avoid_nodes=["n2"],
    )
    assert job.understood is not None and job.understood.codec == "h264"


def test_empty_columns_leave_fresh_defaults() -> None:
    row = {
        **ROW,
        "requirements": None,
        "affinity": "{}",
        "anti_affinity": "{}",
        "progress": None,
        "avoid_nodes": "[]",
        "cancel_requested": 0,
        "started_at": None,
        "completed_at": None,
    }
    first, second = job_from_row(row), job_from_row(row)
    assert (first.requirements, first.progress, first.started_at) == (None, None, None)
    assert (first.affinity, first.anti_affinity, first.avoid_nodes) == ({}, {}, [])
    assert first.cancel_requested is False
    assert first.affinity is not second.affinity  # never one dict shared between jobs
    assert first == second
