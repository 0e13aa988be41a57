"""The FFmpeg command lines and the encoder choice, checked as argv lists (FFmpeg never runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffleet.agent.argv import build_argv, choose_encoder, is_stream, quality_argv, redact
from ffleet.scenarios import ScenarioError, build_job_spec


def test_choose_encoder_rules() -> None:
    h264 = build_job_spec("720p", None)
    assert choose_encoder(h264, {"libx264"}) == "libx264"
    assert choose_encoder(h264, {"libx264", "h264_vaapi", "h264_nvenc"}) == "h264_nvenc"
    cpu = build_job_spec("720p", {"engine": "cpu"})
    assert choose_encoder(cpu, {"libx264", "h264_nvenc"}) == "libx264"
    x264_preset = build_job_spec("720p", {"preset": "veryslow"})
    assert choose_encoder(x264_preset, {"libx264", "h264_nvenc"}) == "libx264"
    nvenc_preset = build_job_spec("720p", {"preset": "p5"})
    assert choose_encoder(nvenc_preset, {"libx264", "h264_nvenc"}) == "h264_nvenc"
    with pytest.raises(ScenarioError, match="does not suit libx264"):
        choose_encoder(nvenc_preset, {"libx264"})
    with pytest.raises(ScenarioError, match="needs hevc_nvenc"):
        choose_encoder(build_job_spec("720p-hevc", {"engine": "nvenc"}), {"libx265"})
    with pytest.raises(ScenarioError, match="no av1 encoder"):
        choose_encoder(build_job_spec("720p-av1", None), {"libx264"})


def test_build_argv_shapes() -> None:
    spec = build_job_spec("1080p60-hevc", {"bitrate": "6M", "output": "rtmp://h/live/key"})
    argv = build_argv(spec, "ffmpeg", "libx265", spec.output)
    assert argv[0] == "ffmpeg" and argv[-1] == "rtmp://h/live/key"
    assert argv[argv.index("-progress") : argv.index("-progress") + 2] == ["-progress", "pipe:1"]
    assert "-nostats" in argv and "-re" in argv
    assert argv[argv.index("-f", argv.index("-c:v")) + 1] == "flv"
    assert "testsrc2=size=1920x1080:rate=60:duration=5" in argv
    assert argv[argv.index("-maxrate") + 1] == "6000000"
    assert argv[argv.index("-g") + 1] == "120"

    vp9 = build_job_spec("320x240-vp9", {"preset": 3, "input": "/m/a.mkv", "duration": 1})
    argv = build_argv(vp9, "ffmpeg", "libvpx-vp9", "/w/out.webm")
    assert argv[argv.index("-deadline") + 1] == "good"
    assert argv[argv.index("-cpu-used") + 1] == "3"
    assert argv[argv.index("-vf") + 1] == "scale=320:240,fps=30,format=yuv420p"
    assert argv[argv.index("-crf") + 1] == "31"
    assert argv.count("-t") == 2 and "-re" not in argv

    vaapi = build_job_spec("720p", {"engine": "vaapi"})
    argv = build_argv(vaapi, "ffmpeg", "h264_vaapi", "/w/out.mp4")
    assert argv[argv.index("-vf") + 1] == "format=nv12,hwupload"
    assert "-preset" not in argv

    nvenc = build_job_spec("720p-av1", {"engine": "nvenc"})
    argv = build_argv(nvenc, "ffmpeg", "av1_nvenc", "/w/out.mp4")
    assert argv[argv.index("-preset") + 1] == "p2"
    assert argv[argv.index("-cq") + 1] == "32"


def test_quality_pass_compares_the_encoded_file_with_the_same_source() -> None:
    spec = build_job_spec("160x90", {"duration": 1, "input": "/m/a.mkv", "quality": "ssim"})
    argv = quality_argv(spec, "ffmpeg", Path("/w/out.mp4"))
    assert argv[argv.index("-i") + 1] == "/w/out.mp4"
    assert argv[-3:] == ["-f", "null", "-"]
    assert argv.count("-i") == 2 and "file:/m/a.mkv" in argv
    graph = argv[argv.index("-lavfi") + 1]
    assert "scale=160:90,fps=30," in graph and graph.endswith("ssim=shortest=1")


def test_stream_keys_and_credentials_are_redacted() -> None:
    url = "rtmp://user:pw@live.example/app/s3cret"
    assert is_stream(url) and not is_stream("null") and not is_stream("file")
    assert redact(f"failed to open {url}", url) == (
        "failed to open rtmp://live.example/app/<redacted>"
    )
    assert redact("output.mp4 written", "file") == "output.mp4 written"
