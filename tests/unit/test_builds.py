"""The fleet's majority FFmpeg build and the nodes that run another one."""

from __future__ import annotations

from ffleet.builds import differs, majority_build
from ffleet.models import Node


def _node(sha: str | None) -> Node:
    return Node(
        id=f"n-{sha}",
        address="10.0.0.1",
        type="server",
        cpu_threads=4,
        cpu_model="x",
        has_gpu=False,
        gpu_type=None,
        ram_bytes=1,
        labels={},
        status="available",
        last_heartbeat=None,
        registered_at=None,
        current_job_id=None,
        ffmpeg_sha256=sha,
    )


def test_the_majority_build_and_the_odd_ones_out() -> None:
    fleet = [_node("a"), _node("b"), _node("a"), _node(None)]
    assert majority_build(fleet) == "a"
    assert [differs(node, "a") for node in fleet] == [False, True, False, True]
    assert majority_build([_node(None)]) is None
    assert not differs(_node(None), None)  # nothing known: nothing flagged
