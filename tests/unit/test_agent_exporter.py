"""The agent's metrics endpoint in-process: finished results add to the counters (energy only
where it was measured), running jobs show their progress, and nothing is invented."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ffleet.agent.exporter import AgentExporter, RunningJob
from ffleet.models import Progress, ResultSubmission


def samples(exporter: AgentExporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(exporter.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_finished_jobs_add_only_what_was_measured() -> None:
    exporter = AgentExporter(lambda: None, list)
    metrics = {"cpu_user_seconds": 1.5, "cpu_system_seconds": 0.5, "energy_joules": 12.0}
    exporter.job_finished(
        ResultSubmission(job_id="a", node_id="n", status="completed", metrics=metrics)
    )
    unmeasured = {"cpu_user_seconds": 1.0, "cpu_system_seconds": None, "energy_joules": None}
    exporter.job_finished(
        ResultSubmission(job_id="b", node_id="n", status="failed", metrics=unmeasured)
    )
    seen = samples(exporter)
    assert seen[("ffleet_agent_jobs_total", (("status", "completed"),))] == 1
    assert seen[("ffleet_agent_jobs_total", (("status", "failed"),))] == 1
    assert seen[("ffleet_agent_jobs_total", (("status", "canceled"),))] == 0
    assert seen[("ffleet_agent_job_cpu_seconds_total", ())] == 2.0
    assert seen[("ffleet_agent_job_energy_joules_total", ())] == 12.0
    assert not any(name == "ffleet_agent_node_info" for name, _ in seen)  # not registered yet


def test_running_jobs_show_what_their_progress_says() -> None:
    running = [
        RunningJob("j1", "720p-h264", Progress(percent=25.0, fps=60.0)),
        RunningJob("j2", "360p-vp9", None),  # just started: no progress yet
    ]
    seen = samples(AgentExporter(lambda: "node-1", lambda: running))
    labels = (("job_id", "j1"), ("scenario", "720p-h264"))
    assert seen[("ffleet_agent_job_progress_ratio", labels)] == 0.25
    assert seen[("ffleet_agent_job_fps", labels)] == 60.0
    assert not any(dict(key).get("job_id") == "j2" for _, key in seen)
    assert seen[("ffleet_agent_running_jobs", ())] == 2
    assert seen[("ffleet_agent_node_info", (("node", "node-1"),))] == 1
    assert seen[("ffleet_agent_ffmpeg_processes", ())] == 0  # this test runs no FFmpeg
