"""Quality scores against references computed without ffleet's quality pass.

Every codec x container ffleet writes is scored by the executor, then by this module: both
files are decoded to raw YUV 4:2:0 frames, frame i of the encode is paired with frame i of the
source, and PSNR is computed here in Python from the squared error over all samples (the
figure FFmpeg's `psnr` filter prints as `average`). A pairing by timestamp, which WebM's 1 ms
time base breaks, misses this by several dB. An identical (lossless) file must score PSNR inf,
SSIM 1 and VMAF about 100 in both containers.
"""

from __future__ import annotations

import math
import subprocess
import threading
from pathlib import Path

import imageio_ffmpeg  # type: ignore[import-untyped]
import pytest

from ffleet.agent.argv import build_argv, quality_argv
from ffleet.agent.executor import execute
from ffleet.agent.metrics import quality_score
from ffleet.scenarios import JobSpec, build_job_spec

FFMPEG: str = imageio_ffmpeg.get_ffmpeg_exe()
SIZE = "176x144"
# codec -> the CPU encoder ffleet uses for it (the container follows the codec).
CODECS = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1", "vp9": "libvpx-vp9"}
LOSSLESS = {
    "mp4": ["-c:v", "libx264", "-qp", "0"],
    "webm": ["-c:v", "libvpx-vp9", "-lossless", "1"],
}


RAW_OUT = ["-map", "0:v:0", "-pix_fmt", "yuv420p", "-f", "rawvideo", "-"]


def _raw_frames(argv_input: list[str]) -> bytes:
    done = subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", *argv_input, *RAW_OUT],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def _source_input(spec: JobSpec) -> list[str]:
    scenario = spec.scenario
    pattern = (
        f"testsrc2=size={scenario.width}x{scenario.height}:rate={scenario.fps}"
        f":duration={spec.duration_s:g}"
    )
    return ["-f", "lavfi", "-i", pattern]


def reference_psnr(spec: JobSpec, encoded: Path) -> float:
    """PSNR of `encoded` against the source, frames paired by decode order."""
    scenario = spec.scenario
    frame_bytes = scenario.width * scenario.height * 3 // 2
    source = _raw_frames(_source_input(spec))
    distorted = _raw_frames(["-i", str(encoded)])
    frames = min(len(source), len(distorted)) // frame_bytes
    assert frames == round(spec.duration_s * scenario.fps)
    count = frames * frame_bytes
    squared = sum((a - b) ** 2 for a, b in zip(source[:count], distorted[:count], strict=True))
    return 10 * math.log10(255**2 / (squared / count))


@pytest.mark.integration
@pytest.mark.parametrize("codec", list(CODECS))
def test_psnr_matches_a_pairing_by_frame_index(codec: str, tmp_path: Path) -> None:
    spec = build_job_spec(
        f"{SIZE}-{codec}", {"duration": 1, "quality": "psnr", "output": "file", "engine": "cpu"}
    )
    result = execute(
        spec,
        ffmpeg=FFMPEG,
        encoders=frozenset(CODECS.values()),
        work_dir=tmp_path,
        timeout_s=120,
        cancel=threading.Event(),
    )
    assert result.status == "completed", result.error
    score = result.metrics["quality_score"]
    assert isinstance(score, float)
    output = result.metrics["output_path"]
    assert isinstance(output, str)
    assert score == pytest.approx(reference_psnr(spec, Path(output)), abs=0.02)


@pytest.mark.integration
@pytest.mark.parametrize("container", list(LOSSLESS))
@pytest.mark.parametrize("metric", ["psnr", "ssim", "vmaf"])
def test_an_identical_file_scores_perfect(container: str, metric: str, tmp_path: Path) -> None:
    codec = "vp9" if container == "webm" else "h264"
    spec = build_job_spec(f"{SIZE}-{codec}", {"duration": 1, "quality": metric})
    encoded = tmp_path / f"identical.{container}"
    argv = build_argv(spec, FFMPEG, CODECS[codec], str(encoded))
    encoder_at = argv.index("-c:v")
    lossless = [*argv[:encoder_at], *LOSSLESS[container], "-f", container, str(encoded)]
    subprocess.run(lossless, capture_output=True, check=True, timeout=60)
    check = subprocess.run(
        quality_argv(spec, FFMPEG, encoded), capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stderr[-2000:]
    score, why = quality_score(metric, check.stderr)
    if metric == "psnr":
        assert score is None and why is not None and "infinite" in why
    elif metric == "ssim":
        assert score == 1.0
    else:
        assert score is not None and score > 99.0
