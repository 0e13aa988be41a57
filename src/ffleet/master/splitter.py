"""The splitter: drives every split job from its plan to its joined, verified output.

A split job's parent runs on no node (see ffleet.store.splits). Each pass the splitter looks
at every running parent and takes the one step it is ready for:

- unplanned: probe the input blob, cut its video at keyframes (stream copy), keep the audio
  aside once, store each piece as a blob, and queue one child job per segment with the
  parent's scenario and parameters, so every segment is encoded with the same settings;
- planned: follow the children (ordinary jobs: placed, retried, fenced like any other), show
  their overall progress on the parent; a child that fails for good fails the parent;
- all children completed: concatenate their outputs (stream copy), mux the audio back, decode
  the result whole to check frame count, duration and every boundary, and complete the
  parent with the plan, who encoded what, and the totals;
- cancel requested on the parent: cancel every child, and the parent.

Cutting and joining copy streams, so they cost I/O, not encoding; the check decodes once.
Every step is idempotent: a master restarted mid-step, or a second master on the same
database, repeats or loses a race the store refuses (Conflict), never doubles anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread

from ffleet import segments
from ffleet.agent.argv import output_extension, quality_argv
from ffleet.agent.metrics import quality_score
from ffleet.blobs import BlobStore, is_ref, make_ref, parse_ref
from ffleet.models import JobRequest, Progress
from ffleet.scenarios import ScenarioError, build_job_spec
from ffleet.states import JobStatus
from ffleet.store import Store, StoreError, StoreUnavailable
from ffleet.store.splits import SplitChild, SplitState

log = logging.getLogger("ffleet.master")

ACTIVE_PASS_S = 0.5  # while split jobs run: how fresh their progress is
# With none running: how late a split job another master created (shared database) is seen.
# Jobs this master creates, cancels and retries wake the splitter at once, and so does a
# result when it may matter (see `Splitter.result_stored`).
IDLE_PASS_S = 5.0
MAX_SEGMENT_DURATION_S = 3600.0  # what a child's `duration` parameter may be


class SplitRefused(ValueError):
    """A split request that cannot work; the message is for the user (HTTP 400)."""


def check_request(request: JobRequest, has_blob: bool) -> None:
    """Refuse at submission what could never be split: the input must be an uploaded blob,
    and the output a file (a stream cannot be cut and joined)."""
    source = request.parameters.get("input")
    if not is_ref(source):
        raise SplitRefused("a split job needs --param input=blob:sha256:... (see ffleet upload)")
    if not has_blob:
        raise SplitRefused(f"no blob {source}; upload it first")
    if request.parameters.get("output", "file") not in ("file", "null"):
        raise SplitRefused("a split job's output is the joined file: leave 'output' out")
    try:
        build_job_spec(request.scenario, request.parameters)
    except ScenarioError as exc:
        raise SplitRefused(str(exc)) from None


class Splitter:
    def __init__(self, store: Store, blobs: BlobStore, ffmpeg: str | None) -> None:
        self.store = store
        self.blobs = blobs
        self._ffmpeg = ffmpeg
        self._busy: set[str] = set()  # parents with a cut or a join in a worker thread
        self._wake = asyncio.Event()
        # What the last pass saw: the children it follows, and whether a parent had no plan
        # yet (its children, being created here or by another master, are not known).
        self._children: frozenset[str] = frozenset()
        self._planning = False

    def wake(self) -> None:
        """Something a split job may be waiting for happened: look now, not at the next pass."""
        self._wake.set()

    def result_stored(self, job_id: str) -> None:
        """A job's result was stored: look now if the job may be a split job's child. Most
        results are not; a pass for each would be a read transaction on the event loop."""
        if self._planning or job_id in self._children:
            self._wake.set()

    @property
    def ffmpeg(self) -> str:
        if self._ffmpeg is None:
            from ffleet.agent.hardware import default_ffmpeg_path

            self._ffmpeg = default_ffmpeg_path()
        return self._ffmpeg

    async def run(self, on_children: Callable[[int], None]) -> None:
        """Pass after pass while the app runs; `on_children(n)` wakes agents for n new jobs."""
        active = True
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), ACTIVE_PASS_S if active else IDLE_PASS_S)
            self._wake.clear()
            try:
                states = self.store.running_splits()
                active = bool(states)
                self._planning = any(state.plan is None for state in states)
                self._children = frozenset(
                    child.job.id for state in states for child in state.children
                )
                for state in states:
                    self._step(state, on_children)
            except StoreUnavailable:
                continue  # said once by the master's store health, not once per pass
            except Exception:
                log.exception("splitter pass failed; will try again")

    def _step(self, state: SplitState, on_children: Callable[[int], None]) -> None:
        parent = state.parent
        if parent.id in self._busy:
            return
        if parent.cancel_requested:
            self._cancel_children(state)
            self._finish(state, "canceled", {}, "canceled by a user")
        elif state.plan is None:
            self._in_thread(state, self._plan, on_children)
        elif lost := self._lost_child(state.children):
            self._cancel_children(state)
            self._finish(state, "failed", {}, lost)
        elif all(c.job.status == JobStatus.COMPLETED for c in state.children):
            self._in_thread(state, self._join, None)
        else:
            self._show_progress(state)

    def _in_thread(
        self,
        state: SplitState,
        work: Callable[[SplitState], int],
        then: Callable[[int], None] | None,
    ) -> None:
        """Run a cut or a join off the event loop; `then(what it returned)` afterwards."""
        parent_id = state.parent.id
        self._busy.add(parent_id)

        async def step() -> None:
            try:
                done = await anyio.to_thread.run_sync(work, state)
                if then is not None:
                    then(done)
            except (segments.MediaError, ScenarioError, FileNotFoundError, OSError) as exc:
                log.warning("split job %s failed: %s", parent_id, exc)
                self._finish(state, "failed", {}, f"split job: {exc}")
            except StoreError as exc:  # another master took this step, or the parent ended
                log.info("split job %s: step not applied (%s)", parent_id, exc)
            finally:
                self._busy.discard(parent_id)
                self.wake()  # the next step (watch the children, or nothing) is due now

        asyncio.get_running_loop().create_task(step())

    # ------------------------------------------------------------------ steps

    def _plan(self, state: SplitState) -> int:
        """Cut and queue the children; how many."""
        parent = state.parent
        source = self.blobs.local_path(parse_ref(parent.parameters["input"]))
        with tempfile.TemporaryDirectory(dir=self.blobs.scratch_dir()) as scratch:
            work = Path(scratch)
            info = segments.probe(self.ffmpeg, source)
            pieces = segments.cut(self.ffmpeg, source, state.segment_s, work)
            audio = None
            if info.audio_codec is not None:
                audio_file = segments.extract_audio(self.ffmpeg, source, work / "audio.mka")
                audio = make_ref(self.blobs.put_file(audio_file))
            planned = [
                {
                    "index": piece.index,
                    "start_s": piece.start_s,
                    "end_s": piece.end_s,
                    "input_blob": make_ref(self.blobs.put_file(piece.path)),
                }
                for piece in pieces
            ]
        plan = {
            "segment_s": state.segment_s,
            "source": {
                "codec": info.codec,
                "width": info.width,
                "height": info.height,
                "fps": info.fps,
                "frames": info.frames,
                "duration_s": info.duration_s,
                "audio_codec": info.audio_codec,
            },
            "audio_blob": audio,
            "segments": planned,
        }
        children = [self._child_request(parent.id, state, segment) for segment in planned]
        created = self.store.plan_split(parent.id, parent.attempt, plan, children, time.time())
        log.info("split job %s planned: %d segments", parent.id, len(created))
        return len(created)

    @staticmethod
    def _child_request(parent_id: str, state: SplitState, segment: dict[str, Any]) -> JobRequest:
        parent = state.parent
        length = float(segment["end_s"]) - float(segment["start_s"])
        parameters = {key: value for key, value in parent.parameters.items() if key != "quality"}
        parameters.update(
            input=segment["input_blob"],
            output="file",
            # `-t` only caps: a second more than the segment keeps its last frame.
            duration=min(MAX_SEGMENT_DURATION_S, round(length + 1.0, 3)),
        )
        return JobRequest(
            scenario=parent.scenario,
            parameters=parameters,
            priority=parent.priority,
            requirements=parent.requirements,
            affinity=parent.affinity,
            anti_affinity=parent.anti_affinity,
            max_attempts=parent.max_attempts,
        )

    def _join(self, state: SplitState) -> int:
        parent, plan = state.parent, state.plan
        assert plan is not None
        codec = build_job_spec(parent.scenario, parent.parameters).scenario.codec
        muxer = output_extension(codec)
        outputs = [self.blobs.local_path(parse_ref(str(_output_ref(c)))) for c in state.children]
        audio_ref = plan.get("audio_blob")
        audio = self.blobs.local_path(parse_ref(audio_ref)) if audio_ref else None
        source = plan["source"]
        with tempfile.TemporaryDirectory(dir=self.blobs.scratch_dir()) as scratch:
            joined = segments.join(
                self.ffmpeg, outputs, audio, Path(scratch) / f"joined.{muxer}", muxer
            )
            check = segments.verify(self.ffmpeg, joined, source["frames"], source["fps"])
            check.update(self._quality(state, joined))
            size = joined.stat().st_size
            output = make_ref(self.blobs.put_file(joined))
        if not check["exact"]:
            raise segments.MediaError(f"the joined output is not exact: {check}")
        metrics = _totals(state, check)
        metrics.update(output_blob=output, output_bytes=size, output_path=None)
        self._finish(state, "completed", metrics, None)
        return 1

    def _quality(self, state: SplitState, joined: Path) -> dict[str, object]:
        """With `quality=psnr|ssim|vmaf`: the joined output against the whole source, with the
        same comparison a single job runs (segments are not scored one by one)."""
        parent = state.parent
        metric = parent.parameters.get("quality", "none")
        if metric == "none":
            return {}
        source = self.blobs.local_path(parse_ref(parent.parameters["input"]))
        whole = float((state.plan or {})["source"]["duration_s"]) + 1.0
        spec = build_job_spec(
            parent.scenario,
            {**parent.parameters, "input": str(source), "duration": min(whole, 3600.0)},
        )
        done = segments.run_ffmpeg(quality_argv(spec, self.ffmpeg, joined))
        if done.returncode != 0:
            return {"quality_metric": metric, "quality_score": None}
        score, _ = quality_score(spec.quality, done.stderr)
        return {"quality_metric": metric, "quality_score": score}

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _lost_child(children: list[SplitChild]) -> str | None:
        """Why the parent cannot complete: a child that failed for good or was canceled."""
        for child in children:
            if child.job.status in (JobStatus.FAILED, JobStatus.CANCELED):
                return (
                    f"segment {child.segment} (job {child.job.id}) {child.job.status}: "
                    f"{child.job.error or 'no reason given'}"
                )
            if child.job.status == JobStatus.COMPLETED and _output_ref(child) is None:
                return f"segment {child.segment} (job {child.job.id}) completed with no output"
        return None

    def _cancel_children(self, state: SplitState) -> None:
        now = time.time()
        for child in state.children:
            if child.job.status in (JobStatus.PENDING, JobStatus.RUNNING):
                try:
                    self.store.cancel(child.job.id, now)
                except StoreError as exc:
                    log.info("child %s not canceled: %s", child.job.id, exc)

    def _finish(
        self, state: SplitState, status: str, metrics: dict[str, Any], error: str | None
    ) -> None:
        parent = state.parent
        try:
            self.store.finish_split(parent.id, parent.attempt, status, metrics, error, time.time())
        except StoreError as exc:
            log.info("split job %s not finished here: %s", parent.id, exc)
            return
        log.info("split job %s %s%s", parent.id, status, f" ({error})" if error else "")

    def _show_progress(self, state: SplitState) -> None:
        percents = []
        for child in state.children:
            if child.job.status == JobStatus.COMPLETED:
                percents.append(100.0)
            else:
                progress = child.job.progress
                percents.append(progress.percent or 0.0 if progress else 0.0)
        percent = round(sum(percents) / max(1, len(percents)), 1)
        shown = state.parent.progress
        if shown is None or shown.percent != percent:
            self.store.record_split_progress(state.parent.id, Progress(percent=percent))


def _output_ref(child: SplitChild) -> str | None:
    ref = child.result.metrics.get("output_blob") if child.result is not None else None
    return ref if isinstance(ref, str) else None


def _totals(state: SplitState, check: dict[str, object]) -> dict[str, Any]:
    """The parent's result: the plan with who encoded each segment, and the totals."""
    plan = dict(state.plan or {})
    rows = []
    wall_sum = cpu_sum = 0.0
    for child, segment in zip(state.children, plan.get("segments", []), strict=True):
        metrics = child.result.metrics if child.result is not None else {}
        wall = float(metrics.get("wall_seconds") or 0.0)
        cpu = float(metrics.get("cpu_user_seconds") or 0.0) + float(
            metrics.get("cpu_system_seconds") or 0.0
        )
        wall_sum += wall
        cpu_sum += cpu
        rows.append(
            {
                **segment,
                "job_id": child.job.id,
                "node_id": child.result.node_id if child.result is not None else None,
                "attempts": child.job.attempt,
                "output_blob": _output_ref(child),
                "wall_seconds": wall,
                "cpu_seconds": cpu,
                "fps": metrics.get("fps"),
                "speed": metrics.get("speed"),
                "output_bytes": metrics.get("output_bytes"),
                "encoder": metrics.get("encoder"),
            }
        )
    plan["segments"] = rows
    started = state.parent.started_at or state.parent.created_at or time.time()
    elapsed = time.time() - started
    return {
        "split": plan,
        "verification": check,
        "frames": check["frames"],
        "duration_s": check["duration_s"],
        "wall_seconds": elapsed,
        "children_wall_seconds": wall_sum,
        "cpu_seconds": cpu_sum,
        "speedup": wall_sum / elapsed if elapsed > 0 else None,
        "nodes": sorted({row["node_id"] for row in rows if row["node_id"]}),
    }
