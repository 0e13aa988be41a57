"""What one submission may ask of the fleet: job size, attempts, and room left in the queue.

The scenario grammar allows 8192x8192 at 240 fps for an hour, which no agent survives (FFmpeg
passed 10 GiB of memory in 25 s); a queue without a bound lets one client fill the database.
The master refuses both up front with a 4xx that changes nothing; an agent still checks each
job against its own memory and disk before it runs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ffleet.master.http import ApiError
from ffleet.master.settings import MasterSettings
from ffleet.models import JobRequest
from ffleet.scenarios import ScenarioError, build_job_spec
from ffleet.states import JobStatus
from ffleet.store import Store

_encode = msgspec.json.Encoder().encode


def pixels_of(request: JobRequest) -> float:
    """width x height x fps x duration: the pixels a job encodes (0 when it does not parse;
    the store refuses that with its own message)."""
    try:
        spec = build_job_spec(request.scenario, request.parameters)
    except ScenarioError:
        return 0.0
    scenario = spec.scenario
    return scenario.width * scenario.height * scenario.fps * spec.duration_s


def check_submission(
    requests: Sequence[JobRequest], settings: MasterSettings, store: Store
) -> None:
    """Raises ApiError for a job over the size or attempt limits, or a queue without room.

    A batch repeats a few distinct jobs many times: each distinct scenario and parameters
    is measured once (the grammar's validation is most of a job's check)."""
    pixels: dict[tuple[str, bytes], float] = {}
    for index, request in enumerate(requests):
        if request.max_attempts > settings.max_attempts:
            raise ApiError(
                400,
                f"{_where(index, requests)}max_attempts is at most {settings.max_attempts} "
                "on this master",
            )
        key = (request.scenario, _encode(request.parameters))
        size = pixels.get(key)
        if size is None:
            size = pixels[key] = pixels_of(request)
        if size > settings.max_job_pixels:
            raise ApiError(
                400,
                f"{_where(index, requests)}too large: width x height x fps x duration exceeds "
                f"this master's --max-job-pixels ({settings.max_job_pixels:.3g}); "
                "shorten or shrink it",
            )
    if store.pending_exceeds(settings.max_queued_jobs - len(requests)):
        _, queued = store.list_jobs(JobStatus.PENDING.value, 1, 0)
        raise ApiError(
            429,
            f"the queue holds {queued} pending jobs and takes at most "
            f"{settings.max_queued_jobs}; submit again when it has drained",
            {"Retry-After": "60"},
        )


def _where(index: int, requests: Sequence[JobRequest]) -> str:
    """Which job of a batch an error is about (nothing for a single job)."""
    return f"job {index}: " if len(requests) > 1 else ""
