"""What an agent refuses before or inside FFmpeg: playlists that point outside --input-dir,
streams to hosts it does not allow, and jobs larger than its memory or disk."""

from __future__ import annotations

import threading
from pathlib import Path

import imageio_ffmpeg  # type: ignore[import-untyped]
import pytest

from ffleet.agent.executor import execute
from ffleet.agent.job_limits import (
    NotOnThisAgent,
    ResourceLimits,
    check_output_host,
    check_resources,
)
from ffleet.scenarios import build_job_spec

FFMPEG: str = imageio_ffmpeg.get_ffmpeg_exe()
GIB = 2**30


@pytest.mark.integration
def test_an_hls_playlist_inside_the_input_dir_cannot_read_a_file_outside_it(
    tmp_path: Path,
) -> None:
    outside, inside = tmp_path / "outside", tmp_path / "inside"
    secret = execute(
        build_job_spec("64x64-h264", {"duration": 0.5, "output": "file"}),
        ffmpeg=FFMPEG,
        encoders={"libx264"},
        work_dir=outside,
        timeout_s=60,
        cancel=threading.Event(),
    )
    assert secret.status == "completed", secret.error
    inside.mkdir()
    playlist = inside / "list.m3u8"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{outside / 'output.mp4'}\n"
        "#EXT-X-ENDLIST\n"
    )
    result = execute(
        build_job_spec("64x64-h264", {"duration": 0.5, "input": "list.m3u8"}),
        ffmpeg=FFMPEG,
        encoders={"libx264"},
        work_dir=tmp_path / "work",
        timeout_s=60,
        cancel=threading.Event(),
        allowed_input_dirs=(inside,),
    )
    assert result.status == "failed"
    assert "FFmpeg failed" in (result.error or "")
    assert result.metrics.get("frames") in (None, 0)  # nothing was read from outside


@pytest.mark.parametrize(
    ("output", "allowed", "refused"),
    [
        ("rtmp://live.example/app/key", (), True),  # none allowed by default
        ("rtmp://live.example/app/key", ("live.example",), False),
        ("rtmps://LIVE.example:443/app/key", ("live.example",), False),
        ("rtmp://169.254.169.254/app/key", ("live.example",), True),
        ("null", (), False),
        ("file", (), False),
    ],
)
def test_streams_go_only_to_allowed_hosts(
    output: str, allowed: tuple[str, ...], refused: bool
) -> None:
    if refused:
        with pytest.raises(NotOnThisAgent, match="--allow-output-host"):
            check_output_host(output, allowed)
    else:
        check_output_host(output, allowed)


def test_a_job_larger_than_the_agents_memory_or_disk_is_refused(tmp_path: Path) -> None:
    roomy = ResourceLimits(max_memory_bytes=64 * GIB, min_free_disk_bytes=0)
    huge = build_job_spec("8192x8192@240-h264", {"duration": 3600, "preset": "veryslow"})
    with pytest.raises(NotOnThisAgent, match="--max-job-memory"):
        check_resources(huge, ResourceLimits(8 * GIB, 0), tmp_path)
    small = build_job_spec("360p-h264", {"duration": 5})
    check_resources(small, roomy, tmp_path)
    no_disk = ResourceLimits(max_memory_bytes=64 * GIB, min_free_disk_bytes=2**62)
    with pytest.raises(NotOnThisAgent, match="--min-free-disk"):
        check_resources(small, no_disk, tmp_path)
    stream = build_job_spec("360p-h264", {"output": "rtmp://live.example/app/key"})
    check_resources(stream, no_disk, tmp_path)  # a stream writes nothing here
