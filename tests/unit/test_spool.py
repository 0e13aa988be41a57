"""The result spool: on disk before sending, gone only once accepted, kept when refused."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest
from msgspec.structs import replace

from ffleet.agent.client import MasterRejected, MasterUnavailable, ResultReply
from ffleet.agent.spool import Spool
from ffleet.models import Job, ResultSubmission


def result(
    job_id: str = "job-1",
    attempt: int = 1,
    status: Literal["completed", "failed", "canceled"] = "completed",
) -> ResultSubmission:
    return ResultSubmission(
        job_id=job_id,
        node_id="node-1",
        attempt=attempt,
        status=status,
        metrics={"frames": 30},
        analyzer_output={},
        error=None,
        completed_at="2026-01-01T00:00:00Z",
        retryable=False,
    )


def read(path: Path) -> ResultSubmission:
    return msgspec.json.decode(path.read_bytes(), type=ResultSubmission)


class FakeMaster:
    """Records what was posted, and whether the spool file existed at that moment."""

    def __init__(self, spool: Spool, answer: Exception | ResultReply | None = None) -> None:
        self.spool = spool
        self.answer = answer or ResultReply()
        self.posted: list[ResultSubmission] = []
        self.on_disk_when_sent: list[bool] = []

    def post_result(self, body: ResultSubmission) -> ResultReply:
        self.posted.append(body)
        name = f"{body.job_id}-{body.attempt}.json"
        self.on_disk_when_sent.append((self.spool.dir / name).is_file())
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_result_is_on_disk_before_it_is_sent_and_deleted_after(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    master = FakeMaster(spool)

    delivery = spool.submit(master, result(), claim_next=True)

    assert delivery.outcome == "delivered"
    assert master.on_disk_when_sent == [True]
    assert master.posted == [replace(result(), claim_next=True)]
    assert spool.pending() == []
    assert list(spool.dir.iterdir()) == [spool.rejected_dir]  # no temp file left behind


def test_written_file_holds_the_encoded_result_without_claim_next(tmp_path: Path) -> None:
    spool = Spool(tmp_path)

    path = spool.write(replace(result("abc", 3), claim_next=True))

    assert path == tmp_path / "spool" / "abc-3.json"
    assert path.read_bytes() == msgspec.json.encode(replace(result("abc", 3), claim_next=True))
    assert read(path) == replace(result("abc", 3), claim_next=True)


def test_unavailable_master_keeps_the_result_for_a_resend(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    down = FakeMaster(spool, MasterUnavailable("connection refused"))

    assert spool.submit(down, result(), claim_next=True).outcome == "spooled"
    assert [path.name for path in spool.pending()] == ["job-1-1.json"]

    up = FakeMaster(spool)
    assert spool.resend(up) is True
    assert up.posted == [replace(result(), claim_next=False)]  # nobody would run a claimed job
    assert spool.pending() == []


def test_spooled_results_survive_a_restart(tmp_path: Path) -> None:
    Spool(tmp_path).write(result())

    restarted = Spool(tmp_path)
    master = FakeMaster(restarted)

    assert restarted.resend(master) is True
    assert master.posted == [result()]


def test_a_result_spooled_as_a_plain_object_by_an_earlier_agent_is_still_delivered(
    tmp_path: Path,
) -> None:
    """Earlier agents spooled a JSON object built by hand; an upgraded agent must send it."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    earlier: dict[str, Any] = {
        "job_id": "job-1",
        "node_id": "node-1",
        "attempt": 2,
        "status": "failed",
        "metrics": {"frames": 12, "unavailable": {"energy_joules": "no RAPL"}},
        "analyzer_output": {"efficiency": {"realtime_factor": None}},
        "error": "timed out after 2 s",
        "completed_at": "2026-01-01T00:00:00Z",
        "retryable": True,
    }
    (spool_dir / "job-1-2.json").write_text(json.dumps(earlier))
    spool = Spool(tmp_path)
    master = FakeMaster(spool)

    assert [(r.job_id, r.attempt) for r in spool.attempts()] == [("job-1", 2)]
    assert spool.resend(master) is True

    assert master.posted == [ResultSubmission(**earlier)]
    assert spool.pending() == [] and list(spool.rejected_dir.iterdir()) == []


