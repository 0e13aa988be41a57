from __future__ import annotations

import dataclasses

import pytest

from ffleet.scenarios import (
    JobSpec,
    Scenario,
    ScenarioError,
    build_job_spec,
    default_timeout_s,
    parse_scenario,
    scenario_reading,
)


@pytest.mark.parametrize(
    ("name", "width", "height", "fps", "codec", "tags"),
    [
        ("1080p30-h264", 1920, 1080, 30, "h264", ()),
        ("4K60-h264", 3840, 2160, 60, "h264", ()),
        ("test-1080p", 1920, 1080, 30, "h264", ("test",)),
        ("hevc-2160p", 3840, 2160, 30, "hevc", ()),
        ("4k60-H265", 3840, 2160, 60, "hevc", ()),
        ("AV1-1440p-Night", 2560, 1440, 30, "av1", ("night",)),
        ("480p25-vp9", 854, 480, 25, "vp9", ()),
        ("360p", 640, 360, 30, "h264", ()),
        ("smoke", 1280, 720, 30, "h264", ("smoke",)),
        ("320x240@25-vp9", 320, 240, 25, "vp9", ()),
        ("160x90", 160, 90, 30, "h264", ()),
        ("60fps-720p-av1-a-b", 1280, 720, 60, "av1", ("a", "b")),
        ("run#1-büro-720p", 1280, 720, 30, "h264", ("run#1", "büro")),
    ],
)
def test_parse_scenario(
    name: str, width: int, height: int, fps: int, codec: str, tags: tuple[str, ...]
) -> None:
    assert parse_scenario(name) == Scenario(name, width, height, fps, codec, tags)


def test_parse_scenario_keeps_the_name_as_given() -> None:
    assert parse_scenario("  4K60-h264 ").name == "4K60-h264"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("1080p-720p", "two resolutions"),
        ("4k-320x240", "two resolutions"),
        ("h264-vp9", "two codecs"),
        ("h265-hevc", "two codecs"),
        ("1080p30-60fps", "two frame rates"),
        ("a--b", "empty part"),
        ("720p-", "empty part"),
        ("321x240", "even"),
        ("8x8", "between"),
        ("1080p999", "Frame rate"),
        ("0fps", "Frame rate"),
        ("a/b", "slashes"),
        ("a b", "spaces"),
        ("x-\x00", "control"),
    ],
)
def test_parse_scenario_rejects(name: str, fragment: str) -> None:
    with pytest.raises(ScenarioError, match=fragment):
        parse_scenario(name)


def test_defaults() -> None:
    spec = build_job_spec("720p", None)
    assert spec == JobSpec(
        scenario=parse_scenario("720p"),
        duration_s=5.0,
        bitrate_bps=None,
        preset=None,
        engine="auto",
        input=None,
        output="null",
        quality="none",
    )
    assert build_job_spec("720p", {}) == spec
    # JSON null means "use the default".
    assert build_job_spec("720p", dict.fromkeys(("bitrate", "preset", "output"))) == spec


@pytest.mark.parametrize(
    ("value", "seconds"), [(10, 10.0), (2.5, 2.5), ("10", 10.0), ("1m", 60.0), ("500ms", 0.5)]
)
def test_duration(value: object, seconds: float) -> None:
    assert build_job_spec("720p", {"duration": value}).duration_s == seconds


@pytest.mark.parametrize("value", [0, 0.01, -1, 3601, "abc", True, float("nan"), [5]])
def test_duration_rejects(value: object) -> None:
    with pytest.raises(ScenarioError, match="duration"):
        build_job_spec("720p", {"duration": value})


@pytest.mark.parametrize(
    ("value", "bps"),
    [("5000k", 5_000_000), ("15M", 15_000_000), ("2.5m", 2_500_000), (800000, 800_000)],
)
def test_bitrate(value: object, bps: int) -> None:
    assert build_job_spec("720p", {"bitrate": value}).bitrate_bps == bps


@pytest.mark.parametrize("value", ["fast", "5", "2G", "-5k", "5 kbps", False])
def test_bitrate_rejects(value: object) -> None:
    with pytest.raises(ScenarioError, match="bitrate"):
        build_job_spec("720p", {"bitrate": value})


@pytest.mark.parametrize(
    ("scenario", "params"),
    [
        ("720p-h264", {"preset": "veryslow", "engine": "cpu"}),
        ("720p-hevc", {"preset": "Ultrafast"}),
        ("720p-h264", {"preset": "p4"}),  # auto may pick NVENC
        ("720p-h264", {"preset": "p7", "engine": "nvenc"}),
        ("720p-vp9", {"preset": "realtime"}),
        ("720p-vp9", {"preset": 8, "engine": "cpu"}),
        ("720p-av1", {"preset": 13, "engine": "cpu"}),
        ("720p-av1", {"preset": "p1", "engine": "nvenc"}),
        ("720p-hevc", {"preset": "medium", "engine": "qsv"}),
    ],
)
def test_preset_accepted(scenario: str, params: dict[str, object]) -> None:
    assert build_job_spec(scenario, params).preset == str(params["preset"]).lower()


