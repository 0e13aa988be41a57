"""The agent's lifecycle and its slots: start, serve, stop; pull a job, run FFmpeg, report.

Threads: the caller's thread starts and stops everything; one heartbeat thread (heartbeat)
reports every running job and applies the master's directives; `slots` worker threads each
long-poll for a job, run it and post its result, taking the next job from the result's reply.
Results go through the spool (result_delivery), so a master outage loses nothing; the node's
registration and the master's refusals are master_link's. Nothing here crashes on an
unreachable master: it logs once and tries again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import select
import signal
import threading
import time
from collections.abc import Callable
from types import TracebackType

from ffleet.agent.active_jobs import ActiveJob, ActiveJobs
from ffleet.agent.blob_cache import BlobCache
from ffleet.agent.client import MasterClient, MasterRejected, MasterUnavailable
from ffleet.agent.executor import Execution, execute
from ffleet.agent.exporter import AgentExporter, RunningJob
from ffleet.agent.ffmpeg_build import identify
from ffleet.agent.hardware import Hardware
from ffleet.agent.heartbeat import Heartbeat
from ffleet.agent.job_blobs import JobBlobs
from ffleet.agent.job_limits import (
    MIB,
    NotOnThisAgent,
    ResourceLimits,
    check_output_host,
    check_resources,
)
from ffleet.agent.leftovers import RunRecord, clean_leftovers
from ffleet.agent.master_link import MasterLink
from ffleet.agent.result_delivery import ResultDelivery
from ffleet.agent.settings import AgentSettings
from ffleet.agent.work_dir import WorkDirInUse, lock_work_dir
from ffleet.blobs import BlobError
from ffleet.models import Job, ResultSubmission, rfc3339
from ffleet.redaction import redact_url
from ffleet.scenarios import ScenarioError, build_job_spec, default_timeout_s

log = logging.getLogger(__name__)

START_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
SHUTDOWN_REASON = "agent shutting down"
# After the grace period: FFmpeg gets SIGTERM, then SIGKILL 2 s later; the release is one call.
CANCEL_WAIT_S = 30.0
_TICK_S = 0.2
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class AgentError(Exception):
    """The agent cannot run as configured (work dir in use, registration refused)."""


class Agent:
    """One agent process: `run()` serves until `request_stop()`, then shuts down cleanly."""

    def __init__(self, config: AgentSettings, hardware: Hardware, client: MasterClient) -> None:
        self.config = config
        self.hardware = hardware
        self.client = client
        memory = config.max_job_memory_mib * MIB or int(hardware.ram_bytes * 0.8)
        self._limits = ResourceLimits(
            max_memory_bytes=memory or 2**62,  # memory unknown: no limit rather than none run
            min_free_disk_bytes=config.min_free_disk_mib * MIB,
        )
        config.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock_file = lock_work_dir(config.work_dir)
        except WorkDirInUse as exc:
            raise AgentError(str(exc)) from None
        self.results = ResultDelivery(config.work_dir, client)
        self.cache = BlobCache(config.work_dir / "blobs", config.cache_bytes)
        self.files = JobBlobs(
            client, self.cache, config.work_dir / "outputs", config.kept_output_bytes
        )
        self._encoders = frozenset((*hardware.encoders, *hardware.hw_encoders))
        self._stop = threading.Event()
        self._jobs = ActiveJobs(self._stop)
        self._stop_requests = 0  # written by signal handlers: an int, no lock
        # A stop request also writes a byte here, so that the caller's thread sleeps until
        # one comes instead of looking five times a second (most of an idle agent's CPU).
        self._stop_read, self._stop_write = os.pipe()
        os.set_blocking(self._stop_read, False)
        os.set_blocking(self._stop_write, False)
        self._holds_requests = True  # until a /jobs/next reply shows the master does not wait
        # Hashed once here, at start; results repeat it (the digest is cached per file version).
        self.build = identify(hardware.ffmpeg_path)
        self.link = MasterLink(config, hardware, self.build, client, self._credential_refused)
        self._heartbeat = Heartbeat(config, client, self.link, self._jobs, self.results)
        self._master_as_worker = config.labels.get("master_as_worker") == "true"
        self.exporter = AgentExporter(lambda: self.link.node_id, self._running_jobs)

    def close(self) -> None:
        self._lock_file.close()
        os.close(self._stop_read)
        os.close(self._stop_write)

    def _running_jobs(self) -> list[RunningJob]:
        return [RunningJob(e.job.id, e.job.scenario, e.progress) for e in self._jobs.listed()]

    def __enter__(self) -> Agent:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def request_stop(self) -> None:
        """Ask the agent to stop; a second request skips the rest of the grace period.

        Safe in a signal handler: it takes no lock (the caller's thread turns it into events).
        """
        self._stop_requests += 1
        with contextlib.suppress(BlockingIOError):  # a full pipe wakes the reader already
            os.write(self._stop_write, b"\0")

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> None:
        """Clean up after a previous run, resend the spool, register, serve until a stop
        request, then shut down."""
        clean_leftovers(self.config.work_dir)
        self.results.check_spool()
        if not self._start():
            log.info("agent stopped before it registered")
            return
        threads = [
            threading.Thread(target=self._heartbeat.run, name="ffleet-heartbeat", daemon=True),
            *(
                threading.Thread(target=self._worker, name=f"ffleet-slot-{slot}", daemon=True)
                for slot in range(self.config.slots)
            ),
        ]
        for thread in threads:
            thread.start()
        self._wait_for_stop()
        self._stop.set()
        self._shutdown()
        self._heartbeat.stop()  # beats went on during the grace period, keeping the leases alive
        threads[0].join(timeout=5.0)
        log.info("agent stopped")

    def _start(self) -> bool:
        """Resend spooled results, then register; retry while the master is unreachable.

        The order matters: registering under a known id ends that node's running attempts,
        and a result for such an attempt would then be refused.
        """
        delay = START_BACKOFF_S
        while self._stop_requests == 0:
            try:
                if self.results.spool.resend(self.client):
                    self.link.register()
                    return True
                reason = "spooled results could not be delivered"
            except MasterUnavailable as exc:
                reason = str(exc)
            except MasterRejected as exc:
                if exc.status_code == 401 and self.link.enrolled:
                    raise AgentError(
                        f"the master refused this node's credential ({exc.message}): it was "
                        "revoked, or another master issued it; to enroll again, remove "
                        f"{self.config.work_dir / 'node-token'} and give --enroll-token"
                    ) from None
                raise AgentError(f"the master refused to register this node: {exc}") from None
            log.warning(
                "master %s unreachable at start (%s); retrying in %g s",
                redact_url(self.config.master_url),
                reason,
                delay,
            )
            self._wait_for_stop(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
        return False

    def _credential_refused(self, exc: MasterRejected) -> None:
        """Revoked: this node is out of the fleet, and the master already ended its work."""
        if self._stop_requests == 0:
            log.error("the master refused this node's credential (%s); stopping", exc.message)
        self.request_stop()

    def _shutdown(self) -> None:
        """Let running jobs finish within the grace period, then cancel and release them."""
        running = self._jobs.listed()
        if running:
            log.info(
                "stopping: waiting up to %g s for %d running job(s)",
                self.config.grace_s,
                len(running),
            )
        else:
            log.info("stopping: no job running")
        deadline = time.monotonic() + self.config.grace_s
        self._sleep_until(
            lambda: all(r.done.is_set() for r in running) or self._stop_requests > 1,
            max(0.0, deadline - time.monotonic()),
        )
        late = [r for r in running if not r.done.is_set()]
        for entry in late:
            log.warning("job %s still running after the grace period: stopping it", entry.job.id)
            entry.released = True
            entry.cancel.set()
        for entry in late:
            entry.done.wait(CANCEL_WAIT_S)
        self.results.resend_before_exit()

    def _wait_for_stop(self, timeout: float | None = None) -> None:
        """Sleep until a stop request (or `timeout`). A signal that another thread receives
        writes its number to the pipe too (`set_wakeup_fd`, possible on the main thread
        only; elsewhere no signal handler can run), so it wakes this thread as well."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            previous = signal.set_wakeup_fd(self._stop_write)
        except ValueError:  # not the main thread
            previous = None
        try:
            while self._stop_requests == 0:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                select.select([self._stop_read], [], [], left)
                with contextlib.suppress(BlockingIOError):
                    os.read(self._stop_read, 512)
        finally:
            if previous is not None:
                signal.set_wakeup_fd(previous)

    def _sleep_until(self, condition: Callable[[], bool], timeout: float | None = None) -> None:
        """Poll `condition` (it may depend on a signal handler, which cannot set an Event)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not condition():
            if deadline is not None and time.monotonic() >= deadline:
                return
            left = _TICK_S if deadline is None else min(_TICK_S, deadline - time.monotonic())
            time.sleep(max(0.0, left))

    # ------------------------------------------------------------------ workers

    def _worker(self) -> None:
        job: Job | None = None
        while True:
            try:
                if job is not None:
                    job = self._run_job(job)
                elif self._stop.is_set():
                    return
                else:
                    job = self._poll()
            except Exception:  # a worker must never die: the slot would be lost for good
                log.exception("worker failed unexpectedly; continuing")
                job = None
                self._stop.wait(self.config.poll_interval_s)

    def _poll(self) -> Job | None:
        if self.results.check_spool() is not None:
            self._stop.wait(self.config.poll_interval_s)
            return None
        seen = self.link.registrations
        wait = self.config.long_poll_s
        asked = time.monotonic()
        try:
            job = self.client.next_job(self.link.node_id, wait)
        except MasterUnavailable as exc:
            self.link.reachability.failed(exc)
            self._stop.wait(self.config.poll_interval_s)
            return None
        except MasterRejected as exc:
            if self.link.refused(exc, seen, "job request"):
                self._stop.wait(self.config.poll_interval_s)
            return None
        self.link.reachability.ok()
        if job is None and time.monotonic() - asked < wait / 2:
            if self._holds_requests:
                self._holds_requests = False
                log.info(
                    "master answers job requests at once (no long-poll); polling every %g s",
                    self.config.poll_interval_s,
                )
            self._stop.wait(self.config.poll_interval_s)
        return job

    def _run_job(self, job: Job) -> Job | None:
        """Run one job and post its result; returns the next job the reply carried."""
        entry = ActiveJob(job)
        if not self._jobs.admit(entry):
            self._release(job)
            return None
        self._heartbeat.job_started()
        # The job stays in the heartbeat report until its result is delivered or spooled: a
        # master that stops hearing of a running attempt hands the job to another node.
        try:
            return self._execute_and_report(entry)
        finally:
            self._jobs.end(entry)

    def _execute_and_report(self, entry: ActiveJob) -> Job | None:
        job = entry.job
        log.info("job %s attempt %d started: %s", job.id, job.attempt, job.scenario)
        execution = self._execute(entry)
        if entry.abandoned:
            log.warning("job %s attempt %d abandoned; result not posted", job.id, job.attempt)
            return None
        if entry.released and execution.status == "canceled":
            self._release(job)
            return None
        result = self._result(entry, execution)
        self.exporter.job_finished(result)
        log.info(
            "job %s attempt %d finished: %s%s",
            job.id,
            job.attempt,
            result.status,
            f" ({result.error})" if result.error else "",
        )
        # Asking for the next job, the reply waits for one as long as a poll would; the job
        # is over once its result is spooled (heartbeats list it from there), so that wait
        # holds up neither a stop nor the idle pace of heartbeats.
        if self._stop.is_set():
            following = self.results.send(result, claim_wait=None)
        else:
            ended = functools.partial(self._jobs.end, entry)
            following = self.results.send(result, self.config.long_poll_s, kept=ended)
        if following is not None and self._stop.is_set():
            self._release(following)
            return None
        return following

    def _execute(self, entry: ActiveJob) -> Execution:
        """Run the job; whatever goes wrong in the agent still ends in a result to post."""
        job = entry.job
        job_dir = self.config.work_dir / "jobs" / _UNSAFE.sub("_", f"{job.id}-{job.attempt}")
        try:
            spec = build_job_spec(job.scenario, job.parameters)
            check_output_host(spec.output, self.config.allowed_output_hosts)
            check_resources(spec, self._limits, job_dir)
            # The master ends the attempt at the same bound; a v1.0 master sends none.
            entry.timeout_s = job.timeout_s or default_timeout_s(spec)
            record = RunRecord.begin(job_dir)
            with self.files.input_of(spec) as local:
                execution = execute(
                    local,
                    ffmpeg=self.hardware.ffmpeg_path,
                    encoders=self._encoders,
                    work_dir=job_dir,
                    timeout_s=entry.timeout_s,
                    cancel=entry.cancel,
                    on_progress=entry.set_progress,
                    allowed_input_dirs=(*self.config.input_dirs, self.cache.directory),
                    stall_timeout_s=job.stall_timeout_s,
                    master_as_worker=self._master_as_worker,
                    on_child=record.child_started,
                )
            return self.files.deliver(job.id, execution)
        except NotOnThisAgent as exc:  # another agent may run it: never this one again
            return Execution("failed", {}, {}, str(exc), retryable=False, wrong_node=True)
        except ScenarioError as exc:
            return Execution("failed", {}, {}, str(exc), retryable=False)
        except BlobError as exc:  # the master may serve it again (restart, network back)
            return Execution("failed", {}, {}, f"input blob: {exc}", retryable=True)
        except Exception as exc:
            log.exception("job %s: the agent failed to run it", job.id)
            return Execution("failed", {}, {}, f"agent error: {exc!r}", retryable=True)
        finally:
            with contextlib.suppress(OSError):
                RunRecord(job_dir).end()
                job_dir.rmdir()  # kept only when it holds a file the job asked to keep

    def _result(self, entry: ActiveJob, execution: Execution) -> ResultSubmission:
        job = entry.job
        error = execution.error
        if execution.status == "canceled":
            error = entry.cancel_reason or error or "canceled"
        return ResultSubmission(
            job_id=job.id,
            node_id=self.link.node_id,
            attempt=job.attempt or None,  # a v1.0 master numbers no attempts
            # The wire has no `timeout` status; the executor already said whether to retry.
            status="failed" if execution.status == "timeout" else execution.status,
            metrics=execution.metrics,
            analyzer_output=execution.analyzer_output,
            error=error,
            completed_at=rfc3339(time.time()),
            retryable=execution.retryable,
            wrong_node=execution.wrong_node,
        )

    def _release(self, job: Job) -> None:
        """Hand an unfinished job back so another node runs it at once (no failed attempt)."""
        try:
            self.client.release(job.id, self.link.node_id, job.attempt, SHUTDOWN_REASON)
        except (MasterUnavailable, MasterRejected) as exc:
            log.warning(
                "job %s could not be released (%s); the master requeues it when its lease ends",
                job.id,
                exc,
            )
            return
        log.info("job %s attempt %d released: %s", job.id, job.attempt, SHUTDOWN_REASON)
