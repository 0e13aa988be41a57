"""OpenAPI 3.1 description of the API, generated from the same msgspec models the handlers use,
and a self-contained /docs page (no external scripts, so it works on an offline fleet)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from ffleet.master.replies import (
    AuditPage,
    BlobStored,
    CredentialList,
    ExportPage,
    IssuedCredential,
    JobList,
    JobPage,
    JobView,
    NodeList,
    NoJob,
    Purged,
    ReadyReply,
    ResultList,
    ResultReply,
    StatusReply,
    UploadCut,
    UploadState,
)
from ffleet.models import (
    END_EPOCH,
    ID_PATTERN,
    MIN_EPOCH,
    TIME_PATTERN,
    DrainRequest,
    Explanation,
    Heartbeat,
    HeartbeatReply,
    Job,
    JobBatch,
    JobRequest,
    Node,
    NodeRegistration,
    PurgeRequest,
    Release,
    ResultSubmission,
    Timestamp,
)
from ffleet.result_schema import AnalyzerOutput, ResultMetrics
from ffleet.states import JobStatus
from ffleet.tokens import Credential, TokenRequest

_ID = {"type": "string", "pattern": ID_PATTERN}
_NAME = {"type": "string", "maxLength": 256, "pattern": r"^[^\x00-\x1f\x7f]+$(?!\n)"}
_PAGE = {"type": "integer", "minimum": 0}
_EPOCH = {"type": "number", "minimum": 0, "maximum": 2**40}
PROMETHEUS_TEXT = "text/plain"  # the one reply that is not JSON


def _query(name: str, schema: dict[str, Any], what: str, required: bool = False) -> dict[str, Any]:
    """A query parameter; an optional one given empty (`?status=`) counts as not given."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema if required else {"anyOf": [schema, {"const": ""}]},
        "description": what,
    }


_DIGEST = {"type": "string", "pattern": "^[0-9a-f]{64}$"}  # a blob's SHA-256, lower-case hex
_BYTES = {"type": "integer", "minimum": 0, "maximum": 2**62}
BINARY = "application/octet-stream"


def _path(name: str) -> dict[str, Any]:
    schema = _DIGEST if name == "digest" else _ID
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _limit(default: int, high: int) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": 1, "maximum": high, "default": default}
    return _query("limit", schema, f"page size (default {default}, at most {high})")


_OFFSET = _query("offset", {**_PAGE, "maximum": 2**31 - 1}, "items skipped first")


