"""The heartbeat thread: tells the master this node lives and what its jobs do, and carries
the master's directives (cancel, abandon) back to them.

It beats every heartbeat interval while idle and every progress interval while a job runs.
A job's first beat comes one progress interval after it started, not at once: until then it
has no progress to tell (its claim told the master that it runs), so a job shorter than that
costs no request. Live progress and cancels cost only busy agents.
"""

from __future__ import annotations

import logging
import threading
import time

from ffleet.agent.active_jobs import ActiveJobs
from ffleet.agent.client import MasterClient, MasterRejected, MasterUnavailable
from ffleet.agent.master_link import MasterLink
from ffleet.agent.result_delivery import ResultDelivery
from ffleet.agent.settings import AgentSettings
from ffleet.models import Directive

log = logging.getLogger(__name__)


class Heartbeat:
    """`run` is the thread's body, until `stop`; `job_started` re-times the next beat."""

    def __init__(
        self,
        config: AgentSettings,
        client: MasterClient,
        link: MasterLink,
        jobs: ActiveJobs,
        results: ResultDelivery,
    ) -> None:
        self._config = config
        self._client = client
        self._link = link
        self._jobs = jobs
        self._results = results
        self._wake = threading.Event()  # a job started, or the heartbeat is to stop
        self._halt = threading.Event()

    def job_started(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def run(self) -> None:
        idle_s = self._config.heartbeat_interval_s
        progress_s = self._config.progress_interval_s
        last = time.monotonic()  # registering told the master this node is alive
        due = last + idle_s
        while True:
            started = self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._halt.is_set():
                return
            now = time.monotonic()
            if started:
                due = min(due, now + progress_s)
                continue
            busy = self._jobs.busy()
            if busy or now >= last + idle_s:
                last = now
                try:
                    self._beat()
                except Exception:  # the heartbeat must outlive any one bad beat
                    log.exception("heartbeat failed unexpectedly")
            due = now + min(idle_s, progress_s) if busy else last + idle_s

    def _beat(self) -> None:
        seen = self._link.registrations
        reports = [entry.report() for entry in self._jobs.listed()]
        # Finished jobs whose results wait in the spool are still this node's attempts.
        reported = {report.job_id for report in reports}
        spooled = self._results.spool.attempts()
        reports.extend(report for report in spooled if report.job_id not in reported)
        try:
            reply = self._client.heartbeat(self._link.node_id, reports, self._results.check_spool())
        except MasterUnavailable as exc:
            self._link.reachability.failed(exc)
            return
        except MasterRejected as exc:
            self._link.refused(exc, seen, "heartbeat")
            return
        self._link.reachability.ok()
        for directive in reply.directives:
            self._apply(directive)
        self._results.resend_left()

    def _apply(self, directive: Directive) -> None:
        entry = self._jobs.find(directive.job_id)
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