def test_a_spool_file_that_is_not_a_result_is_moved_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    (spool.dir / "job-1-1.json").write_text(json.dumps({"job_id": "job-1", "status": "lost"}))
    master = FakeMaster(spool)

    assert spool.resend(master) is True
    assert master.posted == []
    assert [path.name for path in spool.rejected_dir.iterdir()] == ["job-1-1.json"]


def test_duplicate_acceptance_deletes_the_result(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    master = FakeMaster(spool, ResultReply(duplicate=True))

    assert spool.submit(master, result()).outcome == "delivered"
    assert spool.pending() == []


@pytest.mark.parametrize(
    ("status_code", "message"),
    [
        (409, "attempt 1 of job job-1 on node node-1 is not current"),
        (404, "job job-1 not found"),
        (422, "invalid request: Expected `str`"),
    ],
)
def test_refused_result_is_moved_to_rejected_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, status_code: int, message: str
) -> None:
    spool = Spool(tmp_path)
    master = FakeMaster(spool, MasterRejected(status_code, message))

    with caplog.at_level(logging.WARNING, logger="ffleet.agent.spool"):
        delivery = spool.submit(master, result())

    assert delivery.outcome == "rejected"
    assert spool.pending() == []
    kept = spool.rejected_dir / "job-1-1.json"
    assert read(kept) == result()
    assert message in caplog.text
    assert str(kept) in caplog.text


