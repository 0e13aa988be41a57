"""The encoder catalogue: names, engines, presets and devices agree with one another."""

from __future__ import annotations

import pytest

from ffleet.encoders import (
    DEFAULT_PRESETS,
    ENGINE_ENCODERS,
    ENGINES,
    HARDWARE_APIS,
    HARDWARE_ENGINES,
    PRESETS,
    RENDER_NODE_GPU_APIS,
    Device,
    accepts_preset,
    can_work_with,
    candidate_encoders,
    encoder_engine,
    encoder_family,
    hardware_api,
    needs_nvidia,
    required_encoder,
)


@pytest.mark.parametrize(
    ("encoder", "api"),
    [
        ("h264_nvenc", "nvenc"),
        ("nvenc_hevc", "nvenc"),  # the old FFmpeg alias spelling
        ("prores_ks_vulkan", "vulkan"),
        ("h264_mf", "mf"),
        ("hevc_videotoolbox", "videotoolbox"),
        ("libx264", None),
        ("libvpx-vp9", None),
        ("mpeg4", None),
    ],
)
def test_hardware_api(encoder: str, api: str | None) -> None:
    assert hardware_api(encoder) == api


def test_every_engine_encoder_belongs_to_its_engine() -> None:
    for (_, engine), encoder in ENGINE_ENCODERS.items():
        assert engine in ENGINES and engine != "auto"
        assert encoder_engine(encoder) == engine
        assert (hardware_api(encoder) is None) == (engine == "cpu")
    assert encoder_engine("h264_amf") == "cpu"  # no engine drives AMF


def test_every_engine_encoder_has_a_preset_family_and_a_valid_default() -> None:
    assert set(PRESETS) == set(DEFAULT_PRESETS)
    for encoder in ENGINE_ENCODERS.values():
        family = encoder_family(encoder)
        default = DEFAULT_PRESETS[family]
        assert default is None or default in PRESETS[family]
        assert accepts_preset(encoder, default)


def test_accepts_preset() -> None:
    assert accepts_preset("libx264", "veryslow")
    assert accepts_preset("h264_nvenc", "p7")
    assert not accepts_preset("h264_nvenc", "veryslow")
    assert not accepts_preset("h264_vaapi", "fast")  # VAAPI takes no preset
    assert accepts_preset("h264_vaapi", None)


def test_candidate_encoders_try_hardware_first() -> None:
    assert candidate_encoders("h264", "auto") == ["h264_nvenc", "h264_qsv", "h264_vaapi", "libx264"]
    assert candidate_encoders("vp9", "auto") == ["vp9_qsv", "vp9_vaapi", "libvpx-vp9"]
    assert candidate_encoders("vp9", "nvenc") == []
    assert candidate_encoders("hevc", "cpu") == ["libx265"]


def test_required_encoder_only_for_hardware_engines() -> None:
    assert required_encoder("h264", "auto") is None
    assert required_encoder("h264", "cpu") is None  # v1.0 nodes register no encoders
    assert required_encoder("hevc", "nvenc") == "hevc_nvenc"
    assert required_encoder("av1", "qsv") == "av1_qsv"
    assert required_encoder("vp9", "vaapi") == "vp9_vaapi"
    assert required_encoder("vp9", "nvenc") is None
    assert {required_encoder("h264", e) for e in HARDWARE_ENGINES} == {
        "h264_nvenc",
        "h264_qsv",
        "h264_vaapi",
    }


def test_only_nvenc_needs_an_nvidia_gpu() -> None:
    assert needs_nvidia("h264_nvenc") and needs_nvidia("nvenc_h264")
    for encoder in ("h264_vaapi", "hevc_qsv", "h264_vulkan", "h264_amf", "libx264", "rkmpp"):
        assert not needs_nvidia(encoder), encoder


def test_can_work_with() -> None:
    assert can_work_with("vaapi", frozenset({Device.RENDER_NODE}))
    assert not can_work_with("vaapi", frozenset({Device.NVIDIA_GPU, Device.WINDOWS}))
    assert can_work_with("vulkan", frozenset({Device.NVIDIA_GPU}))
    assert not can_work_with("videotoolbox", frozenset())
    assert can_work_with("rkmpp", frozenset())  # no rule known: always probe
    assert can_work_with("someday_api", frozenset())


def test_render_node_gpu_apis_use_the_render_node() -> None:
    for api in RENDER_NODE_GPU_APIS:
        devices = HARDWARE_APIS[api].devices
        assert devices is not None and Device.RENDER_NODE in devices
