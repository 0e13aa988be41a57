from __future__ import annotations

import pytest

from ffleet.matrix import MatrixError, load
from ffleet.models import Requirements


def test_cross_product_with_repeats_and_job_fields() -> None:
    jobs = load(
        """
resolutions: [360p, 720p]
codecs: [h264, vp9]
parameters: {duration: 2, bitrate: [1M, 3M]}
repeats: 2
job: {priority: high, max_attempts: 1}
"""
    )
    assert len(jobs) == 2 * 2 * 2 * 2
    assert jobs[0].scenario == "360p-h264" and jobs[0].parameters == {
        "duration": 2,
        "bitrate": "1M",
    }
    assert jobs[0] == jobs[1]  # repeats are innermost
    assert {j.scenario for j in jobs} == {"360p-h264", "360p-vp9", "720p-h264", "720p-vp9"}
    assert all(j.priority == "high" and j.max_attempts == 1 for j in jobs)


def test_explicit_scenarios() -> None:
    assert [j.scenario for j in load("scenarios: [4K60-h264, test-1080p]")] == [
        "4K60-h264",
        "test-1080p",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("resolutions: [360p]\ncodecs: [h264, mpeg1]", "mpeg1"),
        ("scenarios: [720p]\nresolutions: [360p]", "not both"),
        ("colour: blue", "unknown matrix keys"),
        ("scenarios: []", "empty"),
        ("scenarios: [720p]\nrepeats: 0", "repeats"),
        ("scenarios: [720p]\nparameters: {duration: -3}", "720p"),
        ("scenarios: [720p]\njob: {max_attempts: many}", "720p"),
        ("- just\n- a list", "mapping"),
        ("a: [unclosed", "YAML"),
    ],
)
def test_bad_matrices_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(MatrixError, match=message):
        load(text)


def test_same_build_pins_the_fleet_majority_build_on_every_job() -> None:
    text = (
        "scenarios: [360p-h264, 360p-vp9]\nsame_build: true\n"
        "job:\n  requirements:\n    gpu: false\n"
    )
    jobs = load(text, lambda: "ab" * 32)
    assert [job.requirements for job in jobs] == [
        Requirements(gpu=False, ffmpeg_sha256="ab" * 32)
    ] * 2
    with pytest.raises(MatrixError, match="no registered node reports its FFmpeg build"):
        load(text, lambda: None)
    assert load("scenarios: [360p]", lambda: pytest.fail("not asked"))[0].requirements is None