def _link(operation_id: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": parameters}


_REPLY_ID = "$response.body#/id"
_NODE_LINKS = {
    "node": _link("get_nodes_node_id", **{"path.node_id": _REPLY_ID}),
    "heartbeat": _link("post_nodes_node_id_heartbeat", **{"path.node_id": _REPLY_ID}),
    "drain": _link("post_nodes_node_id_drain", **{"path.node_id": _REPLY_ID}),
    "claim": _link("get_jobs_next", **{"query.node_id": _REPLY_ID}),
}
_JOB_LINKS = {
    "job": _link("get_jobs_job_id", **{"path.job_id": _REPLY_ID}),
    "cancel": _link("post_jobs_job_id_cancel", **{"path.job_id": _REPLY_ID}),
    "retry": _link("post_jobs_job_id_retry", **{"path.job_id": _REPLY_ID}),
    "release": _link("post_jobs_job_id_release", **{"path.job_id": _REPLY_ID}),
    "results": _link("get_results", **{"query.job_id": _REPLY_ID}),
}


@dataclass(frozen=True)
class Endpoint:
    """One operation: what it takes and, for its success status, what it returns."""

    method: str
    path: str
    summary: str
    status: int
    reply: type | tuple[type, ...] | str  # several: one of them; a str: that media type
    body: type | str | None = None  # a str: raw bytes of that media type
    body_required: bool = True
    query: tuple[dict[str, Any], ...] = ()
    links: dict[str, Any] | None = None  # OpenAPI links: what a reply's id can be used for
    also: tuple[int, ...] = ()  # other statuses with the same reply (/ready's 503)


def _next_job(method: str, max_wait_s: float) -> Endpoint:
    return Endpoint(
        method,
        "/jobs/next",
        'Claim the next job: the job itself, or {"job": null} when there is none',
        200,
        (Job, NoJob),
        query=(
            _query("node_id", _ID, "the claiming node", required=True),
            _query(
                "wait",
                {"type": "number", "minimum": 0, "maximum": max_wait_s},
                "long-poll up to this many seconds (at most the master's --max-wait)",
            ),
        ),
    )


def endpoints(max_wait_s: float) -> list[Endpoint]:
    """Every documented operation; `max_wait_s` is the master's longest long-poll."""
    return [
        Endpoint("get", "/health", 'Liveness: {"status": "healthy"}', 200, StatusReply),
        Endpoint(
            "get",
            "/ready",
            "Readiness: the store answers and takes writes; 503 with the reason if not",
            200,
            ReadyReply,
            also=(503,),
        ),
        Endpoint(
            "post",
            "/nodes/register",
            "Register a node (v1.0)",
            201,
            Node,
            NodeRegistration,
            links=_NODE_LINKS,
        ),
        Endpoint("get", "/nodes", "List nodes (v1.0)", 200, NodeList),
        Endpoint("get", "/nodes/{node_id}", "One node", 200, Node),
        Endpoint(
            "post",
            "/nodes/{node_id}/heartbeat",
            "Heartbeat; renews leases, carries progress and returns directives "
            "(v1.0: empty body allowed)",
            200,
            HeartbeatReply,
            Heartbeat,
            body_required=False,
        ),
        Endpoint(
            "post",
            "/nodes/{node_id}/drain",
            'Drain ({"drain": true}, also an empty body) or undrain a node',
            200,
            Node,
            DrainRequest,
            body_required=False,
        ),
        Endpoint("post", "/jobs", "Submit a job (v1.0)", 201, Job, JobRequest, links=_JOB_LINKS),
        Endpoint(
            "get",
            "/jobs",
            "List jobs, oldest first, one page at a time",
            200,
            JobPage,
            query=(
                _query(
                    "status", {"type": "string", "enum": [s.value for s in JobStatus]}, "filter"
                ),
                _query("scenario", _NAME, "only jobs of this scenario"),
                _query("node_id", _ID, "only jobs this node ran or runs"),
                _limit(1000, 10_000),
                _OFFSET,
            ),
        ),
        Endpoint("post", "/jobs/batch", "Submit many jobs atomically", 201, JobList, JobBatch),
        Endpoint(
            "post",
            "/jobs/purge",
            "Remove finished jobs with their attempts and results (after an export)",
            200,
            Purged,
            PurgeRequest,
        ),
        *(_next_job(method, max_wait_s) for method in ("get", "post")),  # v1.0 agents POST it
        Endpoint(
            "get", "/jobs/{job_id}", "One job with its attempts and stored result", 200, JobView
        ),
        Endpoint(
            "get",
            "/jobs/{job_id}/explain",
            "Why the job is pending: every node's first unmet need, or how many jobs are ahead",
            200,
            Explanation,
        ),
        Endpoint("post", "/jobs/{job_id}/cancel", "Cancel a job", 200, Job),
        Endpoint("post", "/jobs/{job_id}/retry", "Queue a failed or canceled job again", 200, Job),
        Endpoint(
            "post",
            "/jobs/{job_id}/release",
            "Agent hands a running attempt back",
            200,
            Job,
            Release,
        ),
        Endpoint(
            "post",
            "/results",
            "Report a result (v1.0); with claim_next, the reply carries the node's next job, "
            "waiting up to claim_wait seconds for one once the result is stored",
            200,
            ResultReply,
            ResultSubmission,
        ),
        Endpoint(
            "get",
            "/results",
            "Stored results, one page at a time",
            200,
            ResultList,
            query=(_query("job_id", _ID, "only this job's results"), _limit(100, 1000), _OFFSET),
        ),
        Endpoint(
            "get",
            "/results/export",
            "Finished jobs completed in [since, until) (epoch seconds), each as GET /jobs/{id} "
            "shows it",
            200,
            ExportPage,
            query=(
                _query("since", _EPOCH, "completed at or after (epoch seconds)"),
                _query("until", _EPOCH, "completed before (epoch seconds)"),
                _limit(1000, 10_000),
                _OFFSET,
            ),
        ),
        Endpoint("get", "/metrics", "Prometheus metrics", 200, PROMETHEUS_TEXT),
        Endpoint(
            "post",
            "/tokens",
            "Create a credential; the reply's token is shown once",
            201,
            IssuedCredential,
            TokenRequest,
        ),
        Endpoint("get", "/tokens", "List credentials, never their secrets", 200, CredentialList),
        Endpoint(
            "post", "/tokens/{token_id}/revoke", "Revoke a credential at once", 200, Credential
        ),
        Endpoint(
            "get",
            "/audit",
            "The audit trail, newest first",
            200,
            AuditPage,
            query=(
                _query(
                    "since",
                    {"type": "string", "format": "date-time", "pattern": TIME_PATTERN},
                    "entries at or after this RFC 3339 time",
                ),
                _query("actor", _NAME, "only this credential id's entries"),
                _query("action", _NAME, "only this action (`POST /jobs`)"),
                _limit(100, 10_000),
            ),
        ),
        Endpoint(
            "get",
            "/blobs/{digest}/upload",
            "Where an upload of this SHA-256 continues",
            200,
            UploadState,
        ),
        Endpoint(
            "put",
            "/blobs/{digest}",
            "Upload bytes from `offset` of a `size`-byte blob: 201 once complete and verified "
            "(200 if already held), 200 with `received` if cut short",
            201,
            (BlobStored, UploadCut),
            BINARY,
            query=(
                _query("size", _BYTES, "the blob's full size in bytes", required=True),
                _query("offset", _BYTES, "bytes already received (GET .../upload says)"),
            ),
            also=(200,),
        ),
        Endpoint(
            "get",
            "/blobs/{digest}",
            "The blob's bytes (Range: bytes=N- gives 206)",
            200,
            BINARY,
            also=(206,),
        ),
    ]


def _models() -> list[type]:
    found: list[type] = [ResultMetrics, AnalyzerOutput]  # see the result fields below
    for endpoint in endpoints(0.0):  # the limit changes no model
        replies = endpoint.reply if isinstance(endpoint.reply, tuple) else (endpoint.reply,)
        for model in (*replies, endpoint.body):
            if isinstance(model, type) and model not in found:
                found.append(model)
    return found


def _schema_hook(kind: type) -> dict[str, Any]:
    if kind is Timestamp:
        # RFC 3339 UTC on the wire (epoch seconds accepted); null for a stored time no reply
        # could show (see models).
        return {
            "anyOf": [
                {"type": "string", "format": "date-time", "pattern": TIME_PATTERN},
                {"type": "number", "minimum": MIN_EPOCH, "exclusiveMaximum": END_EPOCH},
                {"type": "null"},
            ]
        }
    raise NotImplementedError(f"no schema for {kind.__name__}")


_, _COMPONENTS = msgspec.json.schema_components(
    _models(), ref_template="#/components/schemas/{name}", schema_hook=_schema_hook
)
# A result's `metrics` and `analyzer_output` travel as free objects (v1.0 agents send their
# own, within the bounds on their keys); what an ffleet agent puts there is described by
# result_schema's structs.
for _result in ("ResultSubmission", "StoredResult"):
    _fields = _COMPONENTS[_result]["properties"]
    for _field, _described in (("metrics", "ResultMetrics"), ("analyzer_output", "AnalyzerOutput")):
        _fields[_field] = {
            "allOf": [_fields[_field], {"$ref": f"#/components/schemas/{_described}"}]
        }
_ERROR = {
    "description": 'refused: {"error": "<what is wrong>"}; nothing changed',
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    },
}


