"""What each dashboard page shows: plain values read from the store, for the templates.

A view is its page template plus a live region: the part the page's event stream re-renders
and pushes whenever it changes (see live.py). Pages read only through the Store protocol, as
the API does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ffleet import comparison
from ffleet.master.ui import charts
from ffleet.models import Attempt, Job
from ffleet.redaction import without_stream_key
from ffleet.states import FINISHED, Event, JobStatus, allows
from ffleet.store import Store

if TYPE_CHECKING:
    from ffleet.master.access import Identity

PAGE_SIZE = 50
RESULTS_READ = 5000  # the results page compares at most this many stored results
# Roles that may submit, cancel and retry (a submitter only its own jobs); drain is the
# admin's, as in the API. A request that carries no identity comes to an open master (as v1.0
# ran), where everyone may act.
WRITE_ROLES = frozenset({"admin", "submitter"})
DRAIN_ROLES = frozenset({"admin"})
HIDDEN_METRICS = frozenset({"ffmpeg_argv", "quality_ffmpeg_argv", "stderr_tail", "unavailable"})

Context = dict[str, Any]


@dataclass(frozen=True)
class View:
    path: str
    template: str  # the page; it includes `region`
    region: str | None  # the live part, None for a page that does not change by itself
    context: Callable[[Store, Request], Context]


def _identity(request: Request) -> Identity | None:
    return getattr(request.state, "identity", None)


def viewer(request: Request) -> Identity | None:
    """Who the page is for, shown in its header; None on an open master (nobody signs in)."""
    identity = _identity(request)
    return identity if identity is not None and identity.credential is not None else None


def may_act(request: Request) -> bool:
    """Whether the viewer may submit, cancel and retry; a reader sees no action buttons."""
    identity = _identity(request)
    return identity is None or identity.role in WRITE_ROLES


def may_drain(request: Request) -> bool:
    identity = _identity(request)
    return identity is None or identity.role in DRAIN_ROLES


def owns(store: Store, request: Request, job_id: str) -> bool:
    """Whether the viewer may act on this job: a submitter only on the jobs it submitted."""
    identity = _identity(request)
    if identity is None or identity.role != "submitter":
        return True
    return store.job_submitter(job_id) == identity.id


def node_names(store: Store) -> dict[str, str]:
    return {node.id: node.hostname or node.id[:8] for node in store.list_nodes()}


def status_counts(store: Store) -> dict[str, int]:
    return {status.value: store.list_jobs(status.value, 0, 0)[1] for status in JobStatus}


def fleet(store: Store, request: Request) -> Context:
    running, _ = store.list_jobs(JobStatus.RUNNING, None, 0)
    return {
        "title": "Fleet",
        "nodes": store.list_nodes(),
        "running": {job.id: job for job in running},
        "counts": status_counts(store),
    }


def jobs(store: Store, request: Request) -> Context:
    query = request.query_params
    status = query.get("status") or None
    notice = None
    if status is not None and status not in JobStatus.__members__.values():
        notice = f"unknown status {status!r}: showing every status"
        status = None
    scenario = query.get("scenario") or None
    node_id = query.get("node") or None
    try:
        number = max(1, int(query.get("page") or 1))
    except ValueError:
        number = 1
    found, total = store.list_jobs(
        status, PAGE_SIZE, (number - 1) * PAGE_SIZE, scenario=scenario, node_id=node_id
    )
    kept = {k: v for k, v in {"status": status, "scenario": scenario, "node": node_id}.items() if v}
    return {
        "title": "Jobs",
        "jobs": found,
        "total": total,
        "page": number,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "filters": kept,
        "statuses": [s.value for s in JobStatus],
        "names": node_names(store),
        "notice": notice,
    }


def history(job: Job, attempts: list[Attempt]) -> list[tuple[float | None, str, str]]:
    """The job's status changes as `(when, status, what happened)`, rebuilt from its attempts:
    each attempt began as `running` and ended in its outcome."""
    rows: list[tuple[float | None, str, str]] = [(job.created_at, "pending", "submitted")]
    for attempt in attempts:
        rows.append((attempt.started_at, "running", f"attempt {attempt.attempt} started"))
        if attempt.ended_at is not None:
            note = f"attempt {attempt.attempt} {attempt.outcome}"
            rows.append((attempt.ended_at, attempt.outcome or "ended", note))
    if job.status in FINISHED and job.completed_at is not None and rows[-1][0] != job.completed_at:
        rows.append((job.completed_at, job.status, job.error or job.status))
    elif job.status == JobStatus.PENDING and attempts and attempts[-1].ended_at is not None:
        rows.append((attempts[-1].ended_at, "pending", "queued again"))
    return rows


def job(store: Store, request: Request) -> Context:
    now = time.time()
    detail = store.get_job(request.path_params["job_id"])
    found = without_stream_key(detail.job)  # the page is for readers: keys stay in the API
    spans = [
        (
            a.attempt,
            a.node_id,
            float(a.started_at or found.created_at or now),
            a.ended_at,
            a.outcome,
        )
        for a in detail.attempts
    ]
    metrics = detail.result.metrics if detail.result is not None else {}
    return {
        "title": f"Job {found.id[:8]}",
        "job": found,
        "attempts": detail.attempts,
        "result": detail.result,
        "metrics": {k: v for k, v in sorted(metrics.items()) if k not in HIDDEN_METRICS},
        "argv": metrics.get("ffmpeg_argv"),
        "quality_argv": metrics.get("quality_ffmpeg_argv"),
        "stderr_tail": metrics.get("stderr_tail"),
        "history": history(found, detail.attempts),
        "timeline": charts.attempt_timeline(float(found.created_at or now), spans, now),
        "explanation": store.explain(found.id, now) if found.status == JobStatus.PENDING else None,
        "may_cancel": allows(found.status, Event.CANCEL) or allows(found.status, Event.ABORT),
        "may_retry": allows(found.status, Event.RETRY),
        "owned": owns(store, request, found.id),
        "names": node_names(store),
    }


def results(store: Store, request: Request) -> Context:
    completed, _ = store.list_jobs(JobStatus.COMPLETED, None, 0)
    scenarios = {j.id: j.scenario for j in completed}
    stored = store.list_results(None, RESULTS_READ, 0)
    rows = comparison.compare(
        (r.node_id, scenarios[r.job_id], r.metrics)
        for r in stored
        if r.status == "completed" and r.job_id in scenarios
    )
    names = node_names(store)
    charted = (charts.bar_chart(figure, rows, names) for figure in comparison.FIGURES)
    return {
        "title": "Results",
        "rows": rows,
        "figures": comparison.FIGURES,
        "names": names,
        "charts": [chart for chart in charted if chart is not None],
        "scatter": charts.quality_vs_bitrate(rows, names),
    }


VIEWS = [
    View("/ui", "fleet.html", "fleet_region.html", fleet),
    View("/ui/jobs", "jobs.html", "jobs_region.html", jobs),
    View("/ui/jobs/{job_id}", "job.html", "job_region.html", job),
    View("/ui/results", "results.html", None, results),
]
