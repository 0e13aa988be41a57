"""Generated video clips with audio, for the split tests and the split benchmark alike."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ffleet.agent.hardware import default_ffmpeg_path


def generated_clip(path: Path, seconds: int, size: str, fps: int = 30) -> Path:
    """A test-pattern clip with a sine tone: H.264 with a keyframe every second, AAC audio."""
    video = f"testsrc2=size={size}:rate={fps}:duration={seconds}"
    audio = f"sine=frequency=440:duration={seconds}"
    inputs = ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio]
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps), "-pix_fmt", "yuv420p"]
    argv = [default_ffmpeg_path(), "-v", "error", "-y", *inputs, *encode, "-c:a", "aac"]
    subprocess.run([*argv, "-shortest", str(path)], check=True, timeout=300)
    return path