def test_a_second_rejection_of_the_same_name_keeps_both(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    master = FakeMaster(spool, MasterRejected(409, "stale"))

    spool.submit(master, result(status="failed"))
    spool.submit(master, result(status="completed"))

    kept = sorted(read(path).status for path in spool.rejected_dir.iterdir())
    assert kept == ["completed", "failed"]


def test_reply_carries_the_next_job(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    next_job = Job(
        id="job-2",
        scenario="720p-h264",
        confidence="auto",
        parameters={},
        status="running",
        node_id="node-1",
        created_at=None,
        started_at=None,
        completed_at=None,
        retry_count=0,
        error=None,
        attempt=1,
    )
    master = FakeMaster(spool, ResultReply(job=next_job))

    delivery = spool.submit(master, result(), claim_next=True)

    assert delivery.reply is not None
    assert delivery.reply.job == next_job


class FailsOnAttempt(FakeMaster):
    """Accepts every result except the one for `attempt`, which raises `error`."""

    def __init__(self, spool: Spool, attempt: int, error: Exception) -> None:
        super().__init__(spool)
        self.failing = attempt
        self.error = error

    def post_result(self, body: ResultSubmission) -> ResultReply:
        if body.attempt == self.failing:
            self.posted.append(body)
            raise self.error
        return super().post_result(body)


def write_three(spool: Spool) -> None:
    for attempt in (1, 2, 3):
        path = spool.write(result("job", attempt))
        stamp = 1_700_000_000 + attempt
        os.utime(path, (stamp, stamp))


def test_resend_goes_oldest_first_and_stops_when_the_master_is_unreachable(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    write_three(spool)
    master = FailsOnAttempt(spool, 2, MasterUnavailable("connection refused"))

    assert spool.resend(master) is False
    assert [body.attempt for body in master.posted] == [1, 2]
    assert [path.name for path in spool.pending()] == ["job-2.json", "job-3.json"]


def test_a_result_the_master_fails_on_does_not_hold_up_the_others(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    write_three(spool)
    master = FailsOnAttempt(spool, 2, MasterUnavailable("HTTP 500 internal error", 500))

    assert spool.resend(master) is True  # the master answered for every result
    assert [body.attempt for body in master.posted] == [1, 2, 3]
    assert [path.name for path in spool.pending()] == ["job-2.json"]


def test_unreadable_spool_file_is_moved_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    (spool.dir / "broken-1.json").write_text("{not json")
    master = FakeMaster(spool)

    assert spool.resend(master) is True
    assert master.posted == []
    assert (spool.rejected_dir / "broken-1.json").read_text() == "{not json"


def test_leftover_temp_files_are_removed_and_never_sent(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / ".job-1-1.json.x1y2.tmp").write_bytes(msgspec.json.encode(result())[:10])

    spool = Spool(tmp_path)

    assert spool.pending() == []
    assert not any(spool_dir.glob("*.tmp")) and not any(spool_dir.glob(".*.tmp"))


def test_job_ids_cannot_escape_the_spool_dir(tmp_path: Path) -> None:
    spool = Spool(tmp_path)

    path = spool.write(result("../../etc/passwd", 1))

    assert path.parent == spool.dir
    assert path.name == "______etc_passwd-1.json"


def disk_full(result: ResultSubmission) -> Path:
    raise OSError(28, "No space left on device")


def test_a_result_that_cannot_be_spooled_is_still_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)
    monkeypatch.setattr(spool, "write", disk_full)
    master = FakeMaster(spool)

    assert spool.submit(master, result()).outcome == "delivered"
    assert master.posted == [result()]


def test_an_unspooled_result_is_held_in_memory_until_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    monkeypatch.setattr(spool, "write", disk_full)
    master = FakeMaster(spool, MasterUnavailable("connection refused"))

    with caplog.at_level(logging.ERROR, logger="ffleet.agent.spool"):
        assert spool.submit(master, result()).outcome == "held"
    assert "No space left on device" in caplog.text
    # Still this node's attempt, as heartbeats say, and sent again until the master has it.
    assert [(r.job_id, r.attempt) for r in spool.attempts()] == [("job-1", 1)]
    assert spool.waiting()
    assert not spool.resend(master)
    master.answer = ResultReply()
    assert spool.resend(master)
    assert master.posted[-1] == result()
    assert not spool.waiting() and spool.attempts() == []


def test_the_probe_says_why_the_spool_cannot_be_written(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.probe() is None
    spool.dir.rename(tmp_path / "elsewhere")
    (tmp_path / "spool").write_text("not a directory")
    problem = spool.probe()
    assert problem is not None and "cannot be written" in problem
    assert str(spool.dir) in problem


def test_spooled_attempts_are_listed_for_the_heartbeat(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    job_id = "6a1f2c3e-9b7d-4e2f-8a61-0c2d3e4f5a6b"  # job ids contain dashes
    spool.write(result(job_id, 3))
    spool.write(result("other", 1))
    assert {(r.job_id, r.attempt) for r in spool.attempts()} == {(job_id, 3), ("other", 1)}


def test_a_claim_that_waits_is_asked_once_the_result_is_listed_for_heartbeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)
    master = FakeMaster(spool)
    listed_when_kept: list[list[tuple[str, int | None]]] = []

    def kept() -> None:
        listed_when_kept.append([(r.job_id, r.attempt) for r in spool.attempts()])
        assert master.posted == []  # before the reply, which may wait, is asked for

    spool.submit(master, result(), claim_next=True, claim_wait=30, kept=kept)
    assert listed_when_kept == [[("job-1", 1)]]
    assert master.posted == [replace(result(), claim_next=True, claim_wait=30)]

    monkeypatch.setattr(spool, "write", disk_full)
    spool.submit(master, result("job-2"), claim_next=True, claim_wait=30, kept=kept)
    assert len(listed_when_kept) == 1  # not kept: its job stays the runner's to report
    assert master.posted[-1] == result("job-2")  # and no claim: nowhere to keep its result
