"""OpenAPI 3.1 description of the API, generated from the same msgspec models the handlers use,
and a self-contained /docs page (no external scripts, so it works on an offline fleet)."""

from __future__ import annotations

import html
from typing import Any

import msgspec

from ffleet.audit import AuditEntry
from ffleet.models import (
    Explanation,
    Heartbeat,
    HeartbeatReply,
    Job,
    JobBatch,
    JobRequest,
    Node,
    NodeRegistration,
    Release,
    ResultSubmission,
    StoredResult,
    Timestamp,
)
from ffleet.result_schema import AnalyzerOutput, ResultMetrics
from ffleet.tokens import Credential, TokenRequest

# (method, path, summary, request model, success status, response model or description)
ENDPOINTS: list[tuple[str, str, str, type | None, int, type | str]] = [
    ("get", "/health", 'Liveness: {"status": "healthy"}', None, 200, "status object"),
    ("post", "/nodes/register", "Register a node (v1.0)", NodeRegistration, 201, Node),
    ("get", "/nodes", "List nodes: {nodes, count} (v1.0)", None, 200, "{nodes: [Node], count}"),
    ("get", "/nodes/{node_id}", "One node", None, 200, Node),
    (
        "post",
        "/nodes/{node_id}/heartbeat",
        "Heartbeat; renews leases, carries progress and "
        "returns directives (v1.0: empty body allowed)",
        Heartbeat,
        200,
        HeartbeatReply,
    ),
    (
        "post",
        "/nodes/{node_id}/drain",
        'Drain ({"drain": true}) or undrain a node',
        None,
        200,
        Node,
    ),
    ("post", "/jobs", "Submit a job (v1.0)", JobRequest, 201, Job),
    (
        "get",
        "/jobs",
        "List jobs: {jobs, count, total}; ?status=&scenario=&node_id=&limit=&offset=",
        None,
        200,
        "{jobs: [Job], count, total}",
    ),
    ("post", "/jobs/batch", "Submit many jobs atomically", JobBatch, 201, "{jobs: [Job], count}"),
    (
        "get",
        "/jobs/next",
        'Claim the next job: the job itself, or {"job": null}; ?node_id= '
        "(required) &wait=seconds (long-poll)",
        None,
        200,
        Job,
    ),
    (
        "get",
        "/jobs/{job_id}",
        "One job with its attempts and stored result",
        None,
        200,
        "Job + {attempts: [Attempt], result: StoredResult|null}",
    ),
    ("post", "/jobs/{job_id}/cancel", "Cancel a job", None, 200, Job),
    (
        "get",
        "/jobs/{job_id}/explain",
        "Why the job is pending: every node's first unmet need, or how many jobs are ahead",
        None,
        200,
        Explanation,
    ),
    ("post", "/jobs/{job_id}/retry", "Queue a failed or canceled job again", None, 200, Job),
    ("post", "/jobs/{job_id}/release", "Agent hands a running attempt back", Release, 200, Job),
    (
        "post",
        "/results",
        'Report a result (v1.0): {"status": "success"}',
        ResultSubmission,
        200,
        "status object",
    ),
    (
        "get",
        "/results",
        "Stored results: {results, count}; ?job_id=&limit=&offset=",
        None,
        200,
        "{results: [StoredResult], count}",
    ),
    (
        "post",
        "/tokens",
        "Create a credential; the reply's token is shown once",
        TokenRequest,
        201,
        Credential,
    ),
    (
        "get",
        "/tokens",
        "List credentials, never their secrets: {tokens, count}",
        None,
        200,
        "{tokens: [Credential], count}",
    ),
    ("post", "/tokens/{token_id}/revoke", "Revoke a credential at once", None, 200, Credential),
    (
        "get",
        "/audit",
        "The audit trail, newest first: {entries, count}; ?since=&actor=&action=&limit=",
        None,
        200,
        "{entries: [AuditEntry], count}",
    ),
    (
        "get",
        "/blobs/{digest}/upload",
        "Where an upload of this SHA-256 continues: {digest, complete, received}",
        None,
        200,
        "{digest, complete, received}",
    ),
    (
        "put",
        "/blobs/{digest}",
        "Upload bytes from ?offset= of a ?size=-byte blob (application/octet-stream); 201 "
        "{ref, size} once complete and verified, 200 {received} if cut short",
        None,
        201,
        "{ref, size}",
    ),
    ("get", "/blobs/{digest}", "The blob's bytes (Range: bytes=N- gives 206)", None, 200, "bytes"),
    (
        "get",
        "/results/export",
        "Finished jobs completed in [since, until) (epoch seconds), each as GET /jobs/{id} "
        "shows it: {jobs, count}; ?since=&until=&limit=&offset=",
        None,
        200,
        "{jobs: [Job + attempts + result], count}",
    ),
    (
        "post",
        "/jobs/purge",
        'Remove finished jobs with their attempts and results: {"job_ids": [...]} -> {deleted}',
        None,
        200,
        "{deleted}",
    ),
    ("get", "/metrics", "Prometheus metrics (text format)", None, 200, "Prometheus text"),
]

_MODELS = [
    Node,
    NodeRegistration,
    Heartbeat,
    HeartbeatReply,
    Job,
    JobRequest,
    JobBatch,
    Release,
    ResultSubmission,
    StoredResult,
    ResultMetrics,
    AnalyzerOutput,
    Credential,
    TokenRequest,
    AuditEntry,
]


def _schema_hook(kind: type) -> dict[str, Any]:
    if kind is Timestamp:
        return {"type": "string", "format": "date-time"}  # RFC 3339 UTC on the wire
    raise NotImplementedError(f"no schema for {kind.__name__}")


_, _COMPONENTS = msgspec.json.schema_components(
    _MODELS, ref_template="#/components/schemas/{name}", schema_hook=_schema_hook
)
# A result's `metrics` and `analyzer_output` travel as free objects (v1.0 agents send their
# own); what an ffleet agent puts there is described by result_schema's structs.
for _result in ("ResultSubmission", "StoredResult"):
    _fields = _COMPONENTS[_result]["properties"]
    _fields["metrics"] = {"$ref": "#/components/schemas/ResultMetrics"}
    _fields["analyzer_output"] = {"$ref": "#/components/schemas/AnalyzerOutput"}
_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}


def _ref(model: type | str) -> dict[str, Any]:
    if isinstance(model, str):
        return {"description": model}
    return {
        "description": model.__name__,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }


def _build() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, request, status, response in ENDPOINTS:
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {str(status): _ref(response), "4XX": _ERROR},
        }
        if request is not None:
            operation["requestBody"] = {
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{request.__name__}"}
                    }
                }
            }
        paths.setdefault(path, {})[method] = operation
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


SPEC = _build()


def _pretty(schema: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(schema)).decode()


def _docs() -> str:
    rows = "\n".join(
        f"<tr><td><code>{m.upper()}</code></td><td><code>{html.escape(p)}</code></td>"
        f"<td>{html.escape(s)}</td><td>{html.escape(r.__name__ if r else '')}</td>"
        f"<td>{c} {html.escape(o if isinstance(o, str) else o.__name__)}</td></tr>"
        for m, p, s, r, c, o in ENDPOINTS
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


DOCS_HTML = _docs()
