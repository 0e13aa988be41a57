from __future__ import annotations

import pytest

from ffleet.agent.analyzer import analyze
from ffleet.scenarios import build_job_spec

SPEC = build_job_spec("bench-320x240@30-h264", {"duration": 2})


def _metrics(**overrides: object) -> dict[str, object]:
    """A completed 2 s, 60-frame libx264 run at 4x real time on one busy core."""
    metrics: dict[str, object] = {
        "exit_code": 0,
        "encoder": "libx264",
        "frames": 60,
        "wall_seconds": 0.5,
        "cpu_user_seconds": 0.45,
        "cpu_system_seconds": 0.05,
        "bitrate_bps": 500_000,
        "energy_joules": None,
        "quality_metric": None,
        "quality_score": None,
    }
    metrics.update(overrides)
    return metrics


def _advice(cpus: int = 8, **overrides: object) -> str:
    return _recommendation(_metrics(**overrides), cpus)


def _recommendation(metrics: dict[str, object], cpus: int = 8) -> str:
    recommendation = analyze(SPEC, metrics, cpu_count=cpus)["recommendation"]
    assert isinstance(recommendation, str)
    return recommendation


def test_scenario_summary() -> None:
    assert analyze(SPEC, _metrics())["scenario"] == {
        "name": "bench-320x240@30-h264",
        "resolution": "320x240",
        "width": 320,
        "height": 240,
        "fps": 30,
        "codec": "h264",
        "tags": ["bench"],
    }


def test_efficiency_figures() -> None:
    figures = analyze(SPEC, _metrics(energy_joules=12.0, quality_metric="vmaf", quality_score=90))
    assert figures["efficiency"] == {
        "realtime_factor": pytest.approx(4.0),  # 60 frames / 30 fps = 2 s in 0.5 s
        "frames_per_cpu_second": pytest.approx(120.0),
        "frames_per_joule": pytest.approx(5.0),
        "quality_per_kbps": pytest.approx(0.18),
    }


def test_efficiency_without_energy_or_quality() -> None:
    efficiency = analyze(SPEC, _metrics())["efficiency"]
    assert isinstance(efficiency, dict)
    assert efficiency["frames_per_joule"] is None
    assert efficiency["quality_per_kbps"] is None


@pytest.mark.parametrize(
    "overrides", [{"exit_code": 255}, {"exit_code": None}, {"frames": 0}, {"frames": None}]
)
def test_rule_incomplete_run(overrides: dict[str, object]) -> None:
    advice = _recommendation({**_metrics(), **overrides})
    assert advice.startswith("The run did not complete")
    assert "real time" not in advice


def test_rule_below_real_time_cpu() -> None:
    advice = _advice(wall_seconds=4.0, cpu_user_seconds=3.0, cpu_system_seconds=0.2)
    assert "Cannot sustain real time at 320x240@30 h264 with libx264" in advice
    assert "(0.50x)" in advice and "hardware encoder" in advice


def test_rule_below_real_time_hardware() -> None:
    advice = _advice(encoder="h264_nvenc", wall_seconds=4.0)
    assert "Cannot sustain real time" in advice and "hardware encoder" not in advice


def test_rule_little_headroom() -> None:
    advice = _advice(wall_seconds=1.8)
    assert "little headroom (1.11x)" in advice
    assert "Cannot sustain" not in advice


STREAM = build_job_spec("320x240@30", {"duration": 2, "output": "rtmp://h/live/key"})


def test_rule_stream_uses_ffmpeg_speed() -> None:
    # Paced by -re: 2 s of video take 2.3 s including the connection, at speed 1.0x.
    paced = _metrics(wall_seconds=2.3, speed=1.0)
    advice = analyze(STREAM, paced, cpu_count=8)["recommendation"]
    assert isinstance(advice, str) and advice.startswith("Keeps up with the live stream")
    behind = analyze(STREAM, {**paced, "speed": 0.8}, cpu_count=8)["recommendation"]
    assert isinstance(behind, str) and "Cannot sustain real time" in behind and "(0.80x)" in behind


def test_rule_cpu_bound() -> None:
    advice = _advice(cpus=2, wall_seconds=0.5, cpu_user_seconds=0.9, cpu_system_seconds=0.05)
    assert "CPU-bound: 1.9 of 2 cores busy" in advice


def test_rule_cpu_bound_ignores_hardware_encoders() -> None:
    advice = _advice(cpus=2, encoder="h264_nvenc", cpu_user_seconds=0.95)
    assert "CPU-bound" not in advice


