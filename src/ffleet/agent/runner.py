"""The agent loop: register, heartbeat, pull jobs, run FFmpeg, bring every result home.

Threads: the caller's thread starts and stops everything; one heartbeat thread reports every
running job and applies the master's directives; `slots` worker threads each long-poll for a
job, run it and post its result, taking the next job from the result's reply. Results go
through the spool, so a master outage loses nothing. Nothing here crashes on an unreachable
master: it logs once and tries again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

import msgspec

from ffleet.agent.blob_cache import BlobCache
from ffleet.agent.client import MasterClient, MasterRejected, MasterUnavailable
from ffleet.agent.executor import Execution, execute
from ffleet.agent.exporter import AgentExporter, RunningJob
from ffleet.agent.ffmpeg_build import identify
from ffleet.agent.hardware import Hardware, registration_payload
from ffleet.agent.job_blobs import JobBlobs
from ffleet.agent.job_limits import (
    MIB,
    NotOnThisAgent,
    ResourceLimits,
    check_output_host,
    check_resources,
)
from ffleet.agent.leftovers import RunRecord, clean_leftovers
from ffleet.agent.settings import AgentSettings
from ffleet.agent.spool import Spool
from ffleet.agent.work_dir import (
    WorkDirInUse,
    lock_work_dir,
    read_node_id,
    read_node_token,
    write_node_id,
    write_node_token,
)
from ffleet.blobs import BlobError
from ffleet.models import (
    Directive,
    Job,
    Progress,
    ProgressReport,
    ResultSubmission,
    rfc3339,
)
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


@dataclass
class _Running:
    """A job a worker is executing, as the heartbeat thread sees it."""

    job: Job
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)  # result posted or released
    timeout_s: float = 0.0
    progress: Progress | None = None
    cancel_reason: str | None = None  # a user's cancel, told by the master
    abandoned: bool = False  # the master gave this attempt away: never post its result
    released: bool = False  # shutdown outlasted the grace period: hand the job back

    def set_progress(self, progress: Progress) -> None:
        self.progress = progress

    def report(self) -> ProgressReport:
        return ProgressReport(
            job_id=self.job.id, attempt=self.job.attempt or None, progress=self.progress
        )


class _Reachability:
    """Logs a lost or regained master once per change instead of once per failed call."""

    def __init__(self, url: str) -> None:
        self._url = redact_url(url)
        self._down = False
        self._lock = threading.Lock()

    def failed(self, exc: Exception) -> None:
        with self._lock:
            first, self._down = not self._down, True
        if first:
            log.warning("master %s unreachable: %s", self._url, exc)

    def ok(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            log.info("master %s reachable again", self._url)


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
        self.spool = Spool(config.work_dir)
        self.cache = BlobCache(config.work_dir / "blobs", config.cache_bytes)
        self.files = JobBlobs(
            client, self.cache, config.work_dir / "outputs", config.kept_output_bytes
        )
        self.node_id = read_node_id(config.work_dir)
        # Once enrolled, the node's own credential; until then the enrollment token.
        self._enrolled = read_node_token(config.work_dir) is not None
        credential = read_node_token(config.work_dir) or config.enroll_token
        if credential is not None:
            client.use_token(credential)
        self._encoders = frozenset((*hardware.encoders, *hardware.hw_encoders))
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_requests = 0  # written by signal handlers: an int, no lock
        # A stop request also writes a byte here, so that the caller's thread sleeps until
        # one comes instead of looking five times a second (most of an idle agent's CPU).
        self._stop_read, self._stop_write = os.pipe()
        os.set_blocking(self._stop_read, False)
        os.set_blocking(self._stop_write, False)
        self._register_lock = threading.Lock()
        self._registrations = 0
        self._spool_waiting = threading.Event()
        self._beat_now = threading.Event()  # a job started, or the heartbeat is to stop
        self._link = _Reachability(config.master_url)
        self._holds_requests = True  # until a /jobs/next reply shows the master does not wait
        self._problem: str | None = None  # what keeps this node from taking work now
        # Hashed once here, at start; results repeat it (the digest is cached per file version).
        self.build = identify(hardware.ffmpeg_path)
        self._master_as_worker = config.labels.get("master_as_worker") == "true"
        self.exporter = AgentExporter(lambda: self.node_id, self._running_jobs)

    def close(self) -> None:
        self._lock_file.close()
        os.close(self._stop_read)
        os.close(self._stop_write)

    def _running_jobs(self) -> list[RunningJob]:
        with self._lock:
            entries = list(self._running.values())
        return [RunningJob(e.job.id, e.job.scenario, e.progress) for e in entries]

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
        self._check_spool()
        if not self._start():
            log.info("agent stopped before it registered")
            return
        halt = threading.Event()
        threads = [
            threading.Thread(
                target=self._heartbeat_loop, args=(halt,), name="ffleet-heartbeat", daemon=True
            ),
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
        halt.set()  # beats went on during the grace period, keeping the leases alive
        self._beat_now.set()
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
                if self.spool.resend(self.client):
                    self._register()
                    return True
                reason = "spooled results could not be delivered"
            except MasterUnavailable as exc:
                reason = str(exc)
            except MasterRejected as exc:
                if exc.status_code == 401 and self._enrolled:
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

    def _register(self) -> None:
        registration = registration_payload(
            self.hardware,
            _local_address(self.config.master_url),
            dict(self.config.labels),
            slots=self.config.slots,
            node_id=self.node_id,
        )
        registration = msgspec.structs.replace(
            registration,
            ffmpeg_sha256=self.build.sha256,
            ffmpeg_configuration=self.build.configuration,
        )
        node = self.client.register(registration)
        if node.id != self.node_id:  # a master that assigns its own ids (v1.0, enrollment)
            self.node_id = node.id
            write_node_id(self.config.work_dir, node.id)
        if node.token is not None:  # enrolled: from now on this node's own credential
            path = write_node_token(self.config.work_dir, node.token)
            self.client.use_token(node.token)
            self._enrolled = True
            log.info("enrolled as node %s; its credential is kept in %s", node.id, path)
        self._registrations += 1
        log.info(
            "registered with %s as node %s (%d slot(s))",
            redact_url(self.config.master_url),
            node.id,
            self.config.slots,
        )

    def _reregister(self, seen: int) -> None:
        """The master forgot this node (an in-memory master restarted): register again.

        `seen` is the registration count the failed call was made under; if another thread
        registered since, that one already did it (a second one would end our new attempts).
        """
        with self._register_lock:
            if self._registrations != seen:
                return
            log.warning("master does not know node %s; registering again", self.node_id)
            try:
                self._register()
            except (MasterUnavailable, MasterRejected) as exc:
                self._link.failed(exc)

    def _credential_refused(self, exc: MasterRejected) -> None:
        """Revoked: this node is out of the fleet, and the master already ended its work."""
        if self._stop_requests == 0:
            log.error("the master refused this node's credential (%s); stopping", exc.message)
        self.request_stop()

    def _shutdown(self) -> None:
        """Let running jobs finish within the grace period, then cancel and release them."""
        with self._lock:
            running = list(self._running.values())
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
        # A result whose reply waits for the next job left the running jobs once spooled,
        # maybe before the master had it, and that reply may not come before this process
        # ends. Sent again without a claim it is answered at once (stored, or a duplicate):
        # a reachable master has every result before the agent is gone.
        if self.spool.waiting():
            self.spool.resend(self.client)

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

    # ------------------------------------------------------------------ heartbeat

    def _heartbeat_loop(self, halt: threading.Event) -> None:
        """Beat every heartbeat interval while idle, every progress interval while a job runs.
        A job's first beat comes one progress interval after it started, not at once: until
        then it has no progress to tell (its claim told the master that it runs), so a job
        shorter than that costs no request. Live progress and cancels cost only busy agents."""
        last = time.monotonic()  # registering told the master this node is alive
        due = last + self.config.heartbeat_interval_s
        while True:
            started = self._beat_now.wait(max(0.0, due - time.monotonic()))
            self._beat_now.clear()
            if halt.is_set():
                return
            now = time.monotonic()
            if started:
                due = min(due, now + self.config.progress_interval_s)
                continue
            busy = self._busy()
            if busy or now >= last + self.config.heartbeat_interval_s:
                last = now
                try:
                    self._beat()
                except Exception:  # the heartbeat must outlive any one bad beat
                    log.exception("heartbeat failed unexpectedly")
            if busy:
                due = now + min(self.config.heartbeat_interval_s, self.config.progress_interval_s)
            else:
                due = last + self.config.heartbeat_interval_s

    def _busy(self) -> bool:
        with self._lock:
            return bool(self._running)

    def _beat(self) -> None:
        seen = self._registrations
        with self._lock:
            reports = [entry.report() for entry in self._running.values()]
        # Finished jobs whose results wait in the spool are still this node's attempts.
        reported = {report.job_id for report in reports}
        reports.extend(report for report in self.spool.attempts() if report.job_id not in reported)
        try:
            reply = self.client.heartbeat(self.node_id, reports, self._check_spool())
        except MasterUnavailable as exc:
            self._link.failed(exc)
            return
        except MasterRejected as exc:
            self._link.ok()
            if exc.status_code == 404:
                self._reregister(seen)
            elif exc.status_code == 401:
                self._credential_refused(exc)
            else:
                log.warning("heartbeat refused by the master: %s", exc)
            return
        self._link.ok()
        for directive in reply.directives:
            self._apply(directive)
        if self._spool_waiting.is_set():
            self.spool.resend(self.client)
            if not self.spool.waiting():
                self._spool_waiting.clear()

    def _apply(self, directive: Directive) -> None:
        with self._lock:
            entry = self._running.get(directive.job_id)
        if entry is None or directive.attempt not in (None, entry.job.attempt):
            return
        # The master repeats a cancel every beat until the result arrives: act on it once.
        if directive.action == "abandon" and not entry.abandoned:
            log.warning("job %s: abandoning it (%s)", entry.job.id, directive.reason)
            entry.abandoned = True
        elif directive.action == "cancel" and not entry.cancel.is_set():
            log.info("job %s: cancel requested (%s)", entry.job.id, directive.reason)
            entry.cancel_reason = directive.reason
        entry.cancel.set()

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

    def _check_spool(self) -> str | None:
        """Probe the spool; log when it starts or stops failing. A node that could not keep a
        result claims nothing, and says why in its heartbeats."""
        problem = self.spool.probe()
        with self._lock:
            before, self._problem = self._problem, problem
        if problem is not None and before is None:
            log.error("%s: claiming no work until it can", problem)
        elif problem is None and before is not None:
            log.warning("the result spool can be written again: taking work")
        return problem

    def _poll(self) -> Job | None:
        if self._check_spool() is not None:
            self._stop.wait(self.config.poll_interval_s)
            return None
        seen = self._registrations
        wait = self.config.long_poll_s
        asked = time.monotonic()
        try:
            job = self.client.next_job(self.node_id, wait)
        except MasterUnavailable as exc:
            self._link.failed(exc)
            self._stop.wait(self.config.poll_interval_s)
            return None
        except MasterRejected as exc:
            self._link.ok()
            if exc.status_code == 404:
                self._reregister(seen)
            elif exc.status_code == 401:
                self._credential_refused(exc)
            else:
                log.warning("job request refused by the master: %s", exc)
                self._stop.wait(self.config.poll_interval_s)
            return None
        self._link.ok()
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
        entry = _Running(job)
        with self._lock:
            admitted = not self._stop.is_set()
            if admitted:
                self._running[job.id] = entry
                self._beat_now.set()
        if not admitted:
            self._release(job)
            return None
        return self._process(entry)

    def _process(self, entry: _Running) -> Job | None:
        # The job stays in the heartbeat report until its result is delivered or spooled: a
        # master that stops hearing of a running attempt hands the job to another node.
        try:
            return self._execute_and_report(entry)
        finally:
            self._ended(entry)

    def _ended(self, entry: _Running) -> None:
        """The job's run is over, and its result delivered or spooled."""
        with self._lock:
            self._running.pop(entry.job.id, None)
        entry.done.set()

    def _execute_and_report(self, entry: _Running) -> Job | None:
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
        # Spooling the result proves the spool works: no probe before it (see Spool.submit).
        # Asking for the next job, the reply waits for one as long as a poll would; the job
        # is over once its result is spooled (heartbeats list it from there), so that wait
        # holds up neither a stop nor the idle pace of heartbeats.
        claim = not self._stop.is_set()
        delivery = self.spool.submit(
            self.client,
            result,
            claim_next=claim,
            claim_wait=self.config.long_poll_s,
            kept=functools.partial(self._ended, entry) if claim else None,
        )
        if delivery.outcome in ("spooled", "held"):
            self._spool_waiting.set()
        following = delivery.reply.job if delivery.reply is not None else None
        if following is not None and self._stop.is_set():
            self._release(following)
            return None
        return following

    def _execute(self, entry: _Running) -> Execution:
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

    def _result(self, entry: _Running, execution: Execution) -> ResultSubmission:
        job = entry.job
        error = execution.error
        if execution.status == "canceled":
            error = entry.cancel_reason or error or "canceled"
        return ResultSubmission(
            job_id=job.id,
            node_id=self.node_id,
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
            self.client.release(job.id, self.node_id, job.attempt, SHUTDOWN_REASON)
        except (MasterUnavailable, MasterRejected) as exc:
            log.warning(
                "job %s could not be released (%s); the master requeues it when its lease ends",
                job.id,
                exc,
            )
            return
        log.info("job %s attempt %d released: %s", job.id, job.attempt, SHUTDOWN_REASON)


# ---------------------------------------------------------------------- network


def _local_address(master_url: str) -> str:
    """The address this machine reaches the master from (no packet is sent), else its name."""
    url = master_url if "//" in master_url else f"//{master_url}"
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port or 80
        family, kind, proto, _, target = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.connect(target)
            return str(probe.getsockname()[0])
    except (OSError, ValueError, IndexError):
        return socket.gethostname()
