"""Tests of agent/encoder_probe.py: FFmpeg's version and encoder list parsed, which encoders a
host is worth probing for, the probe's command line, and a real probe encode."""

from __future__ import annotations

import pytest

from ffleet.agent import encoder_probe
from ffleet.agent.encoder_probe import (
    AccelHost,
    detect_ffmpeg,
    parse_ffmpeg_encoders,
    parse_ffmpeg_version,
    probe_command,
    probe_encoder,
    should_probe,
)
from ffleet.agent.hardware import default_ffmpeg_path
from ffleet.encoders import Device, hardware_api
from tests.unit.hardware_samples import DRI_HOST, NO_ACCEL, fixture

# The 29 hardware encoders in the captured n9.0.2 encoder list.
FIXTURE_HW_ENCODERS = {
    "av1_nvenc", "av1_qsv", "av1_amf", "av1_vaapi", "av1_vulkan", "ffv1_vulkan",
    "h263_v4l2m2m", "h264_amf", "h264_nvenc", "h264_qsv", "h264_v4l2m2m", "h264_vaapi",
    "h264_vulkan", "hevc_amf", "hevc_nvenc", "hevc_qsv", "hevc_v4l2m2m", "hevc_vaapi",
    "hevc_vulkan", "mjpeg_qsv", "mjpeg_vaapi", "mpeg2_qsv", "mpeg2_vaapi", "mpeg4_v4l2m2m",
    "prores_ks_vulkan", "vp8_v4l2m2m", "vp8_vaapi", "vp9_vaapi", "vp9_qsv",
}  # fmt: skip

# --- parsers ------------------------------------------------------------------------------


def test_parse_ffmpeg_version() -> None:
    text = fixture("ffmpeg-version-n9.0.2.txt")
    assert parse_ffmpeg_version(text) == "n9.0.2-17-g2a571b6068-20260930"
    distro = "ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023 the FFmpeg developers\n"
    assert parse_ffmpeg_version(distro) == "6.1.1-3ubuntu5"
    assert parse_ffmpeg_version("bash: ffmpeg: command not found\n") == ""


def test_parse_ffmpeg_encoders_lists_video_encoders_only() -> None:
    names = parse_ffmpeg_encoders(fixture("ffmpeg-encoders-n9.0.2.txt"))
    assert len(names) == 139
    assert len(set(names)) == 139
    assert names[:3] == ["a64multi", "a64multi5", "alias_pix"]
    assert names[-1] == "zmbv"
    for video in ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "h264_nvenc", "ffv1"):
        assert video in names
    # the legend line " V..... = Video", audio and subtitle encoders
    for other in ("=", "aac", "libopus", "flac", "ass", "webvtt"):
        assert other not in names


def test_hardware_api() -> None:
    names = parse_ffmpeg_encoders(fixture("ffmpeg-encoders-n9.0.2.txt"))
    assert {name for name in names if hardware_api(name)} == FIXTURE_HW_ENCODERS
    assert hardware_api("h264_nvenc") == "nvenc"
    assert hardware_api("prores_ks_vulkan") == "vulkan"
    assert hardware_api("hevc_videotoolbox") == "videotoolbox"
    assert hardware_api("h264_mf") == "mf"
    assert hardware_api("libx264") is None
    assert hardware_api("mpeg4") is None


# --- probe planning -----------------------------------------------------------------------


def planned(host: AccelHost) -> set[str]:
    return {name for name in FIXTURE_HW_ENCODERS if should_probe(hardware_api(name) or "", host)}


def test_nothing_is_probed_without_accelerators() -> None:
    assert planned(NO_ACCEL) == set()


def test_nvidia_only_linux_probes_nvenc_and_vulkan() -> None:
    host = AccelHost(system="linux", nvidia_gpu=True, render_node=None, video_devices=False)
    assert planned(host) == {
        "av1_nvenc", "h264_nvenc", "hevc_nvenc",
        "av1_vulkan", "ffv1_vulkan", "h264_vulkan", "hevc_vulkan", "prores_ks_vulkan",
    }  # fmt: skip


