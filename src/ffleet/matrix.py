"""Benchmark matrices: one YAML file expands into the cross product of jobs to submit.

```yaml
resolutions: [360p, 720p]          # or `scenarios: [4K60-h264, ...]` for explicit names
codecs: [h264, h265, vp9]
parameters:                        # a list varies, a scalar is fixed
  duration: 3
  bitrate: [1M, 3M]
repeats: 2                         # identical copies spread over nodes (see below)
same_build: true                   # every job requires the FFmpeg build most nodes run
job:                               # any other job field, applied to every job
  priority: high
  max_attempts: 2
```
Every expanded job is validated before anything is submitted, so a typo fails the whole matrix
with a message naming the combination, instead of half a benchmark.

A matrix's `repeats` are separate jobs, placed anywhere: they show how figures vary across
nodes and moments. The job parameters `warmup` and `repeats` instead run one job several
times on one node in one attempt, and its result carries the spread (see README).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import yaml

from ffleet.models import JobRequest, Requirements
from ffleet.scenarios import CODECS, ScenarioError, build_job_spec

KNOWN_KEYS = {
    "scenarios",
    "resolutions",
    "codecs",
    "parameters",
    "repeats",
    "same_build",
    "job",
}
# Answers "which FFmpeg build do most nodes run?" (its SHA-256), for `same_build`.
FleetBuild = Callable[[], str | None]


class MatrixError(ValueError):
    """The matrix file cannot be expanded; the message says where."""


def _as_list(value: Any, name: str) -> list[Any]:
    if isinstance(value, list):
        if not value:
            raise MatrixError(f"{name} must not be an empty list")
        return value
    return [value]


def _pin_build(job_fields: Mapping[str, Any], fleet_build: FleetBuild | None) -> dict[str, Any]:
    """`job_fields` with the majority build's SHA-256 added to the requirements."""
    build = fleet_build() if fleet_build is not None else None
    if build is None:
        raise MatrixError("same_build: no registered node reports its FFmpeg build yet")
    try:
        requirements = msgspec.convert(job_fields.get("requirements") or {}, Requirements)
    except msgspec.ValidationError as exc:
        raise MatrixError(f"job.requirements: {exc}") from None
    if requirements.ffmpeg_sha256 not in (None, build):
        raise MatrixError("same_build and job.requirements.ffmpeg_sha256 disagree; give one")
    pinned = msgspec.structs.replace(requirements, ffmpeg_sha256=build)
    return {**job_fields, "requirements": msgspec.to_builtins(pinned)}


def expand(document: Mapping[str, Any], fleet_build: FleetBuild | None = None) -> list[JobRequest]:
    """All jobs of the matrix, in a stable order (scenario-major, repeats innermost).

    `fleet_build` is asked only when the matrix says `same_build: true`."""
    unknown = set(document) - KNOWN_KEYS
    if unknown:
        raise MatrixError(
            f"unknown matrix keys: {', '.join(sorted(unknown))}; allowed: "
            + ", ".join(sorted(KNOWN_KEYS))
        )
    if "scenarios" in document:
        if "resolutions" in document or "codecs" in document:
            raise MatrixError("use either scenarios or resolutions/codecs, not both")
        scenarios = [str(s) for s in _as_list(document["scenarios"], "scenarios")]
    else:
        resolutions = _as_list(document.get("resolutions", "720p"), "resolutions")
        codecs = _as_list(document.get("codecs", "h264"), "codecs")
        unknown_codecs = [str(c) for c in codecs if str(c).lower() not in CODECS]
        if unknown_codecs:  # in a scenario name they would silently become tags
            raise MatrixError(
                f"unknown codecs: {', '.join(unknown_codecs)}; use {', '.join(sorted(CODECS))}"
            )
        scenarios = [f"{r}-{c}" for r, c in itertools.product(resolutions, codecs)]
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise MatrixError("parameters must be a mapping of name to value or list of values")
    names = list(parameters)
    choices = [_as_list(parameters[name], f"parameters.{name}") for name in names]
    repeats = document.get("repeats", 1)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= 1000:
        raise MatrixError("repeats must be an integer from 1 to 1000")
    job_fields = document.get("job") or {}
    if not isinstance(job_fields, Mapping):
        raise MatrixError("job must be a mapping of job fields")
    same_build = document.get("same_build", False)
    if not isinstance(same_build, bool):
        raise MatrixError("same_build must be true or false")
    if same_build:
        job_fields = _pin_build(job_fields, fleet_build)

    expanded: list[JobRequest] = []
    for scenario in scenarios:
        for combo in itertools.product(*choices):
            params = dict(zip(names, combo, strict=True))
            try:
                build_job_spec(scenario, params)
                request = msgspec.convert(
                    {**job_fields, "scenario": scenario, "parameters": params}, JobRequest
                )
            except (ScenarioError, msgspec.ValidationError) as exc:
                raise MatrixError(f"{scenario} with {params}: {exc}") from None
            expanded.extend([request] * repeats)
    return expanded


def load(text: str, fleet_build: FleetBuild | None = None) -> list[JobRequest]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MatrixError(f"not valid YAML: {exc}") from None
    if not isinstance(document, Mapping):
        raise MatrixError("a matrix file is a YAML mapping (see `ffleet submit --help`)")
    return expand(document, fleet_build)
