"""`ffleet run`: one job on this machine, without a master, with the agent's executor.

The result has the shape an agent reports, so local and fleet numbers compare directly.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from ffleet.agent.executor import Execution, execute
from ffleet.agent.hardware import default_ffmpeg_path, usable_encoders
from ffleet.models import Progress
from ffleet.scenarios import build_job_spec, default_timeout_s


def run_local(
    scenario: str,
    parameters: Mapping[str, object] | None,
    ffmpeg_path: str | None = None,
    work_dir: Path | None = None,
    timeout_s: float | None = None,
    *,
    encoders: Collection[str] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, object]:
    """Run one job here and return {scenario, parameters, status, metrics, analyzer_output, error}.

    Raises ScenarioError for an invalid scenario or parameter, RuntimeError when FFmpeg
    cannot run. Ctrl-C cancels the job and returns it as `canceled`. Without `work_dir` a
    temporary one is used and removed afterwards, unless `output=file` keeps the encoded
    file there (its path is in `metrics["output_path"]`). A local run may read any input
    file the user can read.
    """
    spec = build_job_spec(scenario, parameters)
    ffmpeg = ffmpeg_path or default_ffmpeg_path()
    available = usable_encoders(ffmpeg) if encoders is None else encoders
    directory = work_dir or Path(tempfile.mkdtemp(prefix="ffleet-run-"))
    cancel = threading.Event()
    outcome: list[Execution] = []

    def work() -> None:
        outcome.append(
            execute(
                spec,
                ffmpeg=ffmpeg,
                encoders=available,
                work_dir=directory,
                timeout_s=default_timeout_s(spec) if timeout_s is None else timeout_s,
                cancel=cancel,
                on_progress=on_progress,
                allowed_input_dirs=(Path.cwd(), Path("/")),
            )
        )

    worker = threading.Thread(target=work, name="ffleet-local-run")
    worker.start()
    try:
        while worker.is_alive():
            worker.join(timeout=0.2)
    except KeyboardInterrupt:
        cancel.set()
        worker.join()
    finally:
        if work_dir is None and spec.output != "file":
            shutil.rmtree(directory, ignore_errors=True)
    result = outcome[0]
    return {
        "scenario": scenario,
        "parameters": dict(parameters or {}),
        "status": result.status,
        "metrics": result.metrics,
        "analyzer_output": result.analyzer_output,
        "error": result.error,
    }