@pytest.mark.parametrize(
    ("scenario", "params", "fragment"),
    [
        ("720p-h264", {"preset": "p4", "engine": "cpu"}, "does not suit"),
        ("720p-h264", {"preset": "placebo"}, "does not suit"),
        ("720p-vp9", {"preset": 9, "engine": "cpu"}, "does not suit"),
        ("720p-av1", {"preset": 14}, "does not suit"),
        ("720p-av1", {"preset": "veryfast", "engine": "cpu"}, "0, 1, 2"),
        ("720p-h264", {"preset": "ultrafast", "engine": "qsv"}, "does not suit"),
        ("720p-h264", {"preset": "fast", "engine": "vaapi"}, "takes no preset"),
    ],
)
def test_preset_rejected(scenario: str, params: dict[str, object], fragment: str) -> None:
    with pytest.raises(ScenarioError, match=fragment):
        build_job_spec(scenario, params)


def test_engine() -> None:
    assert build_job_spec("720p", {"engine": "NVENC"}).engine == "nvenc"
    with pytest.raises(ScenarioError, match="engine"):
        build_job_spec("720p", {"engine": "gpu"})
    with pytest.raises(ScenarioError, match="no nvenc encoder for vp9"):
        build_job_spec("720p-vp9", {"engine": "nvenc"})


def test_unknown_parameter_lists_the_allowed_ones() -> None:
    with pytest.raises(ScenarioError, match=r"codec_x.*allowed: duration, bitrate, preset"):
        build_job_spec("720p", {"codec_x": 1})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("null", "null"),
        ("FILE", "file"),
        ("rtmp://live.example.com/app/key", "rtmp://live.example.com/app/key"),
        ("rtmps://live.example.com:443/app/key", "rtmps://live.example.com:443/app/key"),
    ],
)
def test_output(value: str, expected: str) -> None:
    assert build_job_spec("720p", {"output": value}).output == expected


@pytest.mark.parametrize(
    "value", ["http://example.com/x", "rtmp://", "/tmp/out.mp4", "rtmp://h/a b", "srt://h:1"]
)
def test_output_rejects(value: str) -> None:
    with pytest.raises(ScenarioError, match="output"):
        build_job_spec("720p", {"output": value})


def test_quality() -> None:
    assert build_job_spec("720p", {"quality": "VMAF"}).quality == "vmaf"
    with pytest.raises(ScenarioError, match="quality"):
        build_job_spec("720p", {"quality": "mos"})
    with pytest.raises(ScenarioError, match="streaming output"):
        build_job_spec("720p", {"quality": "psnr", "output": "rtmp://h/app/key"})


def test_input_is_only_checked_for_shape_at_submission() -> None:
    assert build_job_spec("720p", {"input": "clips/a.mp4"}).input == "clips/a.mp4"
    with pytest.raises(ScenarioError, match="input"):
        build_job_spec("720p", {"input": "  "})
    with pytest.raises(ScenarioError, match="input"):
        build_job_spec("720p", {"input": {"path": "a"}})


def test_default_timeout_is_generous_and_grows_with_the_work() -> None:
    base = build_job_spec("720p", None)
    assert default_timeout_s(base) >= 60 + base.duration_s
    longer = dataclasses.replace(base, duration_s=600.0)
    bigger = build_job_spec("4K60", None)
    slower = build_job_spec("720p", {"preset": "veryslow"})
    heavier = build_job_spec("720p-av1", None)
    measured = build_job_spec("720p", {"quality": "vmaf"})
    for spec in (longer, bigger, slower, heavier, measured):
        assert default_timeout_s(spec) > default_timeout_s(base)
    tiny = build_job_spec("160x90", {"duration": 3600})
    assert default_timeout_s(tiny) >= 1.5 * 3600  # a paced stream takes its duration


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("1080p-h246", "'h246'.*'h264'"),
        ("1080-h265", "'1080'.*'1080p'"),
        ("720p-x265", "'x265'.*'h265'"),
        ("h.264-720p", "'h.264'.*'h264'"),
        ("hecv-720p", "'hecv'.*'hevc'"),
        ("vp8", "'vp8'.*'vp9'"),
        ("30fp-720p", "'30fp'.*'30fps'"),
        ("1920x-h264", "'1920x'.*'1920x1080'"),
        ("1080i", "'1080i'.*'1080p'"),
    ],
)
def test_a_token_that_looks_like_a_setting_is_refused_with_the_nearest_one(
    name: str, meant: str
) -> None:
    with pytest.raises(ScenarioError, match=f"{meant}"):
        parse_scenario(name)


def test_free_form_tags_stay_and_are_reported_as_understood() -> None:
    reading = scenario_reading("test-1080p-night-run")
    assert reading is not None
    assert (reading.resolution, reading.fps, reading.codec) == ("1920x1080", 30, "h264")
    assert reading.tags == ["test", "night", "run"]
    assert scenario_reading("1080p-h246") is None  # a stored name this grammar now refuses