def test_dri_probes_vaapi_qsv_amf_vulkan_but_not_nvenc() -> None:
    host = AccelHost(
        "linux", nvidia_gpu=False, render_node="/dev/dri/renderD128", video_devices=False
    )
    families = {hardware_api(name) for name in planned(host)}
    assert families == {"vaapi", "qsv", "amf", "vulkan"}


def test_v4l2m2m_needs_video_devices_and_videotoolbox_needs_macos() -> None:
    arm_board = AccelHost("linux", nvidia_gpu=False, render_node=None, video_devices=True)
    assert {hardware_api(n) for n in planned(arm_board)} == {"v4l2m2m"}
    mac = AccelHost("darwin", nvidia_gpu=False, render_node=None, video_devices=False)
    assert should_probe("videotoolbox", mac)
    assert not should_probe("videotoolbox", NO_ACCEL)
    assert not should_probe("vaapi", mac)


def test_unknown_family_is_probed() -> None:
    assert should_probe("rkmpp", NO_ACCEL)


def test_probe_command_software_frames() -> None:
    argv = probe_command("/opt/ffmpeg", "h264_nvenc")
    assert argv[0] == "/opt/ffmpeg"
    assert "-init_hw_device" not in argv
    assert "-vf" not in argv
    assert argv[argv.index("-i") + 1] == "color=size=256x256:duration=0.1"
    assert argv[-5:] == ["-c:v", "h264_nvenc", "-f", "null", "-"]


def test_probe_command_uploads_for_vaapi_and_vulkan() -> None:
    vaapi = probe_command("ffmpeg", "hevc_vaapi", "/dev/dri/renderD129")
    assert vaapi[vaapi.index("-init_hw_device") + 1] == "vaapi=hw:/dev/dri/renderD129"
    assert vaapi[vaapi.index("-vf") + 1] == "format=nv12,hwupload"
    # global options must come before the input
    assert vaapi.index("-init_hw_device") < vaapi.index("-i") < vaapi.index("-vf")
    vulkan = probe_command("ffmpeg", "av1_vulkan")
    assert vulkan[vulkan.index("-init_hw_device") + 1] == "vulkan=hw"


def test_probe_encoder_runs_a_real_encode() -> None:
    ffmpeg = default_ffmpeg_path()
    assert probe_encoder(ffmpeg, "libx264")
    assert not probe_encoder(ffmpeg, "no_such_encoder")
    assert not probe_encoder("/nonexistent/ffmpeg", "libx264")


def test_detect_ffmpeg_probes_only_plausible_encoders(monkeypatch: pytest.MonkeyPatch) -> None:
    probed: list[str] = []

    def fake_probe(ffmpeg: str, encoder: str, render_node: str | None = None) -> bool:
        probed.append(encoder)
        return encoder == "h264_nvenc"

    monkeypatch.setattr(encoder_probe, "probe_encoder", fake_probe)
    host = AccelHost("linux", nvidia_gpu=True, render_node=None, video_devices=False)
    version, software, working = detect_ffmpeg(default_ffmpeg_path(), host)
    assert version == "n9.0.2-17-g2a571b6068-20260930"
    assert working == ["h264_nvenc"]
    assert {hardware_api(name) for name in probed} == {"nvenc", "vulkan"}
    assert "libx264" in software
    assert not set(software) & FIXTURE_HW_ENCODERS


def test_accel_host_devices() -> None:
    assert NO_ACCEL.devices == frozenset()
    assert DRI_HOST.devices == {Device.RENDER_NODE}
    both = AccelHost(
        "linux", nvidia_gpu=True, render_node="/dev/dri/renderD128", video_devices=True
    )
    assert both.devices == {Device.NVIDIA_GPU, Device.RENDER_NODE, Device.VIDEO_NODE}
    windows = AccelHost("windows", nvidia_gpu=False, render_node="x", video_devices=True)
    assert windows.devices == {Device.WINDOWS}