def _schema(model: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _reply(model: type | tuple[type, ...] | str) -> dict[str, Any]:
    if isinstance(model, str):
        return {"description": model, "content": {model: {"schema": {"type": "string"}}}}
    if isinstance(model, tuple):
        name = " or ".join(m.__name__ for m in model)
        schema: dict[str, Any] = {"oneOf": [_schema(m) for m in model]}
    else:
        name, schema = model.__name__, _schema(model)
    return {"description": name, "content": {"application/json": {"schema": schema}}}


def _words(path: str) -> str:
    """`/nodes/{node_id}/drain` -> `nodes_node_id_drain`, for operation ids."""
    return re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    parameters = [_path(name) for name in re.findall(r"{(\w+)}", endpoint.path)]
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": f"{endpoint.method}_{_words(endpoint.path)}",
        "parameters": parameters + list(endpoint.query),
        "responses": {
            **{str(status): _reply(endpoint.reply) for status in (endpoint.status, *endpoint.also)},
            "4XX": _ERROR,
        },
    }
    if endpoint.links:
        operation["responses"][str(endpoint.status)]["links"] = endpoint.links
    if isinstance(endpoint.body, str):
        operation["requestBody"] = {
            "required": endpoint.body_required,
            "content": {endpoint.body: {"schema": {"type": "string", "format": "binary"}}},
        }
    elif endpoint.body is not None:
        operation["requestBody"] = {
            "required": endpoint.body_required,
            "content": {"application/json": {"schema": _schema(endpoint.body)}},
        }
    return operation


def spec(max_wait_s: float) -> dict[str, Any]:
    """The OpenAPI document of a master whose longest long-poll is `max_wait_s`."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints(max_wait_s):
        paths.setdefault(endpoint.path, {})[endpoint.method] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ffleet master", "version": "1.0-compatible"},
        "paths": paths,
        # Open masters need no token; authenticating ones a bearer token (see README).
        "security": [{}, {"bearer": []}],
        "components": {
            "schemas": _COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _pretty(schema: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(schema)).decode()


def _body_name(body: type | str | None) -> str:
    return body if isinstance(body, str) else body.__name__ if body else ""


def docs_html(max_wait_s: float) -> str:
    rows = "\n".join(
        f"<tr><td><code>{e.method.upper()}</code></td><td><code>{html.escape(e.path)}</code></td>"
        f"<td>{html.escape(e.summary)}</td><td>{_body_name(e.body)}</td>"
        f"<td>{e.status} {html.escape(_reply(e.reply)['description'])}</td></tr>"
        for e in endpoints(max_wait_s)
    )
    schemas = "\n".join(
        f"<h3 id='{name}'>{name}</h3><pre>{html.escape(_pretty(schema))}</pre>"
        for name, schema in _COMPONENTS.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>ffleet API</title>"
        "<style>body{font-family:sans-serif;margin:2em}"
        "td,th{padding:4px 8px;border-bottom:1px solid #ddd}"
        "pre{background:#f6f6f6;padding:8px}</style></head><body>"
        "<h1>ffleet master API</h1><p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. "
        'Errors are <code>{"error": "..."}</code> with a 4xx status.</p>'
        f"<table><tr><th>method</th><th>path</th><th>what</th><th>body</th><th>reply</th></tr>{rows}</table>"
        f"<h2>Schemas</h2>{schemas}</body></html>"
    )