def test_rule_poor_scaling_below_real_time() -> None:
    advice = _advice(cpus=16, wall_seconds=4.0, cpu_user_seconds=4.0, cpu_system_seconds=0)
    assert "Only 1.0 of 16 cores were busy" in advice
    assert "Cannot sustain real time" in advice


def test_rule_poor_scaling_not_raised_when_fast_enough() -> None:
    assert "cores were busy" not in _advice(cpus=16)


@pytest.mark.parametrize(
    ("metric", "score", "expected"),
    [
        ("psnr", 30.0, "Quality is low (PSNR 30 dB < 35 dB)"),
        ("psnr", 40.0, None),
        ("psnr", 47.5, "near transparent (PSNR 47.5 dB >= 45 dB)"),
        ("ssim", 0.9, "Quality is low (SSIM 0.9 < 0.95)"),
        ("ssim", 0.97, None),
        ("ssim", 0.995, "near transparent (SSIM 0.995 >= 0.99)"),
        ("vmaf", 70.0, "Quality is low (VMAF 70 < 80)"),
        ("vmaf", 88.0, None),
        ("vmaf", 96.0, "near transparent (VMAF 96 >= 95)"),
    ],
)
def test_rule_quality_thresholds(metric: str, score: float, expected: str | None) -> None:
    advice = _advice(quality_metric=metric, quality_score=score)
    if expected is None:
        assert "Quality" not in advice
        assert "suits this workload" in advice
    else:
        assert expected in advice
        assert "suits this workload" not in advice


def test_rule_all_good() -> None:
    assert _advice() == (
        "Runs at 4.00x real time at 320x240@30 h264 with libx264 with headroom; "
        "this node suits this workload."
    )


def test_rules_combine() -> None:
    advice = _advice(
        cpus=2,
        wall_seconds=4.0,
        cpu_user_seconds=7.8,
        cpu_system_seconds=0.1,
        quality_metric="vmaf",
        quality_score=60.0,
    )
    assert "Cannot sustain" in advice and "CPU-bound" in advice and "Quality is low" in advice


def test_a_disturbed_run_gets_no_advice_only_the_reason() -> None:
    # The 1080p H.265 case: 52.9 s wall for 5.7 s CPU on a saturated node.
    spec = build_job_spec("1080p-h265", {"duration": 5})
    loaded = _metrics(
        encoder="libx265",
        frames=150,
        wall_seconds=52.9,
        cpu_user_seconds=5.5,
        cpu_system_seconds=0.2,
        disturbed=True,
        cpu_time_share=0.05,
        node_busy_cores=2.0,
    )
    analysis = analyze(spec, loaded, cpu_count=2)
    assert analysis["flags"] == ["disturbed"]
    advice = analysis["recommendation"]
    assert isinstance(advice, str)
    assert advice.startswith("Disturbed run: this job got 5% of the CPU time")
    assert "does not scale" not in advice and "Cannot sustain" not in advice


def test_a_missed_bitrate_is_flagged_with_the_figures() -> None:
    spec = build_job_spec("720p-av1", {"duration": 2, "bitrate": "500k"})
    analysis = analyze(spec, _metrics(encoder="libsvtav1", bitrate_bps=673_000), cpu_count=8)
    assert analysis["flags"] == ["bitrate_missed"]
    assert analysis["bitrate"] == {
        "requested_bps": 500_000,
        "measured_bps": 673_000,
        "deviation": pytest.approx(0.346),
        "missed": True,
    }
    assert "673 kbps for 500 kbps (+35%)" in str(analysis["recommendation"])
    close = analyze(spec, _metrics(encoder="libsvtav1", bitrate_bps=540_000), cpu_count=8)
    assert close["flags"] == [] and close["bitrate"]["missed"] is False  # type: ignore[index]
    assert analyze(SPEC, _metrics())["bitrate"] is None  # constant quality: nothing requested


def test_noisy_repeats_and_a_shared_master_are_said() -> None:
    analysis = analyze(
        SPEC,
        _metrics(noisy=True, noisy_metrics={"wall_seconds": 0.12}, master_as_worker=True),
        cpu_count=8,
    )
    assert analysis["flags"] == ["noisy", "master_as_worker"]
    advice = str(analysis["recommendation"])
    assert "wall_seconds CV 12.0%" in advice and "master runs on this node" in advice


def test_a_failed_run_says_it_failed_even_when_disturbed() -> None:
    advice = _advice(exit_code=1, disturbed=True, cpu_time_share=0.05)
    assert "did not complete" in advice and "Disturbed" not in advice
